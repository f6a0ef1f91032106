"""Fold LoRA / JELLY adapters into the base weights with numpy (framework-neutral, for export).

In Conv1D layout the layer computes x Wc + b with Wc = W^T ([d_in, d_out]). For one adapted slice:
- parallel (LoRA):  h = W x + s B A x          ->  Wc' = Wc + s A^T B^T
- sequential:       h = W x + s B A (W x)      ->  Wc' = Wc + s Wc A^T B^T   (W' = (I + s B A) W)
The bias is untouched in both modes: the sequential adapter sees W x, not W x + b.
DoRA folds in as m (W + s B A) / ||W + s B A||; a saved PiSSA adapter is rank-2r plain LoRA on the original
base (common_data/model/adapter_math); AdaLoRA folds in as LoRA with A diag(Λ) for A, as peft merges it.
"""
import numpy as np

from common_data.model.adapter_math import dora
from common_data.model.gpt2_config import (adapted_slices, adapter_shapes, adapter_tensor_names, magnitude_tensor_name,
                                     singular_values_tensor_name)


def merged_weight(weight, lora_a, lora_b, scale, mode):
    """The Conv1D weight slice [d_in, d_out] with one adapter folded in (computed in float64)."""
    weight64 = weight.astype(np.float64)
    low_rank = lora_a.T.astype(np.float64)
    if mode == "sequential":
        low_rank = weight64 @ low_rank
    return (weight64 + scale * (low_rank @ lora_b.T.astype(np.float64))).astype(np.float32)


def merge_adapter_arrays(base, adapters, config, adapter_config, mode):
    """Base arrays with every adapter of `adapters` folded in; a new dict, the inputs are left as they are.

    Raises ValueError naming the tensor when an adapter tensor is missing, has the wrong shape, or is
    not one this configuration uses.
    """
    merged = dict(base)
    expected = set()
    rank = 2 * adapter_config.lora_dim if adapter_config.adapter == "pissa" else adapter_config.lora_dim
    for block in range(config.n_layer):
        for adapted in adapted_slices(config, adapter_config):
            names = adapter_tensor_names(block, adapted)
            shapes = adapter_shapes(adapted, rank, mode)
            if adapter_config.adapter == "dora":
                names, shapes = (*names, magnitude_tensor_name(block, adapted)), (*shapes, (adapted.d_out,))
            if adapter_config.adapter == "adalora":
                names, shapes = (*names, singular_values_tensor_name(block, adapted)), (*shapes, (rank, 1))
            for name, shape in zip(names, shapes):
                if name not in adapters:
                    raise ValueError(f"adapter tensor {name} is missing")
                if adapters[name].shape != shape:
                    raise ValueError(f"adapter tensor {name} has shape {adapters[name].shape}, expected {shape}"
                                     f" ({mode} mode)")
                expected.add(name)
            weight_name = f"h.{block}.{adapted.layer}.weight"
            weight = merged[weight_name].copy()
            columns = slice(adapted.start, adapted.stop)
            low_rank = [adapters[name] for name in names[:2]]
            if adapter_config.adapter == "adalora":
                low_rank[0] = low_rank[0] * adapters[names[2]]
            if adapter_config.adapter == "dora":
                weight[:, columns] = dora.merged_weight(weight[:, columns], *low_rank, adapters[names[2]],
                                                        adapter_config.scale)
            else:
                weight[:, columns] = merged_weight(weight[:, columns], *low_rank, adapter_config.scale, mode)
            merged[weight_name] = weight
    unexpected = sorted(set(adapters) - expected)
    if unexpected:
        raise ValueError(f"adapter tensors not used by this adapter configuration: {unexpected[:5]}")
    return merged
