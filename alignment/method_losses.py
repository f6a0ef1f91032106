"""The 200-step Jittor-against-PyTorch runs of every comparison method (common_data/scripts/method_alignment.sh):
per method the largest |Jittor - PyTorch| over the logged training losses and, for AdaLoRA, whether both kept the
same ranks at every allocation.

    python -m alignment.method_losses --runs runs/method_alignment --methods lora adalora ...
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from common_data.runlog import read_metrics

TOLERANCE = 1e-4


def logged(folder, kind):
    return [event for event in read_metrics(Path(folder) / "metrics.jsonl") if event["event"] == kind]


def method_line(runs, method):
    """(line, whether the method is aligned) of `<runs>/torch_<method>` against `<runs>/jittor_<method>`."""
    folders = [Path(runs) / f"{framework}_{method}" for framework in ("torch", "jittor")]
    trains = [logged(folder, "train") for folder in folders]
    steps = [[event["step"] for event in train] for train in trains]
    if not steps[0] or steps[0] != steps[1]:
        return f"{method:10s} logged steps differ: {len(steps[0])} in torch, {len(steps[1])} in jittor", False
    losses = [np.array([event["loss"] for event in train]) for train in trains]
    delta = float(np.abs(losses[1] - losses[0]).max())
    line, aligned = f"{method:10s} {len(steps[0]):4d} steps  max |dloss| {delta:.2e}", delta <= TOLERANCE
    allocations = [[(event["step"], event["ranks"]) for event in logged(folder, "rank_allocation")]
                   for folder in folders]
    if allocations[0] or allocations[1]:
        same = allocations[0] == allocations[1]
        final = sum(allocations[0][-1][1].values()) if allocations[0] else 0
        line += f"  kept ranks {'identical' if same else 'DIFFER'} at {len(allocations[0])} allocations " \
                f"({final} triplets at the end)"
        aligned = aligned and same
    return line, aligned


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", required=True, help="folder of the torch_<method> and jittor_<method> run folders")
    parser.add_argument("--methods", nargs="+", required=True, help="the methods, in report order")
    args = parser.parse_args(argv)
    results = [method_line(args.runs, method) for method in args.methods]
    for line, aligned in results:
        print(f"{line}  {'ok' if aligned else 'NOT ALIGNED'}")
    return 0 if all(aligned for _, aligned in results) else 1


if __name__ == "__main__":
    sys.exit(main())
