"""How every command of the project ends on bad input: one line `PROG: error: ...` on stderr and exit status 1
(argparse's usage errors keep theirs, 2), no Python traceback. --debug or NLG_DEBUG=1 shows the traceback instead.

    @command("gpt2_ft.py")
    def main(argv=None):
        ...

    if __name__ == "__main__":
        sys.exit(main())
"""
import functools
import os
import sys
from pathlib import Path

from common_data.util.errors import UserError

DEBUG_FLAG = "--debug"
DEBUG_VARIABLE = "NLG_DEBUG"
# besides ours, what the standard library, numpy and safetensors raise on bad values and on files
USER_ERRORS = (UserError, ValueError, OSError)


def add_debug_argument(*parsers):
    """--debug on each parser (a command's and its subcommands'); command() reads it from the arguments."""
    for parser in parsers:
        parser.add_argument(DEBUG_FLAG, action="store_true",
                            help=f"on an error, show the Python traceback instead of one line (or set "
                                 f"{DEBUG_VARIABLE}=1)")


def debugging(argv):
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def error_line(prog, error):
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{prog}: error: {error.filename}: {error.strerror}"
    return f"{prog}: error: {error}"


def command(prog):
    """Decorate a command's main(argv=None): a user-facing error ends it with one line on stderr, and it returns 1."""
    def decorate(main):
        @functools.wraps(main)
        def run(argv=None):
            try:
                return main(argv)
            except USER_ERRORS as error:
                if debugging(sys.argv[1:] if argv is None else argv):
                    raise
                print(error_line(prog, error), file=sys.stderr)
                return 1
        return run
    return decorate


def output_folder(path, flag="--work_dir"):
    """Create the folder a command writes into (parents too); one it cannot make or write into stops, naming
    the flag."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot create the folder ({error.strerror})") from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: the folder is not writable")
    return Path(path)
