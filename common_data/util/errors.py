"""The project's error types for what users give it: commands end on them with one line (common_data/cli/command.py)."""


class UserError(Exception):
    """Bad input, or a missing tool: the message says which file, flag or tool, and what is wrong."""


class DataFormatError(UserError, ValueError):
    """Input that does not follow its format; the message names the file and the line or entry."""

    def __init__(self, path, where, problem):
        super().__init__(f"{path}: {where}: {problem}")
        self.path = path
        self.where = where
        self.problem = problem
