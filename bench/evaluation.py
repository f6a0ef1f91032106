"""Time the E2E scorer (nlg_eval.score_e2e) on the full E2E test set.

References and predictions come from the official test CSV read by common_data's E2E converter: the
references of each MR form its group, and its first reference stands in for a prediction (the scorer's
work does not depend on where the predictions come from).
"""
import time

from common_data.data.sources import data_root, find_source
from nlg_eval import score_e2e


def e2e_test_groups():
    """(reference groups, one prediction per group) of the E2E test set, MRs in file order."""
    source, path = find_source(data_root(), "e2e", "test")
    groups = {}
    for row in source.read(path):
        groups.setdefault(row["group"], []).append(row["completion"])
    references = list(groups.values())
    return references, [group[0] for group in references]


def time_scoring(references, predictions):
    """(seconds, scores) of one score_e2e call."""
    start = time.perf_counter()
    scores = score_e2e(references, predictions)
    return time.perf_counter() - start, scores
