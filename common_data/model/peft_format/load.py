"""peft's adapter folder -> this project's adapter checkpoint (arrays in checkpoint names, metadata), exactly or not
at all.

A LoRA (rsLoRA, DoRA) or AdaLoRA adapter on c_attn, attn.c_proj, mlp.c_fc and mlp.c_proj of every block becomes
the same adapter on the targets c_attn, c_proj, c_fc, mlp_proj. Modules of different ranks but one scale are padded
with zero rows of A and columns of B to the widest (the output is the same); AdaLoRA's triplets left out by its
rank_pattern come back as zeros (Λ = 0: no output). A folder written by export.py carries the checkpoint's own
metadata in its safetensors header and comes back as that checkpoint: slices of c_attn split again, bit for bit.
Anything else (other peft types, biases, modules_to_save, some blocks only, per-module scales, a base the shapes do
not fit, an unknown tensor) is refused with one line.
"""
import json
import re
from collections import defaultdict

import numpy as np

from common_data.model.checkpoint import checkpoint_metadata, configs_from_metadata, model_size
from common_data.model.gpt2_config import AdapterConfig
from common_data.model.peft_format.export import check_tensors, expected_shapes, layer_slices
from common_data.model.plan import ROLE_SUFFIXES, ModelPlan, layer_shapes, saved_rank
from common_data.model.peft_format.layout import (LAYERS, PEFT_KEY, PEFT_PREFIX, SOURCE_METADATA_KEY, WHOLE_TARGET,
                                            PeftFormatError, alpha_for, module_name, scale_divisor, suffixes)

# adapter_config.json fields that change what the adapter computes, and the value they must keep
NEUTRAL_SETTINGS = {"bias": "none", "modules_to_save": None, "layers_to_transform": None, "layer_replication": None,
                    "lora_bias": False, "use_qalora": False, "trainable_token_indices": None,
                    "target_parameters": None, "alora_invocation_tokens": None, "use_bdlora": None,
                    "megatron_config": None}
# init_lora_weights values after which the saved adapter belongs to a changed base (PiSSA before peft's conversion)
INITIALISATIONS = (True, False, "gaussian")


def check_settings(settings, source):
    peft_type = settings.get("peft_type")
    if peft_type not in ("LORA", "ADALORA"):
        raise PeftFormatError(f"{source}: peft_type {peft_type!r}; LoRA (with rsLoRA, DoRA) and AdaLoRA adapters are "
                              "read")
    for field, neutral in NEUTRAL_SETTINGS.items():
        if settings.get(field, neutral) not in (neutral, None, False, [], {}):
            raise PeftFormatError(f"{source}: {field} is {settings[field]!r}; only adapters without it are read")
    if settings.get("init_lora_weights", True) not in INITIALISATIONS:
        raise PeftFormatError(f"{source}: init_lora_weights {settings['init_lora_weights']!r}: this adapter goes with "
                              "a changed base model; save it with peft's path_initial_model_for_weight_conversion, "
                              "which makes it plain LoRA on the original base")
    return peft_type


def grouped_modules(tensors, peft_type, base_config, base_name, source):
    """{(block, layer): {kind: array}} of the adapter tensors, their shapes checked against the base."""
    kinds = {suffix: kind for kind, suffix in suffixes(peft_type).items()}
    modules = defaultdict(dict)
    for key, array in tensors.items():
        match = PEFT_KEY.fullmatch(key.removeprefix(PEFT_PREFIX)) if key.startswith(PEFT_PREFIX) else None
        if match is None or match.group(3) not in kinds:
            raise PeftFormatError(f"{source}: unknown tensor {key}: not a {peft_type} tensor of GPT-2's "
                                  f"{', '.join(LAYERS)}")
        block, layer = int(match.group(1)), match.group(2)
        if block >= base_config.n_layer:
            raise PeftFormatError(f"{source}: tensor {key} is for block {block}, but {base_name} is a GPT-2 of "
                                  f"{model_size(base_config)}")
        modules[block, layer][kinds[match.group(3)]] = array.astype(np.float32, copy=False)
    for (block, layer), module in modules.items():
        d_in, d_out = layer_shapes(base_config)[layer]
        if set(module) < {"lora_A", "lora_B"} or module["lora_A"].shape[1:] != (d_in,) \
                or module["lora_B"].shape != (d_out, module["lora_A"].shape[0]):
            shapes = {kind: array.shape for kind, array in module.items()}
            raise PeftFormatError(f"{source}: module {module_name(block, layer)} has tensors {shapes}, which do not "
                                  f"fit {base_name}, a GPT-2 of {model_size(base_config)} (A [r, {d_in}], "
                                  f"B [{d_out}, r])")
    layers = {block: sorted(layer for b, layer in modules if b == block) for block in range(base_config.n_layer)}
    if len({tuple(found) for found in layers.values()}) != 1 or not modules:
        raise PeftFormatError(f"{source}: adapted layers differ between blocks ({layers}); this project adapts the "
                              "same layers in every block")
    return dict(modules)


def expand_rank_pattern(modules, settings, source):
    """AdaLoRA's modules at init_r, the triplets its rank_pattern left out as zeros."""
    init_r = settings.get("init_r", 12)
    patterns = settings.get("rank_pattern") or {}
    expanded = {}
    for (block, layer), module in modules.items():
        pattern = patterns.get(f"{module_name(block, layer)}.lora_E", [True] * init_r)
        kept = np.array(pattern, dtype=bool)
        if len(kept) != init_r or module["lora_A"].shape[0] != kept.sum() or "lora_E" not in module:
            raise PeftFormatError(f"{source}: module {module_name(block, layer)} holds {module['lora_A'].shape[0]} "
                                  f"triplets, its rank_pattern keeps {int(kept.sum())} of init_r {init_r}")
        full = {"lora_A": np.zeros((init_r, module["lora_A"].shape[1]), np.float32),
                "lora_E": np.zeros((init_r, 1), np.float32),
                "lora_B": np.zeros((module["lora_B"].shape[0], init_r), np.float32)}
        full["lora_A"][kept], full["lora_E"][kept], full["lora_B"][:, kept] = (module["lora_A"], module["lora_E"],
                                                                              module["lora_B"])
        expanded[block, layer] = full
    return expanded


def pattern_value(patterns, name, default):
    """peft's get_pattern_key: the first pattern key that ends the module name."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def module_scales(modules, settings, source):
    """{(block, layer): scale} as peft computes it, each module's rank checked against the config's."""
    scales = {}
    for (block, layer), module in modules.items():
        name, rank = module_name(block, layer), module["lora_A"].shape[0]
        if settings["peft_type"] == "ADALORA":
            scales[block, layer] = settings["lora_alpha"] / scale_divisor(settings.get("init_r", 12), adalora=True)
            continue
        configured = pattern_value(settings.get("rank_pattern") or {}, name, settings.get("r", 8))
        if rank != configured:
            raise PeftFormatError(f"{source}: module {name} has rank {rank}, its adapter_config.json says {configured}")
        alpha = pattern_value(settings.get("alpha_pattern") or {}, name, settings.get("lora_alpha", 8))
        scales[block, layer] = alpha / scale_divisor(rank, settings.get("use_rslora", False))
    return scales


def plain_adapter(modules, settings, base_config, source):
    """(arrays, AdapterConfig) of whole-layer targets, ranks padded to the widest module."""
    scales = module_scales(modules, settings, source)
    if len(set(scales.values())) != 1:
        raise PeftFormatError(f"{source}: modules scale differently ({sorted(set(scales.values()))}); this project "
                              "has one scale for every adapter")
    scale = next(iter(scales.values()))
    ranks = {module["lora_A"].shape[0] for module in modules.values()}
    rank = max(ranks)
    adalora, use_rslora = settings["peft_type"] == "ADALORA", settings.get("use_rslora", False)
    if adalora or len(ranks) == 1 and not settings.get("alpha_pattern"):
        alpha = float(settings.get("lora_alpha", 8))
    else:
        alpha = float(alpha_for(scale, rank, use_rslora))
    layers = [layer for layer in LAYERS if (0, layer) in modules]
    adapter = "adalora" if adalora else "dora" if settings.get("use_dora") else "lora"
    adapter_config = AdapterConfig(adapter=adapter, lora_dim=rank, lora_alpha=alpha,
                                   lora_dropout=float(settings.get("lora_dropout", 0.0)),
                                   targets=tuple(WHOLE_TARGET[layer] for layer in layers),
                                   use_rslora=use_rslora and not adalora)
    plan = ModelPlan(base_config, adapter_config, "parallel")
    roles = {suffix: role for role, suffix in ROLE_SUFFIXES.items()}
    arrays = {}
    for (block, layer), module in modules.items():
        missing = rank - module["lora_A"].shape[0]
        padding = {"lora_A": ((0, missing), (0, 0)), "lora_B": ((0, 0), (0, missing)), "lora_E": ((0, missing), (0, 0)),
                   "lora_magnitude": ((0, 0),)}
        names = plan.layers[f"h.{block}.{layer}"].tensor_names(WHOLE_TARGET[layer])
        for kind, array in module.items():
            arrays[names[roles[kind]]] = np.pad(array, padding[kind])
    return arrays, adapter_config


def split_slices(modules, stored_adapter, config, source):
    """The exported checkpoint's arrays back from its modules (export.py's layout, checked to hold zeros where it
    puts them)."""
    plan = ModelPlan(config, stored_adapter, "parallel", saved_rank(stored_adapter))
    slices = layer_slices(plan)
    arrays = {}
    for (block, layer), module in modules.items():
        if layer not in slices:
            raise PeftFormatError(f"{source}: module {module_name(block, layer)} is not in the checkpoint its header "
                                  "describes")
        layer_plan = plan.layers[f"h.{block}.{layer}"]
        covered = np.zeros_like(module["lora_B"], dtype=bool)
        for index, adapted in enumerate(layer_plan.slices):
            columns = slice(index * layer_plan.rank, (index + 1) * layer_plan.rank)
            names = layer_plan.tensor_names(adapted.target)
            arrays[names["A"]] = module["lora_A"][columns]
            arrays[names["B"]] = module["lora_B"][adapted.start:adapted.stop, columns]
            covered[adapted.start:adapted.stop, columns] = True
            if "E" in names and "lora_E" in module:
                arrays[names["E"]] = module["lora_E"][columns]
            if "magnitude" in names and "lora_magnitude" in module:
                arrays[names["magnitude"]] = module["lora_magnitude"][adapted.start:adapted.stop]
        if module["lora_B"][~covered].any():
            raise PeftFormatError(f"{source}: module {module_name(block, layer)}'s lora_B is not block-structured as "
                                  "the checkpoint in its header")
    return arrays


def from_peft(settings, tensors, header, base_config, base_name, source):
    """(arrays, metadata) of this project's adapter checkpoint for a peft adapter on the base `base_config`."""
    peft_type = check_settings(settings, source)
    modules = grouped_modules(tensors, peft_type, base_config, base_name, source)
    if peft_type == "ADALORA":
        modules = expand_rank_pattern(modules, settings, source)
    if SOURCE_METADATA_KEY in header:
        metadata = json.loads(header[SOURCE_METADATA_KEY])
        config, stored_adapter, _ = configs_from_metadata(metadata, source)
        if config != base_config:
            raise PeftFormatError(f"{source}: exported from a GPT-2 of {model_size(config)}, but {base_name} is one of "
                                  f"{model_size(base_config)}")
        if set(module_scales(modules, settings, source).values()) != {stored_adapter.scale}:
            raise PeftFormatError(f"{source}: the scale its adapter_config.json gives differs from the checkpoint's "
                                  "in its header")
        arrays = split_slices(modules, stored_adapter, config, source)
        check_tensors(arrays, expected_shapes(ModelPlan(config, stored_adapter, "parallel", saved_rank(stored_adapter))),
                      source)
        return arrays, metadata
    arrays, adapter_config = plain_adapter(modules, settings, base_config, source)
    metadata = checkpoint_metadata(base_config, adapter_config, "parallel",
                                   peft_base_model=settings.get("base_model_name_or_path"))
    return arrays, metadata
