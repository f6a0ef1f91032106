"""`python -m common_data.cli.base_corpus`: write the training text of a small base model
(common_data/data/base_corpus.py)."""
import argparse

from common_data.cli.command import add_debug_argument, command
from common_data.data.base_corpus import write_base_corpus
from common_data.data.encoding import END_OF_TEXT


@command("python -m common_data.cli.base_corpus")
def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m common_data.cli.base_corpus",
        description="Write the training text of a small base model: completions (--texts) and whole rows "
                    "(--rows) of encoded JSONL files, as rows whose context is one BOS token.")
    parser.add_argument("--texts", nargs="+", default=[], metavar="ENCODED", help="files whose completions are taken")
    parser.add_argument("--rows", nargs="+", default=[], metavar="ENCODED",
                        help="files whose context + completion are taken")
    parser.add_argument("--out", required=True, help="the JSONL file to write")
    parser.add_argument("--bos", type=int, default=END_OF_TEXT, help="token id of the one-token context "
                                                                     "(default: %(default)s)")
    parser.add_argument("--pack", type=int, default=0,
                        help="join consecutive pieces into rows of at most this many tokens (0: one piece a row)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.pack < 0:
        parser.error(f"--pack must not be negative, got {args.pack}")
    if not args.texts and not args.rows:
        parser.error("give --texts and/or --rows")
    digest = write_base_corpus(args.out, args.texts, args.rows, args.bos, args.pack)
    print(f"{args.out}: sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
