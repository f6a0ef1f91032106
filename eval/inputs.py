"""Read scorer inputs the way the official scripts read them, with clear errors for bad files.

E2E (e2e-metrics' measure_scores.py): lines are stripped; the reference file groups the references of
one input on consecutive lines with a blank line between groups (a file without blank lines holds one
reference per input); the prediction file has one line per input.
WebNLG / DART (GenerationEval's eval.py): every file is `text.split("\n")`, so a final newline adds one
empty line to every file, as it does there; reference file i holds the i-th reference of each input,
an empty line where an input has fewer references.
"""
from pathlib import Path

from .errors import EvalError


def read_text(path, allow_blank=False):
    """The UTF-8 text of `path`; EvalError when it is missing, unreadable, not UTF-8 or (unless allowed) blank."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file") from None
    except UnicodeDecodeError as error:
        raise EvalError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise EvalError(f"{path}: cannot read it ({error.strerror})") from None
    if not allow_blank and not text.strip():
        raise EvalError(f"{path}: the file is empty")
    return text


def read_e2e_references(path):
    """Reference groups, one list of stripped lines per input."""
    lines = [line.strip() for line in read_text(path).splitlines()]
    while not lines[-1]:
        lines.pop()
    groups = [[]]
    for number, line in enumerate(lines, start=1):
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
        else:
            raise EvalError(f"{path}: line {number}: blank line where a reference group should start "
                            "(groups are separated by exactly one blank line)")
    if len(groups) == 1:
        return [[line] for line in groups[0]]
    return groups


def read_e2e(references_path, predictions_path):
    """(reference groups, predictions) of the E2E scorer's two files, checked to have one entry per input."""
    references = read_e2e_references(references_path)
    predictions = [line.strip() for line in read_text(predictions_path).splitlines()]
    if len(predictions) != len(references):
        raise EvalError(f"{predictions_path}: {len(predictions)} predictions (lines), but {references_path} "
                        f"has {len(references)} reference groups: they must correspond one to one")
    return references, predictions


def reference_paths(prefix, num_refs):
    """GenerationEval's reference files: PREFIX0 .. PREFIX{N-1}, or PREFIX itself when N is 1."""
    if num_refs < 1:
        raise EvalError(f"the number of references must be at least 1, got {num_refs}")
    if num_refs == 1:
        return [Path(prefix)]
    return [Path(f"{prefix}{index}") for index in range(num_refs)]


def read_generationeval(references_prefix, hypothesis_path, num_refs):
    """(references, hypotheses): references[j] lists the num_refs references of input j ('' where missing)."""
    hypotheses = read_text(hypothesis_path).split("\n")
    columns = []
    for index, path in enumerate(reference_paths(references_prefix, num_refs)):
        lines = read_text(path, allow_blank=index > 0).split("\n")
        if len(lines) != len(hypotheses):
            raise EvalError(f"{path}: {len(lines)} lines, but {hypothesis_path} has {len(hypotheses)}: every "
                            "reference file needs one line per hypothesis (an empty line where a reference is missing)")
        columns.append(lines)
    return [list(group) for group in zip(*columns)], hypotheses
