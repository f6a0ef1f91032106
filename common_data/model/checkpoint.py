"""Framework-neutral checkpoints: safetensors files of numpy arrays plus JSON metadata; never pickles.

Tensor names are Hugging Face GPT2Model names without the "transformer." prefix, in Conv1D layout
(weights [d_in, d_out]): wte.weight, wpe.weight, h.{i}.ln_1.weight, h.{i}.attn.c_attn.weight, ...,
ln_f.bias; the LM head is tied to wte. Adapters: h.{i}.attn.c_attn.lora_A.q, h.{i}.attn.c_attn.lora_B.q, ...

A training run writes, at step N, into its output folder:
  model.N.safetensors  the adapter tensors (all tensors for full fine-tuning), metadata in the header,
  model.N.json         the same metadata, readable: step, epoch, config, adapter_config, adapter_mode,
  trainer.N.safetensors  optimizer / scheduler / RNG / data-position state.
"""
import contextlib
import json
import re
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from common_data.util.atomic import atomic_open, atomic_path, temporary_file_pattern
from common_data.util.errors import UserError
from common_data.model.gpt2_config import MODEL_CARDS, AdapterConfig, GPT2Config
from common_data.model.plan import base_param_shapes

METADATA_KEY = "metadata"
RUN_CHECKPOINT_NAME = r"(?:model|trainer)\.\d+\.(?:safetensors|json)"
# safetensors writes into a temporary file of its own beside the one it is given (Rust's tempfile: ".tmp" and six
# characters), renamed when complete
SAFETENSORS_TEMPORARY_NAME = r"\.tmp[A-Za-z0-9]{6}"
LEFT_BY_AN_INTERRUPTED_SAVE = re.compile(f"{temporary_file_pattern(RUN_CHECKPOINT_NAME)}|{SAFETENSORS_TEMPORARY_NAME}")


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or written, or that does not fit the model configuration."""


@contextlib.contextmanager
def reporting_write_failure(path):
    """A failed write of `path` (a full disk, say) raises CheckpointError naming it and, for a run's checkpoint,
    the newest complete checkpoint beside it, which the failure left as it was."""
    try:
        yield
    except (SafetensorError, OSError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        message = f"{path}: cannot write it ({reason})"
        if re.fullmatch(RUN_CHECKPOINT_NAME, Path(path).name):
            folder = Path(path).parent
            step = newest_complete_step(folder)
            message += (f"; no complete checkpoint in {folder} yet" if step is None else
                        f"; the newest complete checkpoint, {model_checkpoint_path(folder, step)}, is untouched")
        raise CheckpointError(message) from error


def save_tensors(path, arrays, metadata=None):
    """Write arrays to a safetensors file (atomically); metadata is stored as a JSON string in its header."""
    header = None if metadata is None else {METADATA_KEY: json.dumps(metadata)}
    with reporting_write_failure(path), atomic_path(path) as tmp:
        save_file({name: np.ascontiguousarray(a) for name, a in arrays.items()}, str(tmp), metadata=header)


def load_tensors(path):
    """(arrays, metadata) of a safetensors file; metadata is None when the file has none of ours."""
    try:
        with safe_open(str(path), framework="np") as handle:
            header = handle.metadata() or {}
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}
    except SafetensorError as error:
        raise CheckpointError(f"{path}: not a safetensors file ({error}); checkpoints are read as safetensors only, "
                              "nothing is unpickled: convert a PyTorch or Hugging Face GPT-2 with "
                              "`python model_process.py import-hf SRC OUT.safetensors`") from error
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
    with reporting_write_failure(path.with_suffix(".json")), atomic_open(path.with_suffix(".json")) as handle:
        json.dump(metadata, handle, indent=2)
    return path


def remove_interrupted_saves(out_dir):
    """Delete the temporary files that saves of checkpoints killed before they finished left in out_dir (a save
    that fails removes its own); returns their paths. The trainers call it before they write anything."""
    removed = [path for path in Path(out_dir).glob(".*") if LEFT_BY_AN_INTERRUPTED_SAVE.fullmatch(path.name)]
    for path in removed:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return removed


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


def model_size(config):
    """'gpt2.tiny (4 layers x 256)', or the layers and width alone for a config of no model card."""
    size = f"{config.n_layer} layers x {config.n_embd}"
    card = next((name for name, card_config in MODEL_CARDS.items() if card_config == config), None)
    return size if card is None else f"{card} ({size})"


def check_config(metadata, config, source):
    """The model configuration stored in a checkpoint (if any) must be the one the model is built with."""
    if metadata and "config" in metadata:
        stored, _, _ = configs_from_metadata(metadata, source)
        if stored != config:
            raise CheckpointError(f"{source}: holds a GPT-2 of {model_size(stored)}, but the model is "
                                  f"{model_size(config)}: give the --model_card it was made for")


def check_base_tensors(arrays, config, source, complete=True):
    """Every tensor must be one of the model's with the model's shape; complete: all of them must be there."""
    expected = base_param_shapes(config)
    for name, array in arrays.items():
        if name not in expected:
            raise CheckpointError(f"{source}: tensor {name} is not part of GPT-2 {config}")
        if tuple(array.shape) != expected[name]:
            raise CheckpointError(f"{source}: tensor {name} has shape {tuple(array.shape)}, the model "
                                  f"({model_size(config)}) needs {expected[name]}")
    missing = sorted(set(expected) - set(arrays)) if complete else []
    if missing:
        raise CheckpointError(f"{source}: tensors missing: {', '.join(missing[:5])}"
                              f"{' ...' if len(missing) > 5 else ''}")


def load_base_checkpoint(path, config):
    """The arrays of a base model checkpoint (gpt2_ft.py --init_checkpoint): exactly the model's tensors."""
    arrays, metadata = load_tensors(path)
    check_config(metadata, config, str(path))
    check_base_tensors(arrays, config, str(path))
    return arrays


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


def newest_complete_step(out_dir):
    """The newest step with both its model and its trainer checkpoint in out_dir (the trainer file is written
    last), or None."""
    complete = [step for step in checkpoint_steps(out_dir) if trainer_checkpoint_path(out_dir, step).is_file()]
    return complete[-1] if complete else None
