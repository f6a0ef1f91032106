"""gpt2_decode.py: beam-search token ids -> reference and prediction text files for the official scorers.

microsoft/LoRA's examples/NLG/src/gpt2_decode.py, same flags, same output:
- the references of a context are the completions of the --input_file rows with that exact context string,
  grouped in order of first appearance; each is cut at "<|endoftext|>" and at the first blank line ("\\n\\n")
  and stripped;
- the prediction of a context is its row's "predict" ids in --sample_file (the last one read, when several
  rows share a context), decoded with the GPT-2 vocabulary and cut the same way;
- --ref_type e2e writes every group's references, one a line, a blank line after each group, to
  --output_ref_file; webnlg / dart write --ref_num files reference0 .. reference{N-1} into the folder
  --output_ref_file, line i holding reference k of context i (its first one where it has fewer);
  --output_pred_file holds one prediction a line;
- --lower lowercases, then --tokenize splits every non-word character off as its own token.
"""
import argparse
import json
from pathlib import Path

from common_data.cli.command import add_debug_argument, command
from common_data.decoding.decode import post_process, predictions, reference_groups, tokenizer_from
from common_data.util.atomic import atomic_open
from common_data.util.errors import DataFormatError


def build_parser():
    parser = argparse.ArgumentParser(
        description="Decode gpt2_beam.py predictions into reference and prediction files "
                    "(microsoft/LoRA's gpt2_decode.py flags).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--vocab", default=None,
                        help="folder with the GPT-2 vocab.json and merges.txt (default: ../shared/vocab or the "
                             "downloaded copy)")
    parser.add_argument("--sample_file", required=True, help="gpt2_beam.py output: JSON lines {id, predict}")
    parser.add_argument("--input_file", required=True,
                        help="the formatted rows that were decoded: JSON lines {context, completion} (text)")
    parser.add_argument("--output_ref_file", required=True,
                        help="e2e: reference file; webnlg / dart: folder for reference0 .. reference{N-1}")
    parser.add_argument("--output_pred_file", required=True, help="prediction file, one line per context")
    parser.add_argument("--ref_type", default="e2e", choices=["e2e", "webnlg", "dart"],
                        help="e2e: grouped references in one file; webnlg / dart: one file per reference")
    parser.add_argument("--ref_num", default=4, type=int, help="webnlg / dart: number of reference files")
    parser.add_argument("--tokenize", action="store_true", help="split non-word characters off as tokens")
    parser.add_argument("--lower", action="store_true", help="lowercase")
    add_debug_argument(parser)
    return parser


def write_lines(path, lines):
    with atomic_open(path) as handle:
        handle.writelines(line + "\n" for line in lines)


def write_outputs(groups, texts, args):
    def clean(text):
        return post_process(text, args.tokenize, args.lower)

    references = list(groups.values())
    if args.ref_type == "e2e":
        write_lines(args.output_ref_file, [line for refs in references for line in [*map(clean, refs), ""]])
    else:
        for number in range(args.ref_num):
            write_lines(Path(args.output_ref_file) / f"reference{number}",
                        [clean(refs[number] if number < len(refs) else refs[0]) for refs in references])
    write_lines(args.output_pred_file, [clean(texts[context]) for context in groups])


@command("gpt2_decode.py")
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ref_num < 1:
        parser.error(f"--ref_num must be at least 1, got {args.ref_num}")
    tokenizer = tokenizer_from(args.vocab)
    contexts, groups = reference_groups(args.input_file)
    texts = predictions(args.sample_file, contexts, tokenizer)
    missing = [context for context in groups if context not in texts]
    if missing:
        raise DataFormatError(args.sample_file, f"{len(missing)} of {len(groups)} contexts",
                              f"no prediction, e.g. for the context {json.dumps(missing[0])}")
    write_outputs(groups, texts, args)
    print(f"{len(groups)} contexts, {sum(map(len, groups.values()))} references; wrote {args.output_pred_file} "
          f"and {args.output_ref_file}")
    return 0
