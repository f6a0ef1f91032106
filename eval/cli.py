"""`nlg-eval`: the official E2E / WebNLG / DART scores of a prediction file, printed like the official
scripts and optionally written as JSON ({metric: value}) for the alignment report."""
import argparse
import json
import sys

from common_data.util.atomic import atomic_open
from common_data.cli.command import add_debug_argument, command

from .e2e import score_e2e
from .inputs import read_e2e, read_generationeval
from .webnlg import score_webnlg


def build_parser():
    parser = argparse.ArgumentParser(
        prog="nlg-eval",
        description="Score generated text with the official metrics, reproduced exactly: E2E as "
                    "tuetschek/e2e-metrics (BLEU, NIST, METEOR, ROUGE_L, CIDEr); WebNLG and DART as "
                    "WebNLG's GenerationEval (BLEU, METEOR, chrF++, TER). Needs Java for METEOR.")
    commands = parser.add_subparsers(dest="dataset", required=True, metavar="{e2e,webnlg,dart}")

    e2e = commands.add_parser("e2e", help="E2E NLG Challenge metrics (measure_scores.py)",
                              description="E2E metrics as e2e-metrics' measure_scores.py prints them.")
    e2e.add_argument("references", metavar="REF",
                     help="references grouped per input: one per line, a blank line between inputs")
    e2e.add_argument("predictions", metavar="PRED", help="one prediction per line, in the order of REF's groups")

    for name, title in (("webnlg", "WebNLG"), ("dart", "DART")):
        subcommand = commands.add_parser(
            name, help=f"{title} metrics (GenerationEval eval.py)",
            description=f"{title} metrics as WebNLG's GenerationEval (eval.py) computes them.")
        subcommand.add_argument("--refs", required=True, metavar="PREFIX",
                             help="reference files PREFIX0 .. PREFIX{N-1} (PREFIX itself when N is 1), "
                                  "one line per hypothesis, an empty line where an input has fewer references")
        subcommand.add_argument("--hyp", required=True, metavar="FILE", help="one hypothesis per line")
        subcommand.add_argument("--num-refs", required=True, type=int, metavar="N", help="number of reference files")

    for subcommand in commands.choices.values():
        subcommand.add_argument("--json", metavar="OUT", help="also write {metric: value} to OUT as JSON")
    add_debug_argument(parser, *commands.choices.values())
    return parser


def score(args):
    """(scores, {metric: printed decimals}) for the parsed command line."""
    if args.dataset == "e2e":
        scores = score_e2e(*read_e2e(args.references, args.predictions))
        return scores, {metric: 4 for metric in scores}
    scores = score_webnlg(*read_generationeval(args.refs, args.hyp, args.num_refs))
    return scores, {metric: 2 if metric == "BLEU" else 4 for metric in scores}


@command("nlg-eval")
def main(argv=None):
    args = build_parser().parse_args(argv)
    scores, decimals = score(args)
    print("SCORES:\n==============")
    for metric, value in scores.items():
        print(f"{metric}: {value:.{decimals[metric]}f}")
    if args.json:
        with atomic_open(args.json) as handle:
            json.dump(scores, handle, indent=2)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
