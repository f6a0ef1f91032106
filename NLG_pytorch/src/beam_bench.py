"""Sentences per second of our batched beam search against transformers' generate, on the same weights.

    python -m NLG_pytorch.src.beam_bench --model_card gpt2.tiny --contexts 50 --beam 10 --batch_size 16

The weights are random but decode like a trained model's (common_data/model/synthetic_model.py): peaked
next-token distributions and hypotheses that end at varied lengths. The contexts are the first distinct
E2E test contexts of the encoded data. transformers runs one context at a time (batch 1), as a user of
generate would, with its default early stopping unless told otherwise; both use the same threads.
"""
import argparse
import json
import time

import pandas as pd
import torch
import transformers

from common_data.decoding.beam import BeamSettings, unique_queries
from common_data.model.gpt2_config import MODEL_CARDS, config_for_card
from common_data.util.jsonl import read_jsonl
from common_data.util.paths import REPO_ROOT
from common_data.model.synthetic_model import peaked_arrays
from NLG_pytorch.src.beam_search import generate
from NLG_pytorch.src.gpt2_beam import decoding_model

DEFAULT_DATA = REPO_ROOT / "common_data/e2e/encoded/test.jsonl"


def hf_model(config, arrays):
    """transformers' GPT2LMHeadModel holding our arrays (checkpoint names), in eval mode."""
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config.to_hf()))
    state = {f"transformer.{name}": torch.from_numpy(array) for name, array in arrays.items()}
    state["lm_head.weight"] = state["transformer.wte.weight"]
    model.load_state_dict(state, strict=True)
    return model.eval()


def cut_at_eos(tokens, eos_token_ids):
    """Tokens up to and including the first EOS."""
    for position, token in enumerate(tokens):
        if token in eos_token_ids:
            return tokens[:position + 1]
    return tokens


@torch.no_grad()
def hf_search(model, prompts, settings, early_stopping="never"):
    """transformers' generate on prompts (token lists): each best hypothesis, EOS included.

    Prompts of different lengths are left-padded with an attention mask, as generate expects; its n-gram
    blocking and repetition penalty read the padding as tokens, so exact comparisons use one length per call.
    early_stopping "never" gives the exact search our BeamSettings(semantics="hf") reproduces; False
    (transformers' default) stops on a heuristic that may miss the best hypothesis.
    """
    pad, width = settings.eos_token_ids[0], max(map(len, prompts))
    input_ids = torch.tensor([[pad] * (width - len(prompt)) + list(prompt) for prompt in prompts])
    attention_mask = torch.tensor([[0] * (width - len(prompt)) + [1] * len(prompt) for prompt in prompts])
    options = dict(num_beams=settings.beam, length_penalty=settings.length_penalty,
                   early_stopping=early_stopping) if settings.beam > 1 else {}
    output = model.generate(input_ids, attention_mask=attention_mask, do_sample=False,
                            max_new_tokens=settings.eval_len, min_new_tokens=settings.min_length,
                            no_repeat_ngram_size=settings.no_repeat_ngram_size,
                            repetition_penalty=settings.repetition_penalty,
                            eos_token_id=list(settings.eos_token_ids), pad_token_id=pad, **options)
    return [cut_at_eos(row[width:].tolist(), settings.eos_token_ids) for row in output]


def first_contexts(path, count):
    """The first `count` distinct contexts of an encoded file."""
    queries, _ = unique_queries([row["context"] for row in read_jsonl(path, required_keys=("context",))])
    return queries[:count]


def measure(card="gpt2.tiny", contexts=50, beam=10, batch_size=16, eval_len=64, length_penalty=0.8,
            no_repeat_ngram_size=4, semantics="lora", hf_early_stopping=False, data=DEFAULT_DATA, seed=0):
    """Seconds and sentences per second of both implementations; a one-row pandas DataFrame."""
    config = config_for_card(card)
    arrays = peaked_arrays(config, seed)
    settings = BeamSettings(beam=beam, eval_len=eval_len, length_penalty=length_penalty,
                            no_repeat_ngram_size=no_repeat_ngram_size, semantics=semantics)
    queries = first_contexts(data, contexts)
    ours, reference = decoding_model(config, arrays, torch.device("cpu")), hf_model(config, arrays)
    found, ours_wall, ours_cpu = timed(generate, ours, queries, settings, batch_size, torch.device("cpu"), False)
    expected, hf_wall, hf_cpu = timed(lambda: [hf_search(reference, [query], settings, hf_early_stopping)[0]
                                               for query in queries])
    return pd.DataFrame([{
        "card": card, "contexts": len(queries), "beam": beam, "batch_size": batch_size, "eval_len": eval_len,
        "semantics": semantics, "hf_early_stopping": hf_early_stopping, "threads": torch.get_num_threads(),
        "ours_s": ours_wall, "hf_s": hf_wall, "ours_sent_per_s": len(queries) / ours_wall,
        "hf_sent_per_s": len(queries) / hf_wall, "speedup": hf_wall / ours_wall,
        "ours_cpu_s": ours_cpu, "hf_cpu_s": hf_cpu, "cpu_speedup": hf_cpu / ours_cpu,
        "same_output": sum(a == b for a, b in zip(found, expected)),
        "mean_tokens": sum(map(len, found)) / len(found),
    }])


def timed(function, *args):
    """(result, wall-clock seconds, CPU seconds of this process): on a shared machine the CPU time of one
    thread is the steadier measure."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_card", default="gpt2.tiny", choices=sorted(MODEL_CARDS))
    parser.add_argument("--contexts", type=int, default=50, help="distinct contexts to decode")
    parser.add_argument("--beam", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=16, help="our contexts per batch (transformers: 1)")
    parser.add_argument("--eval_len", type=int, default=64)
    parser.add_argument("--semantics", default="lora", choices=("lora", "hf"), help="our beam semantics")
    parser.add_argument("--hf_early_stopping", default="false", choices=("false", "never"),
                        help="transformers' early_stopping: its default heuristic, or the exact search")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="encoded JSONL with the contexts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print the row as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    table = measure(args.model_card, args.contexts, args.beam, args.batch_size, args.eval_len,
                    semantics=args.semantics, data=args.data,
                    hf_early_stopping=False if args.hf_early_stopping == "false" else "never")
    print(json.dumps(table.iloc[0].to_dict()) if args.json else table.T.to_string(header=False))


if __name__ == "__main__":
    main()
