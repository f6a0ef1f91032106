"""Numbers for aligning the PyTorch and the Jittor model step by step; NLG_jittor/src/probe.py is the mirror image.

    python NLG_pytorch/src/probe.py --data rows.jsonl --model_card gpt2.tiny --lora_dim 4 --lora_alpha 32 \\
        --label_smooth 0.1 --steps 20 --lr 0.001 --correct_bias --output torch.safetensors

On the first batch of the first --rows examples of --data (encoded JSON lines, file order) it writes into
--output (safetensors, float32 unless noted):
  logits           [B, L, V], without targets
  loss             [1] float64, with targets, loss mask and --label_smooth
  grad.NAME        gradient of each trainable tensor (the adapters; every tensor with --lora_dim 0)
With --steps N it then makes N optimizer updates (microsoft/LoRA's AdamW at the --scheduler rate over N
steps) on the training batches of those rows (common_data.training.batching order from --random_seed), dropout off
(AdaLoRA's allocator and regulariser are the trainer's, not the probe's):
  step_losses      [N] float64, the loss of each step before its update
  trained.NAME     the trainable tensors after the last update
  switch.logits_before, switch.logits_after   JELLY seq2par: logits of the first batch around --switch_step
The header metadata holds the framework, the arguments and the final adapter mode.
"""
import argparse
import sys

import numpy as np
import torch

from common_data.training import batching
from common_data.model.checkpoint import configs_from_metadata, load_tensors, save_tensors
from common_data.cli.ft_args import add_optimizer_arguments, comma_list
from common_data.model.gpt2_config import ADAPTERS, JELLY_MODES, MODEL_CARDS, AdapterConfig, config_for_card
from common_data.training.schedule import learning_rate
from common_data.trace.start import training_start
from NLG_pytorch.src import adapters
from NLG_pytorch.src.model import GPT2LMModel
from NLG_pytorch.src.optimizer import adamw_from_args

FRAMEWORK = "torch"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", required=True, help="encoded examples (JSON lines of token ids)")
    parser.add_argument("--rows", type=int, default=8, help="use the first this many examples")
    parser.add_argument("--batch_size", type=int, default=4, help="examples per batch")
    parser.add_argument("--seq_len", type=int, default=128, help="longest sequence")
    parser.add_argument("--pad_multiple", type=int, default=batching.BatchConfig.pad_multiple,
                        help="pad each batch to a multiple of this length")
    parser.add_argument("--output", required=True, help="safetensors file to write")
    model = parser.add_argument_group("model (gpt2_ft.py's flags)")
    model.add_argument("--model_card", default="gpt2.tiny", choices=sorted(MODEL_CARDS),
                       help="model size, unless --init_checkpoint's metadata names a config")
    model.add_argument("--init_checkpoint", default=None, help="base weights (safetensors, checkpoint layout)")
    model.add_argument("--adapter_checkpoint", default=None,
                       help="adapter tensors to start from (e.g. gpt2_ft.py's model.N.safetensors) instead of "
                            "the initial ones, whose B = 0 gives A no gradient")
    model.add_argument("--trainer_checkpoint", default=None,
                       help="start from this trainer.N.safetensors of gpt2_ft.py (either framework) as its run would "
                            "go on: adapters (model.N beside it), optimizer moments, the schedule over the run's "
                            "max_step and the batches of its step N + 1 on, over every row of --data")
    model.add_argument("--random_seed", type=int, default=10, help="seed of the initial weights and data order")
    model.add_argument("--adapter", default="lora", choices=ADAPTERS, help="adapter kind")
    model.add_argument("--lora_dim", type=int, default=0, help="adapter rank (0 = full fine-tuning)")
    model.add_argument("--lora_alpha", type=int, default=128, help="adapter alpha (scale = alpha / r)")
    model.add_argument("--lora_targets", type=comma_list, default=("q", "v"), help="comma-separated layers to adapt")
    model.add_argument("--jelly_mode", default="seq2par", choices=JELLY_MODES, help="JELLY adapter placement")
    model.add_argument("--use_rslora", action="store_true", help="rsLoRA: scale = alpha / sqrt(r)")
    model.add_argument("--label_smooth", type=float, default=0.0, help="label smoothing")
    train = parser.add_argument_group("optimizer steps (gpt2_ft.py's flags)")
    train.add_argument("--steps", type=int, default=0, help="optimizer updates after the first batch's numbers")
    train.add_argument("--switch_step", type=int, default=None,
                       help="JELLY seq2par: switch to parallel after this step")
    add_optimizer_arguments(train)
    return parser


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    seq2par = args.adapter == "jelly" and args.jelly_mode == "seq2par" and args.lora_dim > 0
    if args.switch_step is not None and not seq2par:
        parser.error("--switch_step needs --adapter jelly --jelly_mode seq2par and --lora_dim > 0")
    if min(args.rows, args.batch_size, args.seq_len, args.pad_multiple) < 1 or args.steps < 0:
        parser.error("--rows, --batch_size, --seq_len and --pad_multiple must be positive, --steps not negative")
    return args


def load_model(args, start):
    """The model: base weights from --init_checkpoint (config from its metadata) or from --random_seed, adapters
    from --adapter_checkpoint, the Start's checkpoint or --random_seed."""
    config, base = config_for_card(args.model_card), None
    if args.init_checkpoint:
        base, metadata = load_tensors(args.init_checkpoint)
        if metadata is not None and "config" in metadata:
            config = configs_from_metadata(metadata, args.init_checkpoint)[0]
    adapter_config = AdapterConfig(adapter=args.adapter, lora_dim=args.lora_dim, lora_alpha=float(args.lora_alpha),
                                   targets=args.lora_targets, jelly_mode=args.jelly_mode,
                                   use_rslora=args.use_rslora)
    model = GPT2LMModel(config, adapter_config, seed=args.random_seed, base_arrays=base)
    adapter_checkpoint = args.adapter_checkpoint or start.adapter_checkpoint
    if adapter_checkpoint:
        model.load_arrays(load_tensors(adapter_checkpoint)[0], strict=False)
    adapters.mark_only_adapter_as_trainable(model)
    return model


def trainable(model):
    return {name: param for name, param in model.named_parameters() if param.requires_grad}


def batch_loss(model, batch, label_smooth):
    _, loss = model(torch.from_numpy(batch.input_ids), targets=torch.from_numpy(batch.targets),
                    loss_mask=torch.from_numpy(batch.loss_mask), label_smooth=label_smooth)
    return loss


def batch_logits(model, batch):
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(batch.input_ids))
    return logits.numpy()


def probe_batch(model, batch, label_smooth):
    """Logits, loss and the gradients of the trainable tensors on one batch."""
    params = trainable(model)
    loss = batch_loss(model, batch, label_smooth)
    grads = torch.autograd.grad(loss, list(params.values()))
    return {"logits": batch_logits(model, batch), "loss": np.array([loss.item()]),
            **{f"grad.{name}": grad.numpy() for name, grad in zip(params, grads)}}


def training_batches(examples, config, seed, start):
    """The training batches from the Start's place on, epoch after epoch without end."""
    epoch, batches_done = start.epoch, start.batches_done
    while True:
        yield from batching.train_batches(examples, config, seed, epoch, batches_done)
        epoch, batches_done = epoch + 1, 0


def resume_optimizer(optimizer, params, start):
    if start.optimizer_arrays is not None:
        optimizer.load_state_arrays(params, start.optimizer_arrays, start.optimizer_steps)


def update_rate(step, args, start):
    """The rate of the update that ends the probe's step `step` + 1: the schedule after the steps made before it."""
    return learning_rate(start.step + step, args.lr, args.scheduler, args.warmup_step, start.max_step or args.steps)


def train_step(model, optimizer, params, batch, lr, args):
    """One update as gpt2_ft.py makes it; returns the loss before the update."""
    loss = batch_loss(model, batch, args.label_smooth)
    loss.backward()
    optimizer.set_lr(lr)
    if args.clip > 0:
        torch.nn.utils.clip_grad_norm_(params.values(), args.clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def train(model, batches, probe, args, start):
    """args.steps updates; the losses, the logits around the switch, the trained tensors."""
    params = trainable(model)
    optimizer = adamw_from_args(params, args)
    resume_optimizer(optimizer, params, start)
    outputs, losses = {}, []
    for step, batch in zip(range(args.steps), batches):
        if step == args.switch_step:
            outputs["switch.logits_before"] = batch_logits(model, probe)
            optimizer.reset_state(adapters.switch_to_parallel(model))
            outputs["switch.logits_after"] = batch_logits(model, probe)
        # the update that ends step t runs at the rate the schedule gives after t - 1 steps
        lr = update_rate(step, args, start)
        losses.append(train_step(model, optimizer, params, batch, lr, args))
    outputs["step_losses"] = np.array(losses)
    trained = model.to_arrays(adapter_only=True)
    return {**outputs, **{f"trained.{name}": array for name, array in trained.items()}}


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.random_seed)
    start = training_start(args.trainer_checkpoint)
    model = load_model(args, start)
    examples = batching.make_examples(start.rows(batching.load_encoded(args.data), args.rows), args.seq_len)
    config = batching.BatchConfig(args.batch_size, args.seq_len, args.pad_multiple)
    probe = next(batching.eval_batches(examples, config))
    outputs = probe_batch(model, probe, args.label_smooth)
    if args.steps:
        outputs.update(train(model, training_batches(examples, config, args.random_seed, start), probe, args, start))
    save_tensors(args.output, outputs, {"framework": FRAMEWORK, "args": vars(args),
                                        "adapter_mode": adapters.adapter_mode(model)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
