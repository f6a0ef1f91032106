"""python -m bench (make bench): the machine's float32 matrix-product limit, training throughput (and its share
of that limit, and where a step's time goes), peak memory, decoding speed and scoring time of our implementations
against microsoft/LoRA's configuration, Hugging Face and (--baseline) an earlier commit; writes log/bench.json and
a figure.

Each implementation runs in its own process (environments/run torch|jittor python -m bench.<worker>), once
per repeat, and writes its measurement as a JSON file; the implementations take turns repeat by repeat, so
that load from other processes affects them alike. Every figure is the median of the repeats. Without a GPU
the defaults are small (gpt2.tiny, fp32); with one (torch.cuda.is_available()) they are GPT-2 medium in bf16.
An implementation that fails is recorded with value null and the reason, and the exit status is 1.
"""
import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from bench import evaluation, report, torch_device, workload
from bench.gemm import GemmSpec
from bench.workload import DecodeSpec, Measurement, TrainSpec, read_json, write_json
from common_data.model.gpt2_config import MODEL_CARDS, config_for_card
from common_data.util.paths import REPO_ROOT

# implementation -> (environment, worker module)
WORKERS = {
    "ours-torch": ("torch", "bench.torch_worker"),
    "padded512": ("torch", "bench.torch_worker"),
    "hf-peft": ("torch", "bench.hf_worker"),
    "hf-generate": ("torch", "bench.hf_worker"),
    "ours-jittor": ("jittor", "bench.jittor_worker"),
    "torch": ("torch", "bench.torch_worker"),
    "torch-onednn": ("torch", "bench.torch_worker"),
    "numpy-openblas": ("torch", "bench.torch_worker"),
    "jittor-onednn": ("jittor", "bench.jittor_worker"),
}
# <impl>-full: the implementation's training with full fine-tuning (lora_dim 0)
FULL = "-full"
WORKERS.update({impl + FULL: WORKERS[impl] for impl in ("ours-torch", "ours-jittor")})
TASK_IMPLS = {
    "gemm": ("torch", "torch-onednn", "numpy-openblas", "jittor-onednn"),
    "train": ("ours-torch", "ours-jittor", "ours-torch-full", "ours-jittor-full", "padded512", "hf-peft"),
    "decode": ("ours-torch", "ours-jittor", "hf-generate"),
    "eval": ("ours-torch",),
}
# implementations that --baseline runs from an earlier checkout as well, named <impl>@<its commit>
BASELINE_IMPLS = ("ours-torch", "ours-jittor", "ours-torch-full", "ours-jittor-full")
ENCODED_E2E = REPO_ROOT / "common_data/e2e/encoded"
GEMM_ROWS = 192  # the LM head's rows in the gemm task when no training task gives them (its loss rows per step)


class WorkerFailed(RuntimeError):
    pass


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def comma_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--tasks", type=comma_list, default=",".join(TASK_IMPLS),
                        help=f"comma-separated tasks from {', '.join(TASK_IMPLS)}")
    parser.add_argument("--impls", type=comma_list, default=",".join(WORKERS),
                        help=f"comma-separated implementations from {', '.join(WORKERS)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each implementation (the median counts)")
    parser.add_argument("--out", type=Path, default=Path("log/bench.json"), help="records (JSON)")
    parser.add_argument("--figure", type=Path, default=Path("figure/bench.png"), help="bar charts of the records")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of every worker (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS; none: the "
                             "frameworks' own choice). On a busy machine 1 avoids threads waiting for each other's "
                             "time slices. The gemm task runs on 1 thread and on all cores either way")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of an earlier commit (git worktree add DIR COMMIT) whose training workers run "
                             f"in the same repeats as ours ({', '.join(BASELINE_IMPLS)}, named <impl>@<commit>), "
                             "in this checkout's environments")
    model = parser.add_argument_group("model and training")
    model.add_argument("--model_card", default=None, choices=sorted(MODEL_CARDS),
                       help="model size (random weights); none: gpt2.md with a GPU, gpt2.tiny without")
    model.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                       help="bf16 autocast where the implementation supports it; none: with a GPU")
    model.add_argument("--batch_size", type=int, default=8, help="training batch size")
    model.add_argument("--seq_len", type=int, default=512, help="sequence length (padded512 pads every batch to it)")
    model.add_argument("--warmup_steps", type=int, default=3, help="untimed training steps first")
    model.add_argument("--steps", type=int, default=10, help="timed training steps")
    model.add_argument("--seed", type=int, default=10, help="seed of the weights and of the batch order")
    model.add_argument("--train_data", type=Path, default=ENCODED_E2E / "train.jsonl",
                       help="encoded E2E training set (make data writes it)")
    model.add_argument("--valid_data", type=Path, default=ENCODED_E2E / "valid.jsonl",
                       help="encoded E2E validation set (our trainer loads it; not timed)")
    decode = parser.add_argument_group("decoding (random weights that decode like a trained model's)")
    decode.add_argument("--contexts", type=int, default=48, help="distinct E2E test contexts to decode")
    decode.add_argument("--decode_batch_size", type=int, default=16, help="contexts per batch (all implementations)")
    decode.add_argument("--beam", type=int, default=10, help="beam size")
    decode.add_argument("--eval_len", type=int, default=64, help="most tokens generated per context")
    decode.add_argument("--length_penalty", type=float, default=0.8, help="length penalty")
    decode.add_argument("--no_repeat_ngram_size", type=int, default=4, help="n-gram size that may not repeat")
    decode.add_argument("--test_data", type=Path, default=ENCODED_E2E / "test.jsonl",
                        help="encoded E2E test set (make data writes it)")
    return parser


def check_args(parser, args):
    for name in ("repeats", "batch_size", "seq_len", "steps", "contexts", "decode_batch_size", "beam", "eval_len",
                 "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.warmup_steps < 0:
        parser.error(f"--warmup_steps must not be negative, got {args.warmup_steps}")
    if args.baseline and not (args.baseline / "bench" / "torch_worker.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this project (no bench/torch_worker.py)")
    unknown = sorted(set(args.tasks) - set(TASK_IMPLS)) + sorted(set(args.impls) - set(WORKERS))
    if unknown:
        parser.error(f"unknown tasks or implementations: {', '.join(unknown)}")
    needed = [args.train_data, args.valid_data] * ("train" in args.tasks) + [args.test_data] * ("decode" in args.tasks)
    for path in needed:
        if not path.is_file():
            parser.error(f"{path} does not exist: run `make data` (environments/run torch nlg-data prepare)")


def thread_variables(threads):
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def run_worker(task, impl, spec_path, out_path, threads, checkout=REPO_ROOT):
    """The measurement that the worker of `impl` writes to out_path; the worker's code is that of `checkout` (the
    environments are this checkout's). The spec of an <impl>-full has lora_dim 0."""
    environment, module = WORKERS[impl]
    command = [str(REPO_ROOT / "environments/run"), environment, "python", "-m", module, task,
               "--impl", impl.removesuffix(FULL),
               "--spec", str(spec_path), "--out", str(out_path)]
    variables = {**os.environ, **(thread_variables(threads) if threads else {})}
    done = subprocess.run(command, cwd=checkout, env=variables, capture_output=True, text=True)
    if done.returncode:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise WorkerFailed(lines[-1] if lines else f"exit status {done.returncode}")
    return read_json(out_path)


def baseline_commit(checkout):
    """The short commit of a checkout."""
    return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


def measure_scoring(scoring_input):
    seconds, _ = evaluation.time_scoring(*scoring_input)
    references, _ = scoring_input
    return dataclasses.asdict(Measurement(
        "eval", "ours-torch", "", seconds, None, "", {"inputs": len(references)}, [],
        {"scorer": "nlg_eval.score_e2e (framework-neutral, run in the torch environment)"}))


def plan_runs(args, folder):
    """({(task, impl): function of the repeat number -> measurement dict}, {task: config for the records})."""
    impls = [impl for impl in WORKERS if impl in args.impls]
    specs = {}
    if "train" in args.tasks:
        specs["train"] = TrainSpec(str(args.train_data), str(args.valid_data), args.model_card, args.batch_size,
                                   args.seq_len, warmup_steps=args.warmup_steps, steps=args.steps, seed=args.seed,
                                   bf16=args.bf16)
    if "decode" in args.tasks:
        specs["decode"] = DecodeSpec(str(args.test_data), args.model_card, args.contexts, args.decode_batch_size,
                                     args.beam, args.eval_len, args.seq_len, args.length_penalty,
                                     args.no_repeat_ngram_size, args.seed, args.bf16)
    if "gemm" in args.tasks:
        config = config_for_card(args.model_card)
        examples = workload.load_train_examples(specs["train"]) if "train" in specs else None
        rows = (workload.timed_token_counts(specs["train"], examples)["completion_tokens"] // args.steps
                if examples else GEMM_ROWS)
        specs["gemm"] = GemmSpec(rows, config.n_embd, config.vocab_size)
    runners, configs = {}, {}
    if "train" in specs:
        full_finetuning = dataclasses.replace(specs["train"], lora_dim=0)
        write_json(folder / "train_full_spec.json", dataclasses.asdict(full_finetuning))
    for task, spec in specs.items():
        spec_path = folder / f"{task}_spec.json"
        write_json(spec_path, dataclasses.asdict(spec))
        configs[task] = {**dataclasses.asdict(spec), "repeats": args.repeats, "threads": args.threads or "default"}
        for impl in impls:
            if impl not in TASK_IMPLS[task]:
                continue
            if task == "gemm":
                for threads in sorted({1, os.cpu_count()}):
                    runners[task, f"{impl} x{threads}"] = (
                        lambda repeat, impl=impl, spec_path=spec_path, threads=threads: run_worker(
                            "gemm", impl, spec_path, folder / f"gemm.{impl}.{threads}.{repeat}.json", threads))
                continue
            impl_spec = folder / "train_full_spec.json" if impl.endswith(FULL) else spec_path
            runners[task, impl] = lambda repeat, task=task, impl=impl, impl_spec=impl_spec: run_worker(
                task, impl, impl_spec, folder / f"{task}.{impl}.{repeat}.json", args.threads)
            if args.baseline and impl in BASELINE_IMPLS:
                runners[task, f"{impl}@{baseline_commit(args.baseline)}"] = (
                    lambda repeat, task=task, impl=impl, impl_spec=impl_spec: run_worker(
                        task, impl, impl_spec, folder / f"{task}.{impl}.baseline.{repeat}.json", args.threads,
                        args.baseline))
    if "eval" in args.tasks and "ours-torch" in impls:
        scoring_input = evaluation.e2e_test_groups()
        configs["eval"] = {"inputs": len(scoring_input[0]), "references": sum(map(len, scoring_input[0])),
                           "repeats": args.repeats}
        runners["eval", "ours-torch"] = lambda repeat: measure_scoring(scoring_input)
    return runners, configs


def measure(runners, repeats):
    """Run every runner `repeats` times, taking turns: ({(task, impl): [measurement]}, {(task, impl): reason}).

    A runner that fails is not run again; its reason goes into the records.
    """
    measurements, missing = defaultdict(list), {}
    keys = list(runners)
    with tqdm(total=len(keys) * repeats, desc="bench", unit="run", dynamic_ncols=True) as bar:
        for repeat in range(repeats):
            # rotate the order, so that no implementation always follows the same one
            for key in keys[repeat % len(keys):] + keys[:repeat % len(keys)]:
                bar.set_postfix_str(f"{key[0]} {key[1]}")
                if key not in missing:
                    try:
                        measurements[key].append(runners[key](repeat))
                    except WorkerFailed as error:
                        missing[key] = str(error)
                        tqdm.write(f"bench: {key[0]} {key[1]} did not run: {error}", file=sys.stderr)
                bar.update()
    return {key: runs for key, runs in measurements.items() if key not in missing}, missing


def summary(records):
    table = pd.DataFrame(records)[["task", "metric", "impl", "value", "spread", "ratio_to_ours_torch"]]
    return table.to_string(index=False, float_format=lambda value: f"{value:.4g}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    device = torch_device.pick_device()
    if args.model_card is None:
        args.model_card = "gpt2.md" if device.type == "cuda" else "gpt2.tiny"
    if args.bf16 is None:
        args.bf16 = device.type == "cuda"
    check_args(parser, args)
    with tempfile.TemporaryDirectory(prefix="bench.") as folder:
        runners, configs = plan_runs(args, Path(folder))
        measurements, missing = measure(runners, args.repeats)
    records = report.add_limit_shares(report.build_records(measurements, missing, torch_device.describe(device),
                                                           configs), args.threads or os.cpu_count())
    write_json(args.out, records)
    report.plot(records, args.figure, f"{torch_device.describe(device)}, threads: {args.threads or 'default'}; "
                                      f"{args.model_card}, batch {args.batch_size}, {'bf16' if args.bf16 else 'fp32'}; "
                                      f"median of {args.repeats}")
    print(summary(records))
    for warning in report.unstable_ratios(records):
        print(f"bench: WARNING {warning}", file=sys.stderr)
    print(f"wrote {args.out} and {args.figure}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
