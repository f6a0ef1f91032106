"""Reading and writing peft's adapter folder: adapter_config.json and adapter_model.safetensors (written atomically;
peft's pickled adapter_model.bin is never read)."""
import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from common_data.util.atomic import atomic_open, atomic_path
from common_data.model.peft_format.layout import CONFIG_FILE, WEIGHTS_FILE, PeftFormatError


def write_folder(out_dir, settings, tensors, header):
    out_dir = Path(out_dir)
    with atomic_path(out_dir / WEIGHTS_FILE) as tmp:
        save_file({key: np.ascontiguousarray(array) for key, array in tensors.items()}, str(tmp), metadata=header)
    with atomic_open(out_dir / CONFIG_FILE) as handle:
        json.dump(settings, handle, indent=2, sort_keys=True)
        handle.write("\n")


def read_folder(folder):
    """(adapter_config.json as a dict, tensors, safetensors header) of a peft adapter folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PeftFormatError(f"{folder}: no such folder (a peft adapter folder: {CONFIG_FILE} + {WEIGHTS_FILE})")
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file():
        raise PeftFormatError(f"{config_path}: missing; a peft adapter folder has {CONFIG_FILE} beside {WEIGHTS_FILE}")
    if not weights_path.is_file():
        pickled = " (adapter_model.bin is pickled and never read: save with safe_serialization)" \
            if (folder / "adapter_model.bin").is_file() else ""
        raise PeftFormatError(f"{weights_path}: missing{pickled}")
    try:
        settings = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PeftFormatError(f"{config_path}: not JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(settings, dict):
        raise PeftFormatError(f"{config_path}: not a JSON object")
    try:
        with safe_open(str(weights_path), framework="np") as handle:
            header = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except SafetensorError as error:
        raise PeftFormatError(f"{weights_path}: not a safetensors file ({error})") from None
    return settings, tensors, header
