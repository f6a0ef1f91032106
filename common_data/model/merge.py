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
from common_data.model.plan import ModelPlan, saved_rank


def merged_weight(weight, lora_a, lora_b, scale, mode):
    """The Conv1D weight slice [d_in, d_out] with one adapter folded in (computed in float64)."""
    weight64 = weight.astype(np.float64)
    low_rank = lora_a.T.astype(np.float64)
    if mode == "sequential":
        low_rank = weight64 @ low_rank
    return (weight64 + scale * (low_rank @ lora_b.T.astype(np.float64))).astype(np.float32)


def unmerged_weight(weight, lora_a, lora_b, scale, mode):
    """merged_weight's inverse: the Conv1D weight slice without the adapter (computed in float64)."""
    weight64, lora_a, lora_b = (array.astype(np.float64) for array in (weight, lora_a, lora_b))
    low_rank = lora_a.T
    if mode == "sequential":
        # merged W' = (I + s B A) W, so W = W' - s B (I + s A B)^-1 A W' (Woodbury identity)
        low_rank = weight64 @ low_rank @ np.linalg.inv(np.eye(lora_a.shape[0]) + scale * lora_a @ lora_b).T
    return (weight64 - scale * low_rank @ lora_b.T).astype(np.float32)


def check_adapter_arrays(adapters, plan):
    """Every adapter tensor of the plan, in its shape, and no other: else ValueError naming the tensor."""
    for name, tensor in plan.adapter_tensors().items():
        if name not in adapters:
            raise ValueError(f"adapter tensor {name} is missing")
        if adapters[name].shape != tensor.shape:
            raise ValueError(f"adapter tensor {name} has shape {adapters[name].shape}, expected {tensor.shape}"
                             f" ({plan.mode} mode)")
    unexpected = sorted(set(adapters) - set(plan.adapter_tensors()))
    if unexpected:
        raise ValueError(f"adapter tensors not used by this adapter configuration: {unexpected[:5]}")


def merge_adapter_arrays(base, adapters, config, adapter_config, mode):
    """Base arrays with every adapter of `adapters` folded in; a new dict, the inputs are left as they are.

    Raises ValueError naming the tensor when an adapter tensor is missing, has the wrong shape, or is
    not one this configuration uses.
    """
    plan = ModelPlan(config, adapter_config, mode, saved_rank(adapter_config))
    check_adapter_arrays(adapters, plan)
    merged = dict(base)
    for layer in plan.adapted_layers():
        weight = merged[f"{layer.name}.weight"].copy()
        for adapted in layer.slices:
            names = layer.tensor_names(adapted.target)
            columns = slice(adapted.start, adapted.stop)
            lora_a, lora_b = adapters[names["A"]], adapters[names["B"]]
            if layer.kind == "adalora":
                lora_a = lora_a * adapters[names["E"]]
            if layer.kind == "dora":
                weight[:, columns] = dora.merged_weight(weight[:, columns], lora_a, lora_b,
                                                        adapters[names["magnitude"]], layer.scale)
            else:
                weight[:, columns] = merged_weight(weight[:, columns], lora_a, lora_b, layer.scale, mode)
        merged[f"{layer.name}.weight"] = weight
    return merged
