"""The one error type of nlg_eval: bad input files or a missing tool, said in words instead of a traceback."""
from common_data.util.errors import UserError


class EvalError(UserError):
    """Scoring cannot start or finish; the message names the file (and line) or the missing tool."""
