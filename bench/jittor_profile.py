"""Where a Jittor training step spends its time, op by op (Jittor environment).

    environments/run jittor python -m bench.jittor_profile [--steps 6] [--top 12]

Our Jittor trainer's step (NLG_jittor/src/gpt2_ft.py's Trainer.train_batch) on the batches of `python -m bench`'s
training task, under Jittor's profiler after untimed warm-up steps; prints the ops that took the most time, grouped
by kind (a JIT kernel's name up to its first template argument), with their share of the profiled op time.
"""
import argparse
import tempfile
from collections import defaultdict

import jittor as jt

from bench import workload
from common_data.cli.ft_args import parse_args
from common_data.util.paths import REPO_ROOT
from NLG_jittor.src.distributed import init_ranks
from NLG_jittor.src.gpt2_ft import Trainer


def op_kind(name):
    """'mkl_matmul«T:float32«Trans_a:N...' -> 'mkl_matmul Trans_a:N Trans_b:T'; a fused op keeps its first two ops."""
    parts = name.split("«")
    if parts[0]:
        return " ".join([parts[0]] + [part for part in parts[1:] if part.startswith("Trans_")])
    ops = [part.split(":", 1)[1] for part in parts if part.startswith("opkey")]
    dims = next((part for part in parts if part.startswith("DIM=")), "")
    return f"fused {'+'.join(ops[:2])}{' …' if len(ops) > 2 else ''} {dims}".strip()


def profiled_ops(run):
    """[(op name, calls, seconds)] of what run() computes, by Jittor's profiler."""
    jt.sync_all(True)
    jt.profiler.start(0, 0)
    run()
    jt.sync_all(True)
    jt.profiler.stop()
    header, *rows = jt.profiler.report()
    name, count, total = header.index("Name"), header.index("Count"), header.index("TotalTime")
    return [(row[name], int(row[count]), float(row[total]) / 1e9) for row in rows]


def profile_steps(spec, steps):
    """[(op kind, calls, seconds)] of `steps` profiled training steps, the slowest kind first."""
    with tempfile.TemporaryDirectory() as work_dir:
        trainer = Trainer(parse_args(workload.trainer_flags(spec, work_dir, padded=False, bf16=False)), init_ranks())
    batches = workload.bench_batches(spec, trainer.train_examples)
    for batch in batches[:spec.warmup_steps]:
        trainer.train_batch(batch)
    kinds = defaultdict(lambda: [0, 0.0])
    run = lambda: [trainer.train_batch(batch) for batch in batches[spec.warmup_steps:spec.warmup_steps + steps]]
    for name, calls, seconds in profiled_ops(run):
        kind = kinds[op_kind(name)]
        kind[0] += calls
        kind[1] += seconds
    return sorted(((kind, calls, seconds) for kind, (calls, seconds) in kinds.items()), key=lambda k: -k[2])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.jittor_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6, help="profiled training steps (default: %(default)s)")
    parser.add_argument("--top", type=int, default=12, help="op kinds to print (default: %(default)s)")
    parser.add_argument("--batch_size", type=int, default=8, help="as python -m bench (default: %(default)s)")
    parser.add_argument("--seq_len", type=int, default=512, help="as python -m bench (default: %(default)s)")
    parser.add_argument("--train_data", default=str(REPO_ROOT / "common_data/e2e/encoded/train.jsonl"),
                        help="encoded E2E training set (default: %(default)s)")
    args = parser.parse_args(argv)
    spec = workload.TrainSpec(train_data=args.train_data, valid_data=args.train_data, batch_size=args.batch_size,
                              seq_len=args.seq_len, steps=args.steps)
    kinds = profile_steps(spec, args.steps)
    total = sum(seconds for _, _, seconds in kinds)
    print(f"{args.steps} steps of {spec.model_card}, batch {spec.batch_size}, seq_len {spec.seq_len}: "
          f"{total:.2f} s of op time")
    for kind, calls, seconds in kinds[:args.top]:
        print(f"{100 * seconds / total:5.1f}%  {seconds:7.3f} s  {calls:5d} calls  {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
