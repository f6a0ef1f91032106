"""Beam search decoding: microsoft/LoRA's examples/NLG/src/gpt2_beam.py, same flags, same output file (NLG_pytorch
and NLG_jittor alike).

    python NLG_pytorch/src/gpt2_beam.py --data common_data/e2e/encoded/test.jsonl --batch_size 16 \\
        --seq_len 512 --eval_len 64 --model_card gpt2.md --init_checkpoint gpt2-medium.safetensors \\
        --adapter_checkpoint runs/e2e/model.26290.safetensors --beam 10 --length_penalty 0.8 \\
        --no_repeat_ngram_size 4 --repetition_penalty 1.0 --eos_token_id 628 \\
        --work_dir runs/e2e --output_file predict.26290.b10p08r4.jsonl

The adapters are merged into the weights first; identical contexts are decoded once; --batch_size contexts,
longest first, share a batch, left-padded (see beam_search.py beside this file and common_data/decoding/beam.py).
"""
import sys
import time

from common_data.training import runlog
from common_data.decoding.beam import query_tokens, unique_queries, write_predictions
from common_data.training.batching import load_encoded
from common_data.decoding.beam_weights import decoding_arrays
from common_data.cli.beam_args import parse_args, settings_from_args
from common_data.cli.command import command, output_folder
from common_data.util.errors import DataFormatError
from common_data.model.gpt2_config import AdapterConfig, config_for_card
from NLG_pytorch.src import ops, run_info
from NLG_pytorch.src.beam_search import generate
from NLG_pytorch.src.model import GPT2LMModel


def decoding_model(config, arrays, device):
    """The plain GPT-2 (no adapter layers) holding merged weights, in eval mode."""
    return ops.to_device(GPT2LMModel(config, AdapterConfig(), base_arrays=arrays), device).eval()


def run_beam(args):
    """Decode every row of args.data into args.work_dir/args.output_file; the run record goes to
    args.work_dir/run.beam.json. Returns (output path, rows, distinct contexts, seconds of search)."""
    config = config_for_card(args.model_card)
    if args.seq_len > config.n_positions:
        raise ValueError(f"--seq_len {args.seq_len} exceeds the {config.n_positions} positions of {args.model_card}")
    work_dir = output_folder(args.work_dir)
    device = run_info.pick_device(args.device)
    record = runlog.RunRecord(work_dir / "run.beam.json", vars(args), run_info.framework_versions(),
                              run_info.device_name(device), seed=None)
    with record.phase("setup"):
        contexts = [context for context, _ in load_encoded(args.data)]
        for line, context in enumerate(contexts, start=1):
            if not all(0 <= token < config.vocab_size for token in context):
                raise DataFormatError(args.data, f"line {line}", f"context token ids outside [0, {config.vocab_size})")
        queries, owner = unique_queries([query_tokens(context, args.seq_len, args.eval_len) for context in contexts])
        model = decoding_model(config, decoding_arrays(config, args), device)
        settings = settings_from_args(args)
    with record.phase("decode"):
        start = time.perf_counter()
        found = generate(model, queries, settings, args.batch_size, device, progress=not args.no_progress)
        seconds = time.perf_counter() - start
    output = work_dir / args.output_file
    with record.phase("write"):
        write_predictions(output, {row: found[owner[row]] for row in range(len(contexts))}, args.eval_len)
    record.write("finished", run_info.peak_memory(device), rows=len(contexts),
                 distinct_contexts=len(queries), output=str(output))
    return output, len(contexts), len(queries), seconds


@command("gpt2_beam.py")
def main(argv=None):
    output, rows, distinct, seconds = run_beam(parse_args(argv))
    print(f"decoded {rows} rows ({distinct} distinct contexts) in {seconds:.1f}s "
          f"({distinct / seconds:.2f} contexts/s); wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
