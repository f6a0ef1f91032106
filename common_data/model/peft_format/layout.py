"""Where an adapter of this project sits in peft's GPT-2 adapter folder, and the scale peft gives a module.

peft adapts whole modules: transformer.h.{i}.{layer} (layer: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj), with
lora_A.weight [r, d_in], lora_B.weight [d_out, r] and DoRA's lora_magnitude_vector [d_out] (LoRA), or lora_A,
lora_E [r, 1], lora_B (AdaLoRA), and adds scale * B A x (x W^T-shaped as GPT-2's Conv1D: fan_in_fan_out).
Our q, k, v slices of c_attn are one c_attn module there: A stacked, B block-structured (see export.py).
"""
import math
import re

from common_data.util.errors import UserError

PEFT_PREFIX = "base_model.model.transformer."
WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
# the safetensors header key under which export.py keeps this project's checkpoint metadata, for an exact import
SOURCE_METADATA_KEY = "nlg_adapter_checkpoint"
LAYERS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
# the whole-module target of each layer, and the slice targets of c_attn in column order
WHOLE_TARGET = {"attn.c_attn": "c_attn", "attn.c_proj": "c_proj", "mlp.c_fc": "c_fc", "mlp.c_proj": "mlp_proj"}
SLICE_TARGETS = ("q", "k", "v")
# our kind of adapter tensor -> peft's key suffix, per peft type
LORA_SUFFIXES = {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight", "lora_magnitude": "lora_magnitude_vector"}
ADALORA_SUFFIXES = {"lora_A": "lora_A", "lora_B": "lora_B", "lora_E": "lora_E"}
PEFT_KEY = re.compile(r"h\.(\d+)\.((?:attn|mlp)\.c_(?:attn|proj|fc))\.(.+)")
ADALORA_RANK_OFFSET = 1e-5  # peft's AdaLoRA scales by lora_alpha / (ranknum + 1e-5)


class PeftFormatError(UserError, ValueError):
    """An adapter that this project cannot write to peft's format, or read from it, exactly."""


def suffixes(peft_type):
    return ADALORA_SUFFIXES if peft_type == "ADALORA" else LORA_SUFFIXES


def peft_key(block, layer, suffix):
    return f"{PEFT_PREFIX}h.{block}.{layer}.{suffix}"


def module_name(block, layer):
    """peft's name of an adapted module (the keys of AdaLoRA's rank_pattern add `.lora_E`)."""
    return f"transformer.h.{block}.{layer}"


def scale_divisor(rank, use_rslora=False, adalora=False):
    """What peft divides lora_alpha by: r, sqrt(r) with use_rslora, ranknum + 1e-5 for AdaLoRA."""
    if adalora:
        return rank + ADALORA_RANK_OFFSET
    return math.sqrt(rank) if use_rslora else rank


def alpha_for(scale, rank, use_rslora=False, adalora=False):
    """The lora_alpha for which peft's lora_alpha / divisor is `scale` to the last bit (float64), or a
    PeftFormatError when no float gives it."""
    divisor = scale_divisor(rank, use_rslora, adalora)
    alpha = scale * divisor
    for candidate in (alpha, math.nextafter(alpha, math.inf), math.nextafter(alpha, -math.inf)):
        if candidate / divisor == scale:
            return int(candidate) if candidate == int(candidate) else candidate
    raise PeftFormatError(f"no lora_alpha gives the scale {scale!r} at rank {rank} in peft's float arithmetic")
