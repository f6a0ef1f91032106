"""Framework-neutral checkpoints: safetensors files of numpy arrays plus JSON metadata; never pickles.

Tensor names are Hugging Face GPT2Model names without the "transformer." prefix, in Conv1D layout
(weights [d_in, d_out]): wte.weight, wpe.weight, h.{i}.ln_1.weight, h.{i}.attn.c_attn.weight, ...,
ln_f.bias; the LM head is tied to wte. Adapters: h.{i}.attn.c_attn.lora_A.q, h.{i}.attn.c_attn.lora_B.q, ...

A training run writes, at step N, into its output folder:
  model.N.safetensors  the adapter tensors (all tensors for full fine-tuning), metadata in the header,
  model.N.json         the same metadata, readable: step, epoch, config, adapter_config, adapter_mode,
  trainer.N.safetensors  optimizer / scheduler / RNG / data-position state.
"""
import json
import re
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from common_data.atomic import atomic_open, atomic_path
from common_data.gpt2_config import AdapterConfig, GPT2Config

METADATA_KEY = "metadata"


def save_tensors(path, arrays, metadata=None):
    """Write arrays to a safetensors file (atomically); metadata is stored as a JSON string in its header."""
    header = None if metadata is None else {METADATA_KEY: json.dumps(metadata)}
    with atomic_path(path) as tmp:
        save_file({name: np.ascontiguousarray(a) for name, a in arrays.items()}, str(tmp), metadata=header)


def load_tensors(path):
    """(arrays, metadata) of a safetensors file; metadata is None when the file has none of ours."""
    with safe_open(str(path), framework="np") as handle:
        header = handle.metadata() or {}
        arrays = {name: handle.get_tensor(name) for name in handle.keys()}
    metadata = json.loads(header[METADATA_KEY]) if METADATA_KEY in header else None
    return arrays, metadata


def model_checkpoint_path(out_dir, step):
    return Path(out_dir) / f"model.{step}.safetensors"


def trainer_checkpoint_path(out_dir, step):
    return Path(out_dir) / f"trainer.{step}.safetensors"


def checkpoint_metadata(config, adapter_config, adapter_mode, **extra):
    """Metadata of a model checkpoint; extra holds e.g. step and epoch."""
    return {"config": config.to_dict(), "adapter_config": adapter_config.to_dict(), "adapter_mode": adapter_mode,
            **extra}


def save_model_checkpoint(out_dir, step, arrays, metadata):
    """Write model.{step}.safetensors and model.{step}.json; returns the safetensors path."""
    path = model_checkpoint_path(out_dir, step)
    save_tensors(path, arrays, metadata)
    with atomic_open(path.with_suffix(".json")) as handle:
        json.dump(metadata, handle, indent=2)
    return path


def load_model_checkpoint(path):
    """(arrays, metadata) of a model checkpoint; the metadata comes from the header, else from the .json beside it."""
    path = Path(path)
    arrays, metadata = load_tensors(path)
    sidecar = path.with_suffix(".json")
    if metadata is None and sidecar.is_file():
        metadata = json.loads(sidecar.read_text(encoding="utf-8"))
    if metadata is None:
        raise ValueError(f"{path}: no metadata in its header and no {sidecar.name} beside it")
    return arrays, metadata


def configs_from_metadata(metadata, source):
    """(GPT2Config, AdapterConfig or None, adapter mode) stored in a checkpoint's metadata."""
    if "config" not in metadata:
        raise ValueError(f"{source}: metadata has no 'config' field")
    config = GPT2Config.from_dict(metadata["config"], f"{source}: config")
    if "adapter_config" not in metadata:
        return config, None, "full"
    adapter_config = AdapterConfig.from_dict(metadata["adapter_config"], f"{source}: adapter_config")
    return config, adapter_config, metadata.get("adapter_mode", adapter_config.initial_mode)


def checkpoint_steps(out_dir):
    """Steps that have a model checkpoint in out_dir, ascending."""
    pattern = re.compile(r"model\.(\d+)\.safetensors")
    matches = (pattern.fullmatch(p.name) for p in Path(out_dir).glob("model.*.safetensors"))
    return sorted(int(m.group(1)) for m in matches if m)
