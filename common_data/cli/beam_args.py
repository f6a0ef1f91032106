"""The command line of gpt2_beam.py, shared by the PyTorch and the Jittor decoder.

The flags of microsoft/LoRA's examples/NLG/src/gpt2_beam.py keep their names, types and defaults (its
documented command lines run unchanged); ours follow in their own groups. As there, --eos_token_id may be
given several times and <|endoftext|> (50256) always ends a hypothesis: microsoft/LoRA appends the given
ids to a default list [50256]. Without the flag the EOS ids are 50256 and 628 ("\\n\\n"), the recipe's.
"""
import argparse
import os

from common_data.decoding.beam import SEMANTICS, BeamSettings
from common_data.cli.command import add_debug_argument
from common_data.cli.config_file import add_config_argument, parse_args_with_config
from common_data.cli.ft_args import comma_list
from common_data.data.encoding import END_OF_TEXT
from common_data.model.gpt2_config import ADAPTER_TARGETS, ADAPTERS, JELLY_MODES, MODEL_CARDS

DEFAULT_EOS = 628


def build_parser(description="Beam search with GPT-2 (+ merged LoRA / JELLY adapters): microsoft/LoRA's "
                             "gpt2_beam.py flags."):
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Writes WORK_DIR/OUTPUT_FILE: one JSON line {\"id\": row, \"predict\": token ids padded with 0 to "
               "--eval_len} per row of --data, as microsoft/LoRA's gpt2_beam.py; gpt2_decode.py turns it into text.",
    )
    add_config_argument(parser, "beam")
    add_debug_argument(parser)

    data = parser.add_argument_group("data")
    data.add_argument("--data", required=True, help="encoded rows to decode (JSON lines of token ids, e.g. "
                                                    "common_data/e2e/encoded/test.jsonl)")
    data.add_argument("--batch_size", type=int, default=10, help="contexts decoded together (each with --beam rows)")
    data.add_argument("--seq_len", type=int, default=512,
                      help="prompt + generation budget: prompts keep their last seq_len - eval_len tokens")
    data.add_argument("--eval_len", type=int, default=256, help="most tokens generated per context")

    search = parser.add_argument_group("search")
    search.add_argument("--beam", type=int, default=1, help="beam size (1 = greedy)")
    search.add_argument("--length_penalty", type=float, default=1.0,
                        help="a finished hypothesis scores sum(log p) / length ** length_penalty")
    search.add_argument("--no_repeat_ngram_size", type=int, default=4, help="never repeat an n-gram of this size "
                                                                            "(0 = off)")
    search.add_argument("--repetition_penalty", type=float, default=1.0, help="CTRL repetition penalty (1 = off)")
    search.add_argument("--min_length", type=int, default=0, help="no EOS before this many generated tokens")
    search.add_argument("--eos_token_id", action="append", type=int, default=None,
                        help=f"token id that ends a hypothesis; repeat the flag for several ({END_OF_TEXT} always "
                             f"ends one; default {END_OF_TEXT} and {DEFAULT_EOS})")
    search.add_argument("--beam_semantics", default="lora", choices=SEMANTICS,
                        help="lora: microsoft/LoRA's gpt2_beam.py; hf: transformers' generate with "
                             "early_stopping='never' (see common_data/decoding/beam.py for the differences)")

    model = parser.add_argument_group("model")
    model.add_argument("--model_card", default="gpt2.sm", choices=sorted(MODEL_CARDS), help="model size")
    model.add_argument("--init_checkpoint", default=None,
                       help="base weights (safetensors, see model_process.py import-hf); may also hold adapter "
                            "tensors; without it the base is random (--random_seed)")
    model.add_argument("--adapter_checkpoint", default=None,
                       help="trained weights written by gpt2_ft.py (model.N.safetensors + model.N.json): adapters, "
                            "merged into the base before decoding, or all tensors after full fine-tuning")
    model.add_argument("--lora_dim", type=int, default=0,
                       help="rank of adapter tensors in --init_checkpoint (an --adapter_checkpoint says its own)")
    model.add_argument("--lora_alpha", type=int, default=128, help="adapter alpha (scale = alpha / r), as --lora_dim")
    model.add_argument("--adapter", default=None, choices=ADAPTERS,
                       help="adapter kind of adapter tensors in --init_checkpoint (default lora); an "
                            "--adapter_checkpoint says its own, which --adapter, if given, must match")
    model.add_argument("--use_rslora", action="store_true", help="rsLoRA scale alpha / sqrt(r), as --lora_dim")
    model.add_argument("--lora_targets", type=comma_list, default=("q", "v"),
                       help=f"adapted layers, as --lora_dim; comma-separated from {', '.join(ADAPTER_TARGETS)}")
    model.add_argument("--jelly_mode", default="parallel", choices=JELLY_MODES,
                       help="JELLY placement of adapter tensors in --init_checkpoint, as --lora_dim")

    run = parser.add_argument_group("run")
    run.add_argument("--work_dir", type=str, default=os.getenv("PT_OUTPUT_DIR", "gpt2_model"),
                     help="folder of the output file")
    run.add_argument("--output_file", type=str, default="beam_prediction.jsonl", help="output file name in --work_dir")
    run.add_argument("--random_seed", type=int, default=10, help="seed of the random base without --init_checkpoint")
    run.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu, cuda or cuda:N")
    run.add_argument("--no_progress", action="store_true", help="no progress bar")
    run.add_argument("--platform", default="local", help="accepted for microsoft/LoRA command lines; decoding runs "
                                                         "in one process")
    run.add_argument("--local_rank", "--local-rank", type=int, default=0,
                     help="accepted for torch.distributed.launch command lines")
    return parser


def eos_token_ids(given):
    """The EOS ids: 50256 plus the given ones (the recipe's 628 when none), without repeats, in order."""
    return tuple(dict.fromkeys([END_OF_TEXT, *(given or [DEFAULT_EOS])]))


def check_args(parser, args):
    """Reject values that cannot run, naming the flag."""
    for name in ("batch_size", "seq_len", "eval_len", "beam"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.seq_len <= args.eval_len:
        parser.error(f"--seq_len {args.seq_len} must exceed --eval_len {args.eval_len}: the prompt keeps "
                     "seq_len - eval_len tokens")
    for name in ("min_length", "no_repeat_ngram_size", "lora_dim"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must not be negative, got {getattr(args, name)}")
    if args.repetition_penalty <= 0:
        parser.error(f"--repetition_penalty must be positive, got {args.repetition_penalty}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        parser.error("gpt2_beam.py decodes in one process: start it without torchrun / several ranks "
                     "(--batch_size decodes many contexts at once)")


def settings_from_args(args):
    return BeamSettings(beam=args.beam, eval_len=args.eval_len, min_length=args.min_length,
                        length_penalty=args.length_penalty, no_repeat_ngram_size=args.no_repeat_ngram_size,
                        repetition_penalty=args.repetition_penalty, eos_token_ids=eos_token_ids(args.eos_token_id),
                        semantics=args.beam_semantics)


def parse_args(argv=None):
    parser = build_parser()
    args = parse_args_with_config(parser, argv, "beam")
    check_args(parser, args)
    return args
