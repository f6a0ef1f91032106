"""python -m bench.gpu_check OUT_DIR [--dry-run]: the prepared GPU check, every stage timed and guarded.

bench/gpu_check.sh runs it (after building the environments from carried wheels on a bare GPU machine):
1. precision   Jittor's matmul in float32 / float16 / bfloat16 against float64 (bench.jittor_precision);
2. train_fp32  ours-torch, ours-jittor, microsoft/LoRA's padded-512 configuration and transformers + peft:
               tokens/s, peak memory and the first-step loss on the same E2E batches (python -m bench);
3. train_bf16  the torch implementations again under bf16 autocast (our Jittor trainer is float32-only);
4. align       gpt2_ft.py for the same steps in torch and Jittor (on CUDA where there is a GPU) and torch on
               the CPU, float32: |loss difference| at every step against torch;
5. decode      beam search, ours in both frameworks against transformers' generate (python -m bench);
6. verdict     the LoRA paper recipe's verdict, short: both trainers with its dropout (shared masks) and label
               smoothing for verdict_steps steps, then python -m alignment verify replays two segments in Jittor
               from PyTorch's saved states: the verdict and each segment's largest |loss difference|.
A stage that fails or runs out of time is recorded with its error and the next one runs. The records (the
layout of log/bench.json, each with its "stage") go to OUT_DIR/bench_gpu.json after every stage, the figure to
OUT_DIR/bench_gpu.png, each stage's output to OUT_DIR/logs/<stage>.log. --dry-run: the same stages on the CPU
with a tiny model and 2 steps each, for the test suite.
"""
import argparse
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

from alignment.runs import read_run
from alignment.verdict import judge
from bench import report
from bench.workload import read_json, write_json
from common_data.util.jsonl import read_jsonl, write_jsonl
from common_data.util.paths import REPO_ROOT

ENCODED_E2E = REPO_ROOT / "common_data/e2e/encoded"
RUN = str(REPO_ROOT / "environments/run")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What each stage runs: the paper's shapes on the GPU, a tiny model and 2 steps in the dry run."""
    model_card: str = "gpt2.md"
    align_model_card: str = "gpt2.sm"
    batch_size: int = 8
    seq_len: int = 512
    warmup_steps: int = 3
    steps: int = 10
    align_steps: int = 50
    verdict_steps: int = 60  # three segments of a third each: 0 from the shared start, the others replayed
    contexts: int = 100
    beam: int = 10
    eval_len: int = 64
    bf16_impls: str = "ours-torch,padded512,hf-peft"
    time_scale: float = 1.0  # times STAGE_LIMITS: a CPU starts processes and compiles Jittor's kernels slowly


DRY_RUN = Sizes(model_card="gpt2.tiny", align_model_card="gpt2.tiny", batch_size=2, seq_len=64, warmup_steps=1,
                steps=2, align_steps=2, verdict_steps=6, contexts=2, beam=2, eval_len=8, time_scale=4.0,
                # bf16 matmuls crawl on a CPU without bf16 instructions: the dry run keeps the path, not the cost
                bf16_impls="ours-torch")
# seconds each stage may take at most (the whole check must end within its budget, 540 s by default)
STAGE_LIMITS = {"precision": 150, "train_fp32": 150, "train_bf16": 60, "align": 150, "decode": 120, "verdict": 120}


class StageFailed(RuntimeError):
    pass


def run_logged(command, log, limit, variables=None):
    """Run command with its output appended to log; StageFailed with the last line on failure or timeout."""
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        try:
            done = subprocess.run(command, cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, timeout=limit,
                                  env={**os.environ, **(variables or {})})
        except subprocess.TimeoutExpired:
            raise StageFailed(f"timed out after {limit:.0f} s: {' '.join(command[:6])} ...") from None
    if done.returncode:
        lines = [line for line in Path(log).read_text(encoding="utf-8").splitlines() if line.strip()]
        raise StageFailed(f"exit status {done.returncode}: {lines[-1] if lines else ''}")


def bench_records(stage, out, encoded, tasks, impls, sizes, bf16, limit):
    """python -m bench for one task and precision; its records, each marked with the stage."""
    records_path = out / "stages" / f"{stage}.json"
    command = [sys.executable, "-m", "bench", "--tasks", tasks, "--impls", impls, "--repeats", "1",
               "--model_card", sizes.model_card, "--bf16" if bf16 else "--no-bf16",
               "--batch_size", str(sizes.batch_size), "--seq_len", str(sizes.seq_len),
               "--warmup_steps", str(sizes.warmup_steps), "--steps", str(sizes.steps),
               "--contexts", str(sizes.contexts), "--decode_batch_size", str(min(16, sizes.contexts)),
               "--beam", str(sizes.beam), "--eval_len", str(sizes.eval_len),
               "--train_data", str(encoded / "train.jsonl"), "--valid_data", str(encoded / "valid.jsonl"),
               "--test_data", str(encoded / "test.jsonl"), "--out", str(records_path),
               "--figure", str(out / "stages" / f"{stage}.png")]
    try:
        run_logged(command, out / "logs" / f"{stage}.log", limit)
    except StageFailed:
        # bench exits 1 when an implementation failed; its records say which and why
        if not records_path.is_file():
            raise
    return [{**record, "stage": stage} for record in read_json(records_path)]


def precision_records(out, limit):
    results_path = out / "stages" / "precision.json"
    run_logged([RUN, "jittor", "python", "-m", "bench.jittor_precision", "--out", str(results_path)],
               out / "logs" / "precision.log", limit)
    results = read_json(results_path)
    return [{"stage": "precision", "task": "precision", "impl": "ours-jittor", "device": result["device"],
             "config": {"size": results["size"], "jittor": results["jittor"], "bound": result["bound"],
                        "correct": result["correct"], **({"error": result["error"]} if "error" in result else {})},
             "metric": f"matmul_{result['dtype']}_max_rel_error", "value": result["max_rel_error"],
             "ratio_to_ours_torch": None, "samples": []} for result in results["results"]]


ALIGN_RUNS = {  # name -> (environment, trainer, extra variables); the first is the reference, on the GPU if any
    "torch": ("torch", "NLG_pytorch/src/gpt2_ft.py", {}),
    "jittor": ("jittor", "NLG_jittor/src/gpt2_ft.py", {}),
    "torch-cpu": ("torch", "NLG_pytorch/src/gpt2_ft.py", {"CUDA_VISIBLE_DEVICES": ""}),
}
REFERENCE_RUN = "torch"


def step_losses(work_dir):
    return {event["step"]: event["loss"] for event in read_jsonl(Path(work_dir) / "metrics.jsonl")
            if event.get("event") == "train"}


def device_of(out, name):
    """The device the run's run.json names, '' when it has none."""
    record = out / "stages" / f"align_{name}" / "run.json"
    return str(read_json(record).get("device", "")) if record.is_file() else ""


def align_records(out, encoded, sizes, deadline):
    """LoRA r 4 on q, v for align_steps steps from the same seed in each run; |Δ loss| per step against torch."""
    valid = out / "stages" / "align_valid.jsonl"
    write_jsonl(valid, read_jsonl(encoded / "valid.jsonl")[:sizes.batch_size])
    losses, failures = {}, {}
    for name, (environment, trainer, variables) in ALIGN_RUNS.items():
        work_dir = out / "stages" / f"align_{name}"
        command = [RUN, environment, "python", trainer, "--train_data", str(encoded / "train.jsonl"),
                   "--valid_data", str(valid), "--model_card", sizes.align_model_card,
                   "--train_batch_size", str(sizes.batch_size), "--seq_len", str(sizes.seq_len),
                   "--lora_dim", "4", "--lora_alpha", "32", "--lr", "0.0002", "--correct_bias",
                   "--adam_beta2", "0.999", "--warmup_step", "0", "--scheduler", "constant",
                   "--max_step", str(sizes.align_steps), "--log_interval", "1", "--eval_interval", "1000000",
                   "--save_interval", "1000000", "--random_seed", "110", "--work_dir", str(work_dir)]
        try:
            run_logged(command, out / "logs" / f"align_{name}.log", max(1.0, deadline - time.monotonic()), variables)
            losses[name] = step_losses(work_dir)
        except StageFailed as failure:
            failures[name] = str(failure)
    reference = losses.get(REFERENCE_RUN)
    records = []
    for name in ALIGN_RUNS:
        if name == REFERENCE_RUN:
            continue
        record = {"stage": "align", "task": "align", "impl": name, "device": device_of(out, name),
                  "config": {"model_card": sizes.align_model_card, "steps": sizes.align_steps,
                             "batch_size": sizes.batch_size, "reference": f"{REFERENCE_RUN} on "
                             f"{device_of(out, REFERENCE_RUN)}", "precision": "fp32"},
                  "metric": "max_abs_loss_delta", "ratio_to_ours_torch": None}
        if name in losses and reference:
            deltas = [abs(losses[name][step] - reference[step]) for step in sorted(reference)]
            record.update(value=max(deltas), samples=deltas)
        else:
            record.update(value=None, samples=[], missing=failures.get(name) or failures.get(REFERENCE_RUN))
        records.append(record)
    if failures and not losses:
        raise StageFailed("; ".join(f"{name}: {reason}" for name, reason in failures.items()))
    return records


def verdict_records(out, encoded, sizes, deadline):
    """Both trainers (on the GPU where there is one) with the paper's dropout and smoothing, saving every segment;
    Jittor replays segments 2 and 3 from PyTorch's states; one record: the verdict and each segment's max |Δ|."""
    segment = sizes.verdict_steps // 3
    valid = out / "stages" / "verdict_valid.jsonl"
    write_jsonl(valid, read_jsonl(encoded / "valid.jsonl")[:sizes.batch_size])
    folders = {}
    for name in ("torch", "jittor"):
        environment, trainer, variables = ALIGN_RUNS[name]
        folders[name] = out / "stages" / f"verdict_{name}"
        command = [RUN, environment, "python", trainer, "--train_data", str(encoded / "train.jsonl"),
                   "--valid_data", str(valid), "--model_card", sizes.align_model_card,
                   "--train_batch_size", str(sizes.batch_size), "--seq_len", str(sizes.seq_len),
                   "--lora_dim", "4", "--lora_alpha", "32", "--lora_dropout", "0.1", "--dropout_rng", "shared",
                   "--label_smooth", "0.1", "--lr", "0.0002", "--correct_bias", "--adam_beta2", "0.999",
                   "--warmup_step", str(segment), "--max_step", str(sizes.verdict_steps), "--log_interval", "1",
                   "--eval_interval", "1000000", "--save_interval", str(segment), "--random_seed", "110",
                   "--work_dir", str(folders[name])]
        run_logged(command, out / "logs" / f"verdict_{name}.log", max(1.0, deadline - time.monotonic()), variables)
    run_logged([RUN, "torch", "python", "-m", "alignment", "verify", "--torch", str(folders["torch"]), "--jittor",
                str(folders["jittor"]), "--segments", f"0,{segment},{2 * segment}", "--segment_steps", str(segment)],
               out / "logs" / "verdict.log", max(1.0, deadline - time.monotonic()))
    runs = {name: read_run(folder) for name, folder in folders.items()}
    verdict = judge(runs["torch"], runs["jittor"], segment_steps=segment).verdict
    return [{"stage": "verdict", "task": "verdict", "impl": "ours-jittor",
             "device": str(runs["jittor"].records.get("run", {}).get("device", "")),
             "config": {"model_card": sizes.align_model_card, "steps": sizes.verdict_steps, "segment_steps": segment,
                        "verdict": verdict.kind, "reason": verdict.reason},
             "metric": "max_abs_loss_delta_in_segments", "value": max(s.max_abs for s in verdict.segments),
             "samples": [s.max_abs for s in verdict.segments], "ratio_to_ours_torch": None}]


def stage_record(name, seconds, status, error=None):
    return {"stage": name, "task": "stage", "impl": name, "device": "", "config": {}, "metric": "seconds",
            "value": seconds, "ratio_to_ours_torch": None, "samples": [], "status": status,
            **({"missing": error} if error else {})}


def absent_values(records):
    """'impl: reason' for each implementation of a stage that has no value (e.g. its worker failed)."""
    return sorted({f"{record['impl']}: {record.get('missing', 'no value')}" for record in records
                   if record["value"] is None})


def stages(out, encoded, sizes):
    """(name, function of the stage's deadline -> records), in the order they run."""
    def measured(stage, task, impls, bf16=False):
        return lambda deadline: bench_records(stage, out, encoded, task, impls, sizes, bf16,
                                              deadline - time.monotonic())

    return [
        ("precision", lambda deadline: precision_records(out, deadline - time.monotonic())),
        ("train_fp32", measured("train_fp32", "train", "ours-torch,ours-jittor,padded512,hf-peft")),
        ("train_bf16", measured("train_bf16", "train", sizes.bf16_impls, bf16=True)),
        ("align", lambda deadline: align_records(out, encoded, sizes, deadline)),
        ("decode", measured("decode", "decode", "ours-torch,ours-jittor,hf-generate")),
        ("verdict", lambda deadline: verdict_records(out, encoded, sizes, deadline)),
    ]


def run_check(out, encoded, sizes, budget_s, only=None):
    """Every stage in turn, each within its limit and the whole budget; returns the records."""
    for folder in ("stages", "logs"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    budget_end = time.monotonic() + budget_s
    records = []
    for name, function in stages(out, encoded, sizes):
        if only and name not in only:
            continue
        start = time.monotonic()
        deadline = min(budget_end, start + STAGE_LIMITS[name] * sizes.time_scale)
        status, error = "ok", None
        if deadline - start < 5:
            status, error = "failed", "not run: the time budget is spent"
        else:
            try:
                stage_records = function(deadline)
                records.extend(stage_records)
                absent = absent_values(stage_records)
                if absent:
                    status, error = "partial", "; ".join(absent)
            except (StageFailed, OSError, ValueError, KeyError) as failure:
                status, error = "failed", f"{type(failure).__name__}: {failure}"
        seconds = time.monotonic() - start
        records.append(stage_record(name, seconds, status, error))
        print(f"gpu_check: {name}: {status}{': ' + error if error else ''} ({seconds:.0f} s)", flush=True)
        write_json(out / "bench_gpu.json", records)
    return records


def summary_lines(records):
    """One line per measured value, for the console."""
    lines = []
    for record in records:
        if record["task"] == "stage":
            continue
        value = record["value"]
        shown = "missing: " + record.get("missing", "") if value is None else f"{value:.4g}"
        ratio = record.get("ratio_to_ours_torch")
        lines.append(f"{record['stage']:>10} {record['impl']:>12} {record['metric']:>28} {shown}"
                     + (f" ({ratio:.2f}x ours-torch)" if ratio and record["impl"] != "ours-torch" else ""))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for bench_gpu.json, bench_gpu.png, logs/ and stages/")
    parser.add_argument("--dry-run", action="store_true", help="tiny model, 2 steps per stage (runs on the CPU)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for all the stages together (default 540, 1800 with --dry-run)")
    parser.add_argument("--encoded", type=Path, default=ENCODED_E2E,
                        help="folder of the encoded E2E train.jsonl, valid.jsonl and test.jsonl (make data)")
    parser.add_argument("--stages", default=None, help="comma-separated subset of the stages to run")
    args = parser.parse_args(argv)
    missing = [name for name in ("train.jsonl", "valid.jsonl", "test.jsonl") if not (args.encoded / name).is_file()]
    if missing:
        parser.error(f"{args.encoded} lacks {', '.join(missing)}: run `make data` here, and on a device machine "
                     "carry common_data/e2e/encoded")
    sizes = DRY_RUN if args.dry_run else Sizes()
    budget = args.budget or (1800 if args.dry_run else 540)
    records = run_check(args.out, args.encoded, sizes, budget, args.stages.split(",") if args.stages else None)
    report.plot_gpu_check(records, args.out / "bench_gpu.png",
                          f"gpu_check{' --dry-run' if args.dry_run else ''}: {sizes.model_card} "
                          f"(align: {sizes.align_model_card}), batch {sizes.batch_size}")
    print("\n".join(summary_lines(records)))
    failed = [f"{record['impl']} ({record['status']})" for record in records
              if record["task"] == "stage" and record["status"] != "ok"]
    print(f"gpu_check: wrote {args.out / 'bench_gpu.json'} and {args.out / 'bench_gpu.png'}"
          + (f"; stages not ok: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
