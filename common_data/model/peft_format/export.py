"""This project's adapter checkpoint -> peft's adapter folder, exactly or not at all.

- LoRA, rsLoRA, DoRA, JELLY in parallel mode (= LoRA): one peft module per adapted layer. Slices q, k, v of c_attn
  become one c_attn module of rank (number of slices) x r: A is the slices' A stacked, B holds each slice's B in its
  own output rows and its own columns and zeros elsewhere, so that B A x is each slice's B A x in its place and zero
  on the columns without an adapter; lora_alpha (per module, alpha_pattern) keeps the scale to the last bit.
- PiSSA: the checkpoint holds it as plain LoRA of rank 2r on the original base (common_data/model/adapter_math/pissa.py),
  peft's own conversion (path_initial_model_for_weight_conversion); it is written as that LoRA.
- AdaLoRA: init_r is the widest module's rank; the triplets whose Λ is zero (masked by the rank allocator, or slots
  a narrower module does not have) are left out and the rank_pattern says which, as peft saves it.
Refused, with the reason: JELLY's sequential adapters (peft has no adapter on W x), DoRA on slices of c_attn (peft's
DoRA rescales every output feature of the module by the norms of the whole weight), full fine-tuning and BitFit (no
adapter: model_process.py export-hf).
"""
import json

import numpy as np

from common_data.model.checkpoint import configs_from_metadata
from common_data.model.peft_format.layout import (LAYERS, SLICE_TARGETS, SOURCE_METADATA_KEY, PeftFormatError, alpha_for,
                                            module_name, peft_key, suffixes)
from common_data.model.plan import ROLE_SUFFIXES, ModelPlan, saved_rank


def check_exportable(adapter_config, mode, source):
    if mode == "full" or adapter_config is None or adapter_config.lora_dim == 0:
        raise PeftFormatError(f"{source}: no adapter (full fine-tuning or BitFit): merge it into the model with "
                              "model_process.py export-hf instead")
    if mode == "sequential":
        raise PeftFormatError(f"{source}: JELLY sequential adapters act on W x, which peft has no adapter for: "
                              "export a checkpoint saved after the seq2par switch, or merge with export-hf")
    sliced = [t for t in adapter_config.targets if t in SLICE_TARGETS]
    if adapter_config.adapter == "dora" and sliced:
        raise PeftFormatError(f"{source}: DoRA on the {', '.join(sliced)} slices of c_attn: peft's DoRA normalises "
                              "every output feature of c_attn by the whole weight's norms, a different adapter; train "
                              "DoRA on c_attn instead")


def layer_slices(plan):
    """{layer: its adapted slices, in column order} (every block has the same), layers in LAYERS order."""
    return {layer: plan.layers[f"h.0.{layer}"].slices for layer in LAYERS if plan.layers[f"h.0.{layer}"].slices}


def fused_module(arrays, layer):
    """{kind: array} of the peft module made of one LayerPlan's adapted slices (see the module docstring)."""
    names = [layer.tensor_names(adapted.target) for adapted in layer.slices]
    lora_b = np.zeros((layer.d_out, layer.rank * len(layer.slices)), np.float32)
    for index, (adapted, slice_names) in enumerate(zip(layer.slices, names)):
        lora_b[adapted.start:adapted.stop, index * layer.rank:(index + 1) * layer.rank] = arrays[slice_names["B"]]
    module = {"lora_A": np.concatenate([arrays[slice_names["A"]] for slice_names in names]), "lora_B": lora_b}
    for role in ("E", "magnitude"):
        if role in names[0]:
            module[ROLE_SUFFIXES[role]] = np.concatenate([arrays[slice_names[role]] for slice_names in names])
    return module


def expected_shapes(plan):
    """{checkpoint name: shape} of the plan's adapter tensors."""
    return {name: tensor.shape for name, tensor in plan.adapter_tensors().items()}


def check_tensors(arrays, shapes, source):
    """The checkpoint must hold exactly the tensors of its configuration, in their shapes."""
    unknown, missing = sorted(set(arrays) - set(shapes)), sorted(set(shapes) - set(arrays))
    if unknown or missing:
        raise PeftFormatError(f"{source}: tensors its adapter configuration does not have: {unknown[:3]}; "
                              f"tensors missing: {missing[:3]}")
    for name, shape in shapes.items():
        if arrays[name].shape != shape:
            raise PeftFormatError(f"{source}: tensor {name} has shape {arrays[name].shape}, its configuration "
                                  f"needs {shape}")


def widen(module, rank):
    """An AdaLoRA module padded with zero triplets to `rank`."""
    missing = rank - module["lora_A"].shape[0]
    return {"lora_A": np.pad(module["lora_A"], ((0, missing), (0, 0))),
            "lora_E": np.pad(module["lora_E"], ((0, missing), (0, 0))),
            "lora_B": np.pad(module["lora_B"], ((0, 0), (0, missing)))}


def to_peft(arrays, metadata, base_model, source):
    """(adapter_config.json as a dict, adapter_model.safetensors arrays, its header) of a checkpoint's adapters."""
    config, adapter_config, mode = configs_from_metadata(metadata, source)
    check_exportable(adapter_config, mode, source)
    adalora = adapter_config.adapter == "adalora"
    rank = saved_rank(adapter_config)
    plan = ModelPlan(config, adapter_config, "parallel", rank)
    check_tensors(arrays, expected_shapes(plan), source)
    slices = layer_slices(plan)
    modules = {(block, layer): fused_module(arrays, plan.layers[f"h.{block}.{layer}"])
               for block in range(config.n_layer) for layer in slices}
    peft_type = "ADALORA" if adalora else "LORA"
    kinds = suffixes(peft_type)
    module_rank = {layer: rank * len(adapted) for layer, adapted in slices.items()}
    settings = {"base_model_name_or_path": base_model, "bias": "none", "fan_in_fan_out": True,
                "inference_mode": True, "init_lora_weights": True, "lora_dropout": adapter_config.lora_dropout,
                "modules_to_save": None, "peft_type": peft_type, "target_modules": list(slices), "task_type": None}
    if adalora:
        init_r = max(module_rank.values())
        rank_pattern = {}
        for (block, layer), module in modules.items():
            module = widen(module, init_r)
            kept = module["lora_E"][:, 0] != 0
            rank_pattern[f"{module_name(block, layer)}.lora_E"] = kept.tolist()
            modules[block, layer] = {"lora_A": module["lora_A"][kept], "lora_E": module["lora_E"][kept],
                                     "lora_B": module["lora_B"][:, kept]}
        kept_ranks = [sum(pattern) for pattern in rank_pattern.values()]
        settings.update(init_r=init_r, target_r=max(1, round(sum(kept_ranks) / len(kept_ranks))), r=init_r,
                        lora_alpha=alpha_for(adapter_config.scale, init_r, adalora=True), rank_pattern=rank_pattern,
                        total_step=max(1, int(metadata.get("step", 1))), tinit=0, tfinal=0)
    else:
        alphas = {layer: alpha_for(adapter_config.scale, r, adapter_config.use_rslora)
                  for layer, r in module_rank.items()}
        first = next(iter(slices))
        settings.update(r=module_rank[first], lora_alpha=alphas[first], use_rslora=adapter_config.use_rslora,
                        use_dora=adapter_config.adapter == "dora",
                        rank_pattern={layer: r for layer, r in module_rank.items() if r != module_rank[first]},
                        alpha_pattern={layer: a for layer, a in alphas.items() if a != alphas[first]})
    tensors = {peft_key(block, layer, kinds[kind]): array
               for (block, layer), module in modules.items() for kind, array in module.items()}
    header = {"format": "pt", SOURCE_METADATA_KEY: json.dumps(metadata)}
    return settings, tensors, header

