"""The one error type for bad input data."""


class DataFormatError(ValueError):
    """Input that does not follow its format; the message names the file and the line or entry."""

    def __init__(self, path, where, problem):
        super().__init__(f"{path}: {where}: {problem}")
        self.path = path
        self.where = where
        self.problem = problem
