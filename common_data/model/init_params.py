"""Initial parameters as numpy float32 arrays, so that PyTorch and Jittor start from identical weights.

Every tensor draws from its own numpy Generator seeded by (seed, tensor name): a tensor's values depend
on nothing else, e.g. not on the number of layers or on which adapters exist.
"""
import math
import zlib

import numpy as np

from common_data.model.adapter_math import dora, pissa
from common_data.model.gpt2_config import AdapterConfig
from common_data.model.plan import ModelPlan


def _generator(seed, name):
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _normal(seed, name, shape, std):
    return _generator(seed, name).standard_normal(shape, dtype=np.float32) * np.float32(std)


def init_base_params(config, seed):
    """GPT-2 initialisation in checkpoint names and Conv1D layout (weights [d_in, d_out]).

    Weights normal(0, initializer_range), biases 0, layer-norm gains 1; as in GPT-2, the projections that
    write into the residual stream (attn.c_proj, mlp.c_proj) get std / sqrt(2 * n_layer).
    """
    stds = {"normal": config.initializer_range,
            "residual_normal": config.initializer_range / math.sqrt(2 * config.n_layer)}
    params = {}
    for name, tensor in ModelPlan(config, AdapterConfig()).tensors.items():
        if tensor.init == "zeros":
            params[name] = np.zeros(tensor.shape, dtype=np.float32)
        elif tensor.init == "ones":
            params[name] = np.ones(tensor.shape, dtype=np.float32)
        else:
            params[name] = _normal(seed, name, tensor.shape, stds[tensor.init])
    return params


def init_adapter_params(config, adapter_config, seed, base=None):
    """The adapters' initial tensors on the base arrays `base` (None: init_base_params(config, seed)), see
    start_arrays."""
    adapters = ModelPlan(config, adapter_config).adapter_tensors()
    return {name: array for name, array in start_arrays(config, adapter_config, seed, base).items() if name in adapters}


def adapter_start(tensor, seed):
    """The initial array of an adapter tensor (a TensorPlan) that does not depend on the base: LoRA's A and B,
    AdaLoRA's A, B and Λ."""
    if tensor.init == "uniform":
        # loralib's kaiming-uniform with a = sqrt(5): U(+-1/sqrt(fan_in))
        bound = np.float32(1.0 / math.sqrt(tensor.shape[1]))
        return (_generator(seed, tensor.name).random(tensor.shape, dtype=np.float32) * 2 - 1) * bound
    if tensor.init == "normal":
        return _normal(seed, tensor.name, tensor.shape, 0.02)
    return np.zeros(tensor.shape, dtype=np.float32)


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
    plan = ModelPlan(config, adapter_config)
    for layer in plan.adapted_layers():
        weight_name = f"{layer.name}.weight"
        for adapted in layer.slices:
            names = layer.tensor_names(adapted.target)
            columns = slice(adapted.start, adapted.stop)
            if plan.tensors[names["A"]].init == "svd":
                arrays[names["A"]], arrays[names["B"]], residual = pissa.principal_start(
                    base[weight_name][:, columns], layer.rank, layer.scale)
                arrays[weight_name] = arrays[weight_name].copy()
                arrays[weight_name][:, columns] = residual
                continue
            for name in names.values():
                if plan.tensors[name].init == "norm":
                    arrays[name] = dora.initial_magnitude(base[weight_name][:, columns])
                else:
                    arrays[name] = adapter_start(plan.tensors[name], seed)
    return arrays
