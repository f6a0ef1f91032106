"""`python -m common_data.cli.recipe FILE`: the values of a recipe for the pipeline scripts (scripts/
steps.sh), one line `SECTION<TAB>KEY<TAB>VALUE` each, after checking every key against its command's flags.

A recipe (recipes/) has two sections of flag values, `train:` for gpt2_ft.py and `beam:` for gpt2_beam.py, and may
have a third, `verdict:` for `python -m alignment verify` (its segments checked against the train section). Values
print as on the command line (lists comma-separated, switches true or false); keys set to null are left out.
"""
import argparse
import sys

from common_data.cli import beam_args, ft_args, verdict_args
from common_data.cli.command import add_debug_argument, command
from common_data.cli.config_file import SECTIONS, ConfigError, load_file, read_config

PARSERS = {"train": ft_args.build_parser, "beam": beam_args.build_parser, "verdict": verdict_args.build_parser}
REQUIRED = ("train", "beam")


def recipe_values(path):
    """[(section, key, value)] of a recipe, in the file's order, every value checked and converted."""
    content = load_file(path)
    if not isinstance(content, dict) or not set(REQUIRED) <= set(content) or not set(content) <= set(SECTIONS):
        raise ConfigError(f"{path}: a recipe has two sections of flag values, train: (gpt2_ft.py) and beam: "
                          "(gpt2_beam.py), and may have a third, verdict: (python -m alignment verify)")
    values = [(section, key, value) for section in SECTIONS if section in content
              for key, value in read_config(PARSERS[section](), path, section).items()]
    if "verdict" in content:
        check_verdict_section(path, values)
    return values


def check_verdict_section(path, values):
    """The verdict's segments must start at the train section's saves and end within its steps."""
    train = vars(ft_args.build_parser().parse_args(["--train_data", "-", "--valid_data", "-"]))
    train.update({key: value for section, key, value in values if section == "train"})
    verdict = {key: value for section, key, value in values if section == "verdict"}
    steps = verdict.get("segment_steps", verdict_args.DEFAULT_SEGMENT_STEPS)
    every = verdict.get("segment_every")
    if every is not None and (every < steps or every % train["save_interval"]):
        raise ConfigError(f"{path}: verdict: segment_every {every} must be a multiple of save_interval "
                          f"{train['save_interval']} and at least segment_steps {steps}")
    if verdict.get("segments") is None:
        return
    if train["max_step"] is None:
        raise ConfigError(f"{path}: verdict: segments need the train section's max_step")
    try:
        verdict_args.check_segments(verdict["segments"], steps, train["save_interval"], train["max_step"],
                                    f"{path}: verdict")
    except ValueError as error:
        raise ConfigError(str(error)) from None


def command_line_text(value):
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


@command("python -m common_data.cli.recipe")
def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m common_data.cli.recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="the recipe file (YAML)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    for section, key, value in recipe_values(args.recipe):
        if value is not None:
            print(f"{section}\t{key}\t{command_line_text(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
