"""The weights gpt2_beam.py decodes with: the base, with the trained adapters merged in (numpy only).

Merged weights decode as fast as the plain model. Sources, as microsoft/LoRA's and ours write them:
- --init_checkpoint: base tensors (model_process.py import-hf), possibly with adapter tensors beside them
  (described by the --lora_* / --adapter / --jelly_mode flags unless its metadata says);
- --adapter_checkpoint: a gpt2_ft.py checkpoint (model.N.safetensors, metadata in its header or in
  model.N.json): the adapters, or every tensor after full fine-tuning.
A tensor that does not fit the model stops with an error naming the file, the tensor and both shapes.
"""
from common_data.model.checkpoint import (CheckpointError, check_base_tensors, check_config, configs_from_metadata,
                                    load_model_checkpoint, load_tensors)
from common_data.model.gpt2_config import AdapterConfig
from common_data.model.init_params import init_base_params
from common_data.model.merge import merge_adapter_arrays


def is_adapter_tensor(name):
    return ".lora_" in name


def flag_adapter(args):
    """(AdapterConfig, mode) the --lora_* flags describe, for adapter tensors without metadata."""
    adapter_config = AdapterConfig(adapter=args.adapter or "lora", lora_dim=args.lora_dim,
                                   lora_alpha=float(args.lora_alpha), targets=args.lora_targets,
                                   jelly_mode=args.jelly_mode, use_rslora=args.use_rslora)
    if adapter_config.adapter == "jelly" and adapter_config.jelly_mode == "seq2par":
        raise CheckpointError("--jelly_mode seq2par: adapter tensors without metadata do not say whether they "
                              "were saved before or after the switch; give --jelly_mode sequential or parallel")
    return adapter_config, adapter_config.initial_mode


def merged(base, adapters, config, adapter_config, mode, source):
    try:
        return merge_adapter_arrays(base, adapters, config, adapter_config, mode)
    except ValueError as error:
        raise CheckpointError(f"{source}: {error}") from error


def decoding_arrays(config, args):
    """float32 arrays in checkpoint names: the base of --init_checkpoint (or random) with the adapters merged."""
    adapters = {}
    if args.init_checkpoint:
        source = str(args.init_checkpoint)
        arrays, metadata = load_tensors(source)
        check_config(metadata, config, source)
        base = {name: array for name, array in arrays.items() if not is_adapter_tensor(name)}
        adapters = {name: array for name, array in arrays.items() if is_adapter_tensor(name)}
        if adapters and not base:
            raise CheckpointError(f"{source}: holds adapters only; give it as --adapter_checkpoint and the base "
                                  "model as --init_checkpoint")
        check_base_tensors(base, config, source)
        if adapters:
            if args.lora_dim == 0:
                raise CheckpointError(f"{source}: holds adapter tensors ({next(iter(adapters))}, ...); "
                                      "give --lora_dim, --lora_alpha and --lora_targets to describe them")
            adapter_config, mode = flag_adapter(args)
            if metadata and "adapter_config" in metadata:
                _, adapter_config, mode = configs_from_metadata(metadata, source)
            base = merged(base, adapters, config, adapter_config, mode, source)
    else:
        base = init_base_params(config, args.random_seed)
    if args.adapter_checkpoint:
        source = str(args.adapter_checkpoint)
        if adapters:
            raise CheckpointError(f"{source}: --init_checkpoint holds adapters already")
        trained, metadata = load_model_checkpoint(source)
        check_config(metadata, config, source)
        _, adapter_config, mode = configs_from_metadata(metadata, source)
        if mode == "full":
            check_base_tensors(trained, config, source, complete=False)
            return {**base, **trained}
        if args.lora_dim and args.lora_dim != adapter_config.lora_dim:
            raise CheckpointError(f"{source}: adapters of rank {adapter_config.lora_dim}, --lora_dim says "
                                  f"{args.lora_dim}")
        if args.adapter and args.adapter != adapter_config.adapter:
            raise CheckpointError(f"{source}: {adapter_config.adapter} adapters, --adapter says {args.adapter} "
                                  "(without --adapter the checkpoint's own kind is taken)")
        return merged(base, trained, config, adapter_config, mode, source)
    return base
