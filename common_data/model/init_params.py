"""Initial parameters as numpy float32 arrays, so that PyTorch and Jittor start from identical weights.

Every tensor draws from its own numpy Generator seeded by (seed, tensor name): a tensor's values depend
on nothing else, e.g. not on the number of layers or on which adapters exist.
"""
import math
import zlib

import numpy as np

from common_data.model.adapter_math import dora, pissa
from common_data.model.gpt2_config import (adapted_slices, adapter_shapes, adapter_tensor_names, base_param_shapes,
                                     magnitude_tensor_name, singular_values_tensor_name)


def _generator(seed, name):
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _normal(seed, name, shape, std):
    return _generator(seed, name).standard_normal(shape, dtype=np.float32) * np.float32(std)


def init_base_params(config, seed):
    """GPT-2 initialisation in checkpoint names and Conv1D layout (weights [d_in, d_out]).

    Weights normal(0, initializer_range), biases 0, layer-norm gains 1; as in GPT-2, the projections that
    write into the residual stream (attn.c_proj, mlp.c_proj) get std / sqrt(2 * n_layer).
    """
    residual_std = config.initializer_range / math.sqrt(2 * config.n_layer)
    params = {}
    for name, shape in base_param_shapes(config).items():
        module = name.split(".")[-2]
        if name.endswith(".bias"):
            params[name] = np.zeros(shape, dtype=np.float32)
        elif module.startswith("ln_"):
            params[name] = np.ones(shape, dtype=np.float32)
        else:
            std = residual_std if module == "c_proj" else config.initializer_range
            params[name] = _normal(seed, name, shape, std)
    return params


def init_adapter_params(config, adapter_config, seed, base=None):
    """The adapters' initial tensors on the base arrays `base` (None: init_base_params(config, seed)), see
    start_arrays."""
    return {name: array for name, array in start_arrays(config, adapter_config, seed, base).items() if ".lora_" in name}


def start_arrays(config, adapter_config, seed, base=None):
    """Every tensor of a fresh model on the base arrays `base` (None: init_base_params(config, seed)).

    LoRA, JELLY, DoRA: A as loralib initialises it (kaiming-uniform with a = sqrt(5), i.e. U(+-1/sqrt(fan_in))),
    B zero; the shape of A follows the adapter's initial mode (r x d_out for JELLY sequential and seq2par).
    DoRA adds its magnitudes ||W|| per output feature. PiSSA's A and B come from the SVD of W, and W becomes
    the residual (common_data/model/adapter_math). AdaLoRA, as peft: A and B normal(0, 0.02), Λ zero.
    """
    if base is None:
        base = init_base_params(config, seed) if adapter_config.adapter in ("dora", "pissa") else {}
    arrays = dict(base)
    for i in range(config.n_layer):
        for adapted in adapted_slices(config, adapter_config):
            name_a, name_b = adapter_tensor_names(i, adapted)
            weight_name = f"h.{i}.{adapted.layer}.weight"
            if adapter_config.adapter == "pissa":
                arrays[name_a], arrays[name_b], residual = pissa.principal_start(
                    base[weight_name][:, adapted.start:adapted.stop], adapter_config.lora_dim, adapter_config.scale)
                arrays[weight_name] = arrays[weight_name].copy()
                arrays[weight_name][:, adapted.start:adapted.stop] = residual
                continue
            shape_a, shape_b = adapter_shapes(adapted, adapter_config.lora_dim, adapter_config.initial_mode)
            if adapter_config.adapter == "adalora":
                arrays[name_a] = _normal(seed, name_a, shape_a, 0.02)
                arrays[name_b] = _normal(seed, name_b, shape_b, 0.02)
                arrays[singular_values_tensor_name(i, adapted)] = np.zeros((adapter_config.lora_dim, 1), np.float32)
                continue
            bound = np.float32(1.0 / math.sqrt(shape_a[1]))
            uniform = _generator(seed, name_a).random(shape_a, dtype=np.float32)
            arrays[name_a] = (uniform * 2 - 1) * bound
            arrays[name_b] = np.zeros(shape_b, dtype=np.float32)
            if adapter_config.adapter == "dora":
                arrays[magnitude_tensor_name(i, adapted)] = dora.initial_magnitude(
                    base[weight_name][:, adapted.start:adapted.stop])
    return arrays
