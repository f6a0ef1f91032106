"""gpt2_ft.py --adapter_checkpoint: start the adapters from a checkpoint (a run of either framework, or
model_process.py import-peft's output) instead of their initialisation; the optimizer and schedule start fresh.

The checkpoint's adapter configuration replaces the flags that describe the adapters (--adapter, --lora_dim,
--lora_alpha, --lora_targets, --use_rslora, --jelly_mode), so that run.json records what trains; --lora_dropout
and everything else stay the flags'.
"""
from common_data.model.checkpoint import CheckpointError, check_config, configs_from_metadata, load_model_checkpoint


def adopt_adapter_checkpoint(args, config):
    """The arrays of --adapter_checkpoint (None without it), with args' adapter flags set from its metadata."""
    if not args.adapter_checkpoint:
        return None
    source = str(args.adapter_checkpoint)
    arrays, metadata = load_model_checkpoint(source)
    check_config(metadata, config, source)
    _, adapter_config, mode = configs_from_metadata(metadata, source)
    if mode == "full" or adapter_config is None or adapter_config.lora_dim == 0:
        raise CheckpointError(f"{source}: holds no adapters (full fine-tuning or BitFit): start from it with "
                              "--init_checkpoint instead")
    args.adapter, args.lora_dim, args.lora_alpha = adapter_config.adapter, adapter_config.lora_dim, adapter_config.lora_alpha
    args.lora_targets, args.use_rslora = adapter_config.targets, adapter_config.use_rslora
    if adapter_config.adapter == "jelly":
        args.jelly_mode, args.switch_epoch, args.switch_step = mode, None, None
    return arrays
