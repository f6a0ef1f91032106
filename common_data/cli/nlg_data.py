"""`nlg-data`: prepare the E2E / WebNLG / DART data (convert, sample, encode), encode a file, download."""
import argparse
import sys
import time

from common_data.cli.command import add_debug_argument, command
from common_data.data.download import DOWNLOADS, download, downloads_dir, url_of
from common_data.data.encoding import load_tokenizer, write_encoded
from common_data.util.jsonl import read_jsonl
from common_data.data.pipeline import DEFAULT_OUT_ROOT, DEFAULT_RATIO, DEFAULT_SEED, prepare
from common_data.data.sources import DATASETS


def run_prepare(args):
    start = time.perf_counter()
    prepare(args.datasets, args.out_root, args.ratio, args.seed, force=args.force)
    print(f"nlg-data prepare: {time.perf_counter() - start:.1f} s")


def run_encode(args):
    rows = read_jsonl(args.input, required_keys=("context", "completion"))
    write_encoded(args.output, rows, load_tokenizer(args.vocab))
    print(f"encoded {len(rows)} rows -> {args.output}")


def run_download(args):
    for name in args.names or list(DOWNLOADS):
        if args.list:
            for item in DOWNLOADS[name]:
                print(f"{url_of(item, args.base_url)} -> {downloads_dir() / item.local}")
        else:
            print(f"{name}: {download(name, base_url=args.base_url)}")


def download_name(name):
    if name not in DOWNLOADS:
        raise argparse.ArgumentTypeError(f"unknown {name!r} (choose from {', '.join(DOWNLOADS)})")
    return name


def build_parser():
    parser = argparse.ArgumentParser(prog="nlg-data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    prep = commands.add_parser("prepare", help="convert, sample and encode the datasets "
                               "(reads ../shared/datasets, else downloads the official files)")
    prep.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    prep.add_argument("--ratio", type=float, default=DEFAULT_RATIO, help="fraction of each type to keep")
    prep.add_argument("--seed", type=int, default=DEFAULT_SEED, help="sampling seed")
    prep.add_argument("--out-root", default=DEFAULT_OUT_ROOT,
                      help="outputs go to OUT_ROOT/<dataset>/{formatted,sampled,encoded}/")
    prep.add_argument("--force", action="store_true", help="redo the work even if the outputs are up to date")
    prep.set_defaults(run=run_prepare)

    enc = commands.add_parser("encode", help="GPT-2 encode a formatted JSONL file as microsoft/LoRA's gpt2_encode.py")
    enc.add_argument("input", help="formatted JSONL ({context, completion} per line)")
    enc.add_argument("output", help="encoded JSONL to write")
    enc.add_argument("--vocab", default=None, help="folder with vocab.json and merges.txt (default: ../shared/vocab, "
                     "else the Hugging Face gpt2 files in the cache)")
    enc.set_defaults(run=run_encode)

    down = commands.add_parser("download", help="fetch the official files into the cache")
    down.add_argument("names", nargs="*", type=download_name, metavar="NAME",
                      help=f"what to fetch: {', '.join(DOWNLOADS)} (default: all)")
    down.add_argument("--list", action="store_true", help="only print each URL and where it goes")
    down.add_argument("--base-url", default=None, help="replace the hosts (a mirror, a test server)")
    down.set_defaults(run=run_download)
    add_debug_argument(parser, *commands.choices.values())
    return parser


@command("nlg-data")
def main(argv=None):
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
