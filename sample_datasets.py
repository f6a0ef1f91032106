"""Stratified sampling of E2E / WebNLG / DART: keep a fraction of each type, whole input groups at a time.

Reads the official files (../shared/datasets, else downloads them), samples each split by
type with a seeded generator, prints the counts per type before and after, and writes
{train,valid,test}_formatted.jsonl. A split whose only source is already a sample is passed through.
"""
import argparse
import sys
from pathlib import Path

from common_data.cli.command import add_debug_argument, command
from common_data.data.pipeline import (DEFAULT_OUT_ROOT, DEFAULT_RATIO, DEFAULT_SEED, describe, fetch_if_no_mirror,
                                  load_dataset, sample_dataset, write_sampled)
from common_data.data.sources import DATASETS


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratio", type=float, default=DEFAULT_RATIO, help="fraction of each type to keep")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the sampling generator")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--data-root", default=None, help="folder in the layout of ../shared/datasets "
                        "(default: ../shared/datasets, else the download folder)")
    parser.add_argument("--out", default=str(DEFAULT_OUT_ROOT / "{dataset}" / "sampled"),
                        help="output folder; {dataset} is replaced by the dataset name (default: %(default)s)")
    add_debug_argument(parser)
    return parser


@command("sample_datasets.py")
def main(argv=None):
    args = build_parser().parse_args(argv)
    for dataset in args.datasets:
        if args.data_root is None:
            fetch_if_no_mirror(dataset)
        loaded = load_dataset(dataset, args.data_root)
        sampled = sample_dataset(dataset, loaded, args.ratio, args.seed)
        out = Path(args.out.format(dataset=dataset))
        write_sampled(out, sampled)
        print(describe(dataset, loaded, sampled, args.ratio, args.seed))
        print(f"   written to {out}")


if __name__ == "__main__":
    sys.exit(main())
