"""The command line of gpt2_ft.py, shared by the PyTorch and the Jittor trainer.

The flags of microsoft/LoRA's examples/NLG/src/gpt2_ft.py (with the helpers of its optimizer.py and
gpu.py) keep their names, types and defaults, so that its documented command lines run unchanged;
note that those defaults are not the recipe (the recipe passes --lr 0.0002 --correct_bias
--adam_beta2 0.999 --warmup_step 500 ...; recipes/ holds it as a file for --config). Our own flags follow in
their own groups.
"""
import argparse
import os

from common_data.training.batching import BatchConfig
from common_data.cli.command import add_debug_argument
from common_data.cli.config_file import add_config_argument, parse_args_with_config
from common_data.model.gpt2_config import ADAPTER_TARGETS, ADAPTERS, JELLY_MODES, MODEL_CARDS
from common_data.training.schedule import SCHEDULERS

DROPOUT_RNGS = ("framework", "shared")


def comma_list(text):
    """'q,v' -> ('q', 'v')."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def add_optimizer_arguments(group):
    """microsoft/LoRA's AdamW, schedule and clipping flags (gpt2_ft.py's, and the probes' of NLG_*/src/probe.py)."""
    group.add_argument("--lr", type=float, default=0.00001, help="learning rate")
    group.add_argument("--weight_decay", type=float, default=0.01, help="weight decay rate")
    group.add_argument("--correct_bias", action="store_true", help="correct the Adam bias terms")
    group.add_argument("--adam_epislon", type=float, default=1e-6, help="Adam epsilon (microsoft/LoRA's spelling)")
    group.add_argument("--adam_beta1", type=float, default=0.9, help="Adam beta1")
    group.add_argument("--adam_beta2", type=float, default=0.98, help="Adam beta2")
    group.add_argument("--scheduler", default="linear", choices=SCHEDULERS, help="learning-rate schedule")
    group.add_argument("--warmup_step", type=int, default=0, help="linear warm-up steps")
    group.add_argument("--clip", type=float, default=0.0, help="clip the gradient norm to this (0 = off)")
    group.add_argument("--loraplus_lr_ratio", type=float, default=None,
                       help="LoRA+: the B matrices (and vectors) train at this multiple of the learning rate, "
                            "as peft's create_loraplus_optimizer")


def build_parser():
    parser = argparse.ArgumentParser(
        description="Fine-tune GPT-2 with LoRA or JELLY adapters (microsoft/LoRA's gpt2_ft.py flags).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Steps count batches of --train_batch_size examples, as in microsoft/LoRA: the learning-rate "
               "schedule advances every batch and the optimizer updates every --grad_acc batches. "
               "Under torchrun (or mpirun for Jittor) --train_batch_size is the global batch, split across ranks, "
               "so the losses do not depend on the number of processes.",
    )
    add_config_argument(parser, "train")
    add_debug_argument(parser)

    data = parser.add_argument_group("data")
    data.add_argument("--train_data", required=True, help="encoded training set (JSON lines of token ids)")
    data.add_argument("--valid_data", required=True, help="encoded validation set (JSON lines of token ids)")
    data.add_argument("--train_batch_size", type=int, default=8, help="training batch size (global over all ranks)")
    data.add_argument("--valid_batch_size", type=int, default=4, help="validation batch size (global over all ranks)")
    data.add_argument("--seq_len", type=int, default=512, help="longest sequence; longer examples are truncated")
    data.add_argument("--pad_multiple", type=int, default=BatchConfig.pad_multiple,
                      help="pad each batch to the next multiple of this length (1 = no extra padding)")
    data.add_argument("--pad_to_seq_len", action="store_true",
                      help="pad every sequence to --seq_len and compute the padding as microsoft/LoRA does (with "
                           "--full_logits: its original configuration, for benchmarks; the loss is the same); "
                           "otherwise the model skips the padding, running the real tokens packed")
    data.add_argument("--full_logits", action="store_true",
                      help="compute logits at every position, padding included, as microsoft/LoRA does, instead of "
                           "only where the loss is taken (the loss is the same, the work is more)")

    model = parser.add_argument_group("model")
    model.add_argument("--model_card", default="gpt2.md", choices=sorted(MODEL_CARDS), help="model size")
    model.add_argument("--init_checkpoint", default=None,
                       help="pretrained base weights (safetensors in the checkpoint layout, see model_process.py); "
                            "without it the base is randomly initialised from --random_seed")
    model.add_argument("--adapter_checkpoint", default=None,
                       help="start the adapters from this checkpoint (model.N.safetensors of a run of either framework, "
                            "or model_process.py import-peft's output), whose adapter configuration replaces --adapter, "
                            "--lora_dim, --lora_alpha, --lora_targets, --use_rslora and --jelly_mode; the optimizer "
                            "starts fresh")
    model.add_argument("--lora_dim", "--init_r", type=int, default=0,
                       help="adapter rank r (0 = full fine-tuning, no adapter); AdaLoRA's initial rank, peft's init_r")
    model.add_argument("--lora_alpha", type=int, default=128, help="adapter alpha (scale = alpha / r)")
    model.add_argument("--lora_dropout", type=float, default=0.0, help="dropout probability on the adapter input")
    model.add_argument("--adapter", default="lora", choices=ADAPTERS,
                       help="adapter kind: lora, jelly, dora and pissa (as peft's use_dora and init_lora_weights='pissa'), "
                            "adalora (as peft's AdaLoraConfig, total_step = the run's last step), bitfit (the biases "
                            "train, with --lora_dim 0)")
    model.add_argument("--use_rslora", action="store_true", help="rsLoRA: scale = alpha / sqrt(r)")
    model.add_argument("--lora_targets", type=comma_list, default="q,v",
                       help=f"comma-separated layers to adapt, from {', '.join(ADAPTER_TARGETS)}")
    model.add_argument("--jelly_mode", default="seq2par", choices=JELLY_MODES,
                       help="JELLY adapter placement: parallel (= LoRA), sequential, or sequential switched to "
                            "parallel at --switch_epoch / --switch_step")
    model.add_argument("--switch_epoch", type=float, default=None,
                       help="seq2par: switch to parallel after this many epochs (fractions allowed)")
    model.add_argument("--switch_step", type=int, default=None, help="seq2par: switch to parallel after this step")

    adalora = parser.add_argument_group("AdaLoRA's rank allocator (--adapter adalora; peft's AdaLoraConfig fields)")
    adalora.add_argument("--target_r", type=int, default=8, help="average rank per adapted slice at the end")
    adalora.add_argument("--tinit", type=int, default=0, help="steps at the initial rank before the budget falls")
    adalora.add_argument("--tfinal", type=int, default=0, help="last steps at the final ranks (mask fixed)")
    adalora.add_argument("--deltaT", type=int, default=1, help="steps between two rank allocations")
    adalora.add_argument("--adalora_beta1", type=float, default=0.85,
                         help="EMA factor of the sensitivity |p * grad| (peft's beta1)")
    adalora.add_argument("--adalora_beta2", type=float, default=0.85,
                         help="EMA factor of the uncertainty of the sensitivity (peft's beta2)")
    adalora.add_argument("--orth_reg_weight", type=float, default=0.5,
                         help="weight of the orthogonal regulariser of A and B added to the training objective")

    optim = parser.add_argument_group("optimizer and schedule (microsoft/LoRA optimizer.py)")
    add_optimizer_arguments(optim)
    optim.add_argument("--max_step", type=int, default=None,
                       help="stop after this step; without it, after --max_epoch epochs")
    optim.add_argument("--max_epoch", type=int, default=None, help="stop after this many epochs")
    optim.add_argument("--grad_acc", type=int, default=1, help="gradient accumulation steps")
    optim.add_argument("--label_smooth", type=float, default=0.0, help="label smoothing")

    run = parser.add_argument_group("run")
    run.add_argument("--work_dir", type=str, default=os.getenv("PT_OUTPUT_DIR", "gpt2_model"),
                     help="folder for checkpoints, metrics.jsonl and run.json")
    run.add_argument("--random_seed", type=int, default=10, help="seed of the initial weights, data order and dropout")
    run.add_argument("--dropout_rng", default="framework", choices=DROPOUT_RNGS,
                     help="where dropout masks come from: the framework's own generator, or one counter-based "
                          "generator in numpy keyed by (seed, step, layer, tensor) that PyTorch and Jittor share, "
                          "so that both drop the same units (slower per step, see docs/training.md)")
    run.add_argument("--tensorboard", default=None, metavar="DIR",
                     help="also write the training curves (loss, learning rate, validation loss, tokens/s, peak "
                          "memory) as TensorBoard event files into DIR: tensorboard --logdir DIR")
    run.add_argument("--log_interval", type=int, default=100, help="print the training loss every this many steps")
    run.add_argument("--eval_interval", type=int, default=2000, help="evaluate on --valid_data every this many steps")
    run.add_argument("--eval_at_start", action="store_true",
                     help="also evaluate before the first step (step 0), so that the run's fall in valid loss shows")
    run.add_argument("--save_interval", type=int, default=500, help="save a checkpoint every this many steps")
    run.add_argument("--resume", action="store_true",
                     help="continue from the newest complete checkpoint in --work_dir")
    run.add_argument("--resume_from", default=None, metavar="TRAINER_CHECKPOINT",
                     help="continue from this trainer.N.safetensors (model.N.safetensors beside it), written by a run "
                          "of either framework with the same arguments; its later events go to --work_dir")
    run.add_argument("--stop_step", type=int, default=None,
                     help="stop after this step; unlike --max_step the learning-rate schedule still runs to "
                          "--max_step (the alignment verdict replays segments of a run this way)")
    precision = run.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="float16 autocast with loss scaling")
    precision.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    run.add_argument("--platform", default="local", choices=["local"],
                     help="accepted for microsoft/LoRA command lines; ranks come from torchrun's environment")
    run.add_argument("--local_rank", "--local-rank", type=int, default=0,
                     help="accepted for torch.distributed.launch; LOCAL_RANK from the environment wins")
    return parser


def check_args(parser, args):
    """Reject combinations that cannot run, naming the flag."""
    for name in ("train_batch_size", "valid_batch_size", "seq_len", "pad_multiple", "grad_acc",
                 "log_interval", "eval_interval", "save_interval"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    positions = MODEL_CARDS[args.model_card].n_positions
    if args.seq_len > positions:
        parser.error(f"--seq_len {args.seq_len} is longer than the {positions} positions of {args.model_card}")
    if args.save_interval % args.grad_acc:
        parser.error(f"--save_interval {args.save_interval} must be a multiple of --grad_acc {args.grad_acc}, "
                     "so that checkpoints fall between optimizer updates")
    if args.max_step is None and args.max_epoch is None:
        parser.error("give --max_epoch or --max_step")
    for name in ("max_step", "max_epoch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name} must be at least 1, got {value}: the run would train nothing")
    unknown = [target for target in args.lora_targets if target not in ADAPTER_TARGETS]
    if unknown or not args.lora_targets:
        parser.error(f"--lora_targets: unknown {unknown}, choose from {', '.join(ADAPTER_TARGETS)}")
    if "c_attn" in args.lora_targets and {"q", "k", "v"} & set(args.lora_targets):
        parser.error("--lora_targets: c_attn covers q, k and v; give it without them")
    if args.adapter in ("dora", "pissa", "adalora") and not args.lora_dim:
        parser.error(f"--adapter {args.adapter} needs --lora_dim > 0")
    if args.adapter == "bitfit" and args.lora_dim:
        parser.error("--adapter bitfit trains the biases: give --lora_dim 0")
    if args.adapter == "adalora" and args.use_rslora:
        parser.error("--adapter adalora scales by alpha / init_r, as peft's AdaLoRA: drop --use_rslora")
    if args.adapter == "adalora" and args.grad_acc > 1:
        parser.error("--adapter adalora allocates ranks after every update, its schedule counting steps: "
                     "give --grad_acc 1")
    if args.adapter == "adalora" and args.target_r < 1:
        parser.error(f"--target_r must be at least 1, got {args.target_r}: the allocator would mask every rank, "
                     "leaving no adapter")
    if args.adapter == "adalora" and not args.target_r < args.lora_dim:
        parser.error(f"--target_r {args.target_r} must lie in [1, --lora_dim {args.lora_dim})")
    if args.loraplus_lr_ratio is not None and args.loraplus_lr_ratio <= 0:
        parser.error(f"--loraplus_lr_ratio must be positive, got {args.loraplus_lr_ratio}")
    switching = args.switch_epoch is not None or args.switch_step is not None
    if args.switch_epoch is not None and args.switch_step is not None:
        parser.error("give --switch_epoch or --switch_step, not both")
    if switching and not (args.adapter == "jelly" and args.jelly_mode == "seq2par" and args.lora_dim > 0):
        parser.error("--switch_epoch / --switch_step need --adapter jelly --jelly_mode seq2par and --lora_dim > 0")
    if args.adapter == "jelly" and args.jelly_mode == "seq2par" and args.lora_dim > 0 and not switching:
        parser.error("--jelly_mode seq2par needs --switch_epoch or --switch_step")
    if (args.switch_epoch or 0) < 0 or (args.switch_step or 0) < 0:
        parser.error("--switch_epoch / --switch_step must not be negative")
    if args.resume and args.resume_from:
        parser.error("give --resume or --resume_from, not both")
    if args.stop_step is not None and args.stop_step < 1:
        parser.error(f"--stop_step must be at least 1, got {args.stop_step}")


def parse_args(argv=None):
    parser = build_parser()
    args = parse_args_with_config(parser, argv, "train")
    check_args(parser, args)
    return args
