"""--config FILE: flag values from a YAML or JSON file, checked against the command's parser; flags given on the
command line win.

FILE is one of
  - flag names (without --) and their values:           lr: 0.0002
                                                         lora_targets: [q, v]
  - a recipe (recipes/): a section per command, `train:` for gpt2_ft.py, `beam:` for gpt2_beam.py and, optional,
    `verdict:` for `python -m alignment verify`, each of flag names and values; a command reads its own section;
  - a run record (run.json of gpt2_ft.py, run.beam.json of gpt2_beam.py): the run's "args", so that the run
    repeats exactly.
Values take the types of their flags (a number for --lr, true or false for a switch such as --correct_bias, a
list for a repeated flag such as --eos_token_id); strings convert as on the command line. An unknown key, a wrong
type or a value outside the flag's choices stops with the file, the key and what is allowed.
"""
import argparse
import json
from pathlib import Path

import yaml

from common_data.util.errors import UserError

SECTIONS = ("train", "beam", "verdict")
# flags a file does not set: a run record keeps their values for the record only
NOT_SETTINGS = ("help", "config", "debug")
EXPECTED = {int: "an integer", float: "a number", str: "a string"}


class ConfigError(UserError):
    pass


def add_config_argument(parser, section):
    parser.add_argument("--config", metavar="FILE",
                        help=f"YAML or JSON file of flag values, keys named as the flags without '--' (lr: 0.0002), "
                             f"or a recipe with a '{section}:' section (recipes/), or a run's run record "
                             f"({'run.json' if section == 'train' else 'run.beam.json'}) to repeat it; flags given "
                             "on the command line win")


def parse_args_with_config(parser, argv, section):
    """parser.parse_args(argv) with the values of --config FILE (if given) as the defaults. A bad file stops with
    one line and exit status 2, as a usage error."""
    finder = argparse.ArgumentParser(add_help=False)
    finder.add_argument("--config")
    path = finder.parse_known_args(argv)[0].config
    values = {}
    if path is not None:
        try:
            values = read_config(parser, path, section)
        except ConfigError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
    exclusive_defaults = {action.dest: action.default for group in parser._mutually_exclusive_groups
                          for action in group._group_actions}
    appended = apply_defaults(parser, values)
    args = parser.parse_args(argv)
    for dest, value in appended.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    check_exclusive(parser, args, exclusive_defaults, path)
    return args


def settable_actions(parser):
    """{key: action} of the flags a file may set."""
    return {action.dest: action for action in parser._actions
            if action.option_strings and action.dest not in NOT_SETTINGS}


def read_config(parser, path, section):
    """{dest: value} from the file, every key and value checked against the parser's flags."""
    settings, where, skipped = config_settings(load_file(path), path, section)
    actions = settable_actions(parser)
    values = {}
    for key, value in settings.items():
        if key in skipped:
            continue
        if key not in actions:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(actions))})")
        values[key] = flag_value(actions[key], value, f"{where}: key {key!r}")
    return values


def load_file(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle) if Path(path).suffix == ".json" else yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError(f"--config {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: {line}not valid YAML ({getattr(error, 'problem', None) or error})") from error


def config_settings(content, path, section):
    """(settings mapping, where to say it is, keys to skip) of a file's content: flat, a recipe or a run record."""
    if content is None:
        raise ConfigError(f"{path}: the file is empty")
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of flag names to values, got {type(content).__name__}")
    if isinstance(content.get("args"), dict):
        return content["args"], f"{path}: args", NOT_SETTINGS
    if content and all(key in SECTIONS for key in content):
        if not isinstance(content.get(section), dict):
            raise ConfigError(f"{path}: no '{section}:' section of flag values (sections: {', '.join(content)})")
        return content[section], f"{path}: {section}", ()
    return content, path, ()


def expected_type(action):
    if isinstance(action, argparse._StoreTrueAction):
        return "true or false"
    one = EXPECTED.get(action.type or str, "a list of names or a comma-separated string")
    if isinstance(action, argparse._AppendAction):
        return f"{one} or a list of them"
    return one


def flag_value(action, value, where):
    """The value the flag gets for `value` read from a file; ConfigError if its type or choice is wrong."""
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected {expected_type(action)}, got {value!r}")
        return value
    if value is None and action.default is None:
        return None
    if isinstance(action, argparse._AppendAction):
        return [one_value(action, item, where) for item in (value if isinstance(value, list) else [value])]
    if isinstance(action, argparse._StoreAction):
        return one_value(action, value, where)
    raise ConfigError(f"{where}: {'/'.join(action.option_strings)} cannot be set from a file")


def one_value(action, value, where):
    kind = action.type or str
    try:
        converted = converted_value(kind, value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        converted = None
    if converted is None:
        raise ConfigError(f"{where}: expected {expected_type(action)}, got {value!r}")
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"{where}: {converted!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def converted_value(kind, value):
    """As the command line converts the text of a flag; None when the value has the wrong type."""
    if isinstance(value, str):
        return kind(value)
    if isinstance(value, bool):
        return None
    if kind is float and isinstance(value, (int, float)):
        return float(value)
    if kind is int and isinstance(value, int):
        return value
    if kind is str and isinstance(value, (int, float)):
        return str(value)
    if kind not in EXPECTED and isinstance(value, list) and all(
            isinstance(item, (str, int)) and not isinstance(item, bool) for item in value):
        return kind(",".join(map(str, value)))
    return None


def apply_defaults(parser, values):
    """Make the values the parser's defaults (so that command-line flags win); returns those of repeatable flags,
    which are filled in after parsing only when the command line gives none (a default would be appended to)."""
    actions = settable_actions(parser)
    appended = {dest: value for dest, value in values.items() if isinstance(actions[dest], argparse._AppendAction)}
    for dest in values:
        actions[dest].required = False
    parser.set_defaults(**{dest: value for dest, value in values.items() if dest not in appended})
    return appended


def check_exclusive(parser, args, defaults, path):
    """Flags that exclude each other, one set in the file and another on the command line, stop the parse."""
    for group in parser._mutually_exclusive_groups:
        given = [action.option_strings[0] for action in group._group_actions
                 if getattr(args, action.dest) != defaults[action.dest]]
        if len(given) > 1:
            parser.error(f"{' and '.join(given)} exclude each other (set in --config {path} and on the command line)")
