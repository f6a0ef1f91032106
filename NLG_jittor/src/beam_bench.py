"""Sentences per second of the Jittor batched beam search, measured as NLG_pytorch/src/beam_bench.py measures ours.

    python -m NLG_jittor.src.beam_bench --model_card gpt2.tiny --contexts 50 --beam 10 --batch_size 16

Same synthetic weights (common_data/model/synthetic_model.py) and the same first distinct E2E test contexts as the
PyTorch bench; transformers has no Jittor side, so only our search is timed. The first pass over the contexts
compiles Jittor's operators: it is timed on its own ("compile_s") and the measured pass follows it.
"""
import argparse
import json
import time

import pandas as pd

from common_data.decoding.beam import BeamSettings, unique_queries
from common_data.model.gpt2_config import MODEL_CARDS, config_for_card
from common_data.util.jsonl import read_jsonl
from common_data.util.paths import REPO_ROOT
from common_data.model.synthetic_model import peaked_arrays
from NLG_jittor.src.beam_search import generate
from NLG_jittor.src.gpt2_beam import decoding_model
from NLG_jittor.src.run_info import pick_device

DEFAULT_DATA = REPO_ROOT / "common_data/e2e/encoded/test.jsonl"


def first_contexts(path, count):
    """The first `count` distinct contexts of an encoded file."""
    queries, _ = unique_queries([row["context"] for row in read_jsonl(path, required_keys=("context",))])
    return queries[:count]


def measure(card="gpt2.tiny", contexts=50, beam=10, batch_size=16, eval_len=64, length_penalty=0.8,
            no_repeat_ngram_size=4, semantics="lora", data=DEFAULT_DATA, seed=0, device="cpu"):
    """Seconds and sentences per second of the Jittor search; a one-row pandas DataFrame."""
    config = config_for_card(card)
    settings = BeamSettings(beam=beam, eval_len=eval_len, length_penalty=length_penalty,
                            no_repeat_ngram_size=no_repeat_ngram_size, semantics=semantics)
    queries = first_contexts(data, contexts)
    device = pick_device(device)
    ours = decoding_model(config, peaked_arrays(config, seed), device)
    _, compile_wall, _ = timed(generate, ours, queries, settings, batch_size, device, False)
    found, ours_wall, ours_cpu = timed(generate, ours, queries, settings, batch_size, device, False)
    return pd.DataFrame([{
        "card": card, "contexts": len(queries), "beam": beam, "batch_size": batch_size, "eval_len": eval_len,
        "semantics": semantics, "device": device, "compile_s": compile_wall - ours_wall,
        "ours_s": ours_wall, "ours_sent_per_s": len(queries) / ours_wall, "ours_cpu_s": ours_cpu,
        "mean_tokens": sum(map(len, found)) / len(found),
    }])


def timed(function, *args):
    """(result, wall-clock seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_card", default="gpt2.tiny", choices=sorted(MODEL_CARDS))
    parser.add_argument("--contexts", type=int, default=50, help="distinct contexts to decode")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=16, help="contexts per batch")
    parser.add_argument("--eval_len", type=int, default=64)
    parser.add_argument("--semantics", default="lora", choices=("lora", "hf"), help="beam semantics")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="encoded JSONL with the contexts")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--json", action="store_true", help="print the row as JSON instead of a table")
    args = parser.parse_args(argv)
    table = measure(args.model_card, args.contexts, args.beam, args.batch_size, args.eval_len,
                    semantics=args.semantics, data=args.data, device=args.device)
    print(json.dumps(table.iloc[0].to_dict()) if args.json else table.T.to_string(header=False))


if __name__ == "__main__":
    main()
