"""Convert GPT-2 checkpoints between Hugging Face and this project's framework-neutral safetensors layout.

  python model_process.py import-hf SRC OUT.safetensors
  python model_process.py export-hf BASE.safetensors OUT_DIR [--adapter ADAPTER.safetensors]
  python model_process.py export-peft ADAPTER.safetensors OUT_DIR --base_model gpt2-medium
  python model_process.py import-peft PEFT_DIR OUT.safetensors --base BASE.safetensors
"""
import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from common_data.util.atomic import atomic_open, atomic_path
from common_data.model.checkpoint import (configs_from_metadata, load_model_checkpoint, load_tensors, model_size,
                                    save_tensors)
from common_data.cli.command import add_debug_argument, command
from common_data.model.gpt2_config import GPT2Config
from common_data.model.plan import base_param_shapes
from common_data.model.merge import merge_adapter_arrays
from common_data.model.peft_format.export import to_peft
from common_data.model.peft_format.folder import read_folder, write_folder
from common_data.model.peft_format.layout import PeftFormatError
from common_data.model.peft_format.load import from_peft

HF_PREFIX = "transformer."
# Causal-mask buffers that older transformers versions saved with the weights.
HF_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def find_hf_weights(src):
    """(weights file, config.json) of a Hugging Face checkpoint folder, or of a weights file in one."""
    src = Path(src)
    if src.is_dir():
        candidates = [src / "model.safetensors", src / "pytorch_model.bin"]
        weights = next((p for p in candidates if p.is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"{src}: no model.safetensors or pytorch_model.bin (sharded checkpoints are "
                                    "not supported)")
    elif src.is_file():
        weights = src
    else:
        raise FileNotFoundError(f"{src}: no such file or folder")
    config_path = weights.parent / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: missing (the GPT-2 config of {weights})")
    return weights, config_path


def read_hf_weights(path):
    """float32 numpy arrays of a model.safetensors, or of a pytorch_model.bin (needs torch; loaded weights_only:
    a file that holds other Python objects is refused, never unpickled)."""
    if path.suffix == ".safetensors":
        arrays, _ = load_tensors(path)
    else:
        import torch

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(f"{path}: holds Python objects besides tensors, and nothing is unpickled here: save the "
                             "model as model.safetensors (transformers' save_pretrained) and import that") from error
        except RuntimeError as error:
            raise ValueError(f"{path}: not a PyTorch weights file ({error})") from error
        arrays = {name: tensor.float().numpy() for name, tensor in state.items()}
    return {name: array.astype(np.float32, copy=False) for name, array in arrays.items()}


def from_hf_names(hf_arrays, config, source):
    """HF GPT2Model / GPT2LMHeadModel tensors -> checkpoint names; stops on anything unexpected."""
    expected = base_param_shapes(config)
    arrays = {}
    for hf_name, array in hf_arrays.items():
        name = hf_name.removeprefix(HF_PREFIX)
        if name.endswith(HF_BUFFER_SUFFIXES):
            continue
        if name == "lm_head.weight":
            wte = hf_arrays.get(HF_PREFIX + "wte.weight", hf_arrays.get("wte.weight"))
            if wte is None or not np.array_equal(array, wte):
                raise ValueError(f"{source}: lm_head.weight differs from wte.weight; this GPT-2 ties them")
            continue
        if name not in expected:
            raise ValueError(f"{source}: unexpected tensor {hf_name}")
        if array.shape != expected[name]:
            raise ValueError(f"{source}: tensor {hf_name} has shape {array.shape}, expected {expected[name]}")
        arrays[name] = array
    missing = sorted(set(expected) - set(arrays))
    if missing:
        raise ValueError(f"{source}: tensors missing: {missing[:5]}")
    return arrays


def import_hf(src, out):
    weights, config_path = find_hf_weights(src)
    config = GPT2Config.from_hf(json.loads(config_path.read_text(encoding="utf-8")), str(config_path))
    arrays = from_hf_names(read_hf_weights(weights), config, str(weights))
    save_tensors(out, arrays, {"config": config.to_dict(), "source": str(weights)})
    print(f"wrote {out}: {len(arrays)} tensors, {sum(a.size for a in arrays.values()):,} parameters")


def merged_arrays(base_path, adapter_path):
    """The base model's arrays, with the adapter checkpoint at adapter_path (if any) folded in."""
    base, metadata = load_model_checkpoint(base_path)
    config, _, _ = configs_from_metadata(metadata, str(base_path))
    if adapter_path is None:
        return config, base
    adapters, adapter_metadata = load_model_checkpoint(adapter_path)
    adapter_model_config, adapter_config, mode = configs_from_metadata(adapter_metadata, str(adapter_path))
    if adapter_model_config != config:
        raise ValueError(f"{adapter_path}: trained on {adapter_model_config}, but {base_path} is {config}")
    if mode == "full":
        unknown = sorted(set(adapters) - set(base))
        if unknown:
            raise ValueError(f"{adapter_path}: tensors not in the base model: {unknown[:5]}")
        return config, {**base, **adapters}
    try:
        return config, merge_adapter_arrays(base, adapters, config, adapter_config, mode)
    except ValueError as error:
        raise ValueError(f"{adapter_path}: {error}") from error


def export_hf(base_path, out_dir, adapter_path=None):
    config, arrays = merged_arrays(base_path, adapter_path)
    out_dir = Path(out_dir)
    hf_arrays = {HF_PREFIX + name: np.ascontiguousarray(array) for name, array in arrays.items()}
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(hf_arrays, str(tmp), metadata={"format": "pt"})
    with atomic_open(out_dir / "config.json") as handle:
        json.dump(config.to_hf(), handle, indent=2)
    print(f"wrote {out_dir}: config.json, model.safetensors")


def check_named_base(base_model, config, adapter_path):
    """A base named by a local folder (an export-hf output, say) must be the GPT-2 the adapter was trained on."""
    config_path = Path(base_model) / "config.json"
    if not config_path.is_file():
        return
    named = GPT2Config.from_hf(json.loads(config_path.read_text(encoding="utf-8")), str(config_path))
    if named != config:
        raise PeftFormatError(f"{adapter_path}: trained on a GPT-2 of {model_size(config)}, but --base_model "
                              f"{base_model} is one of {model_size(named)}")


def export_peft(adapter_path, out_dir, base_model):
    arrays, metadata = load_model_checkpoint(adapter_path)
    settings, tensors, header = to_peft(arrays, metadata, base_model, str(adapter_path))
    check_named_base(base_model, configs_from_metadata(metadata, str(adapter_path))[0], adapter_path)
    write_folder(out_dir, settings, tensors, header)
    print(f"wrote {out_dir}: adapter_config.json, adapter_model.safetensors ({settings['peft_type']}, "
          f"{len(settings['target_modules'])} module kinds, base {base_model})")


def import_peft(peft_dir, out, base_path):
    _, base_metadata = load_tensors(base_path)
    if not base_metadata or "config" not in base_metadata:
        raise PeftFormatError(f"{base_path}: no GPT-2 config in its metadata (write it with model_process.py "
                              "import-hf)")
    base_config, _, _ = configs_from_metadata(base_metadata, str(base_path))
    settings, tensors, header = read_folder(peft_dir)
    arrays, metadata = from_peft(settings, tensors, header, base_config, f"--base {base_path}", str(peft_dir))
    save_tensors(out, arrays, metadata)
    with atomic_open(Path(out).with_suffix(".json")) as handle:
        json.dump(metadata, handle, indent=2)
    adapter = metadata["adapter_config"]
    print(f"wrote {out}: {adapter['adapter']} adapters of rank {adapter['lora_dim']} on {','.join(adapter['targets'])}")


@command("model_process.py")
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    importer = commands.add_parser("import-hf", help="Hugging Face GPT-2 checkpoint -> framework-neutral safetensors")
    importer.add_argument("src", help="HF checkpoint folder (config.json + model.safetensors or pytorch_model.bin), "
                                      "or one of those weight files")
    importer.add_argument("out", help="output .safetensors (GPT2Config in its metadata)")
    exporter = commands.add_parser("export-hf", help="framework-neutral checkpoint (+ adapter) -> HF GPT2LMHeadModel "
                                                     "folder, adapters merged")
    exporter.add_argument("base", help="base model .safetensors written by import-hf or by training")
    exporter.add_argument("out_dir", help="output folder for config.json and model.safetensors")
    exporter.add_argument("--adapter", help="adapter checkpoint (model.STEP.safetensors) to merge into the base")
    peft_exporter = commands.add_parser(
        "export-peft", help="adapter checkpoint -> peft adapter folder (PeftModel.from_pretrained loads it)",
        description="Write a trained adapter (LoRA, rsLoRA, DoRA, PiSSA as LoRA on the original base, AdaLoRA, JELLY "
                    "after its switch) as a peft adapter folder, exactly; what peft cannot express is refused.")
    peft_exporter.add_argument("adapter", help="adapter checkpoint (model.STEP.safetensors of gpt2_ft.py)")
    peft_exporter.add_argument("out_dir", help="output folder for adapter_config.json and adapter_model.safetensors")
    peft_exporter.add_argument("--base_model", required=True,
                               help="base_model_name_or_path to write: a hub name (gpt2-medium) or the folder of the "
                                    "base (export-hf), whose config.json must then be the adapter's GPT-2")
    peft_importer = commands.add_parser(
        "import-peft", help="peft adapter folder -> adapter checkpoint (gpt2_beam.py / gpt2_ft.py --adapter_checkpoint)",
        description="Read a peft LoRA (rsLoRA, DoRA) or AdaLoRA adapter of GPT-2 into this project's adapter "
                    "checkpoint, exactly; what this project cannot express is refused.")
    peft_importer.add_argument("peft_dir", help="peft adapter folder (adapter_config.json + adapter_model.safetensors)")
    peft_importer.add_argument("out", help="output adapter checkpoint .safetensors (+ .json beside it)")
    peft_importer.add_argument("--base", required=True,
                               help="the base model .safetensors (import-hf) the adapter goes with: its GPT-2 config "
                                    "goes into the checkpoint and the adapter's shapes are checked against it")
    add_debug_argument(parser, importer, exporter, peft_exporter, peft_importer)
    args = parser.parse_args(argv)
    if args.command == "import-hf":
        import_hf(args.src, args.out)
    elif args.command == "export-hf":
        export_hf(args.base, args.out_dir, args.adapter)
    elif args.command == "export-peft":
        export_peft(args.adapter, args.out_dir, args.base_model)
    else:
        import_peft(args.peft_dir, args.out, args.base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
