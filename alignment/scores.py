"""Generation metrics of the two runs side by side, from the JSON files that `nlg-eval --json` writes."""
import json
import math
from pathlib import Path

import pandas as pd

from nlg_eval.e2e import E2E_METRICS
from nlg_eval.webnlg import WEBNLG_METRICS

# what `nlg-eval <dataset>` scores: e2e-metrics' five for E2E, GenerationEval's four for WebNLG and DART
DATASET_METRICS = {"e2e": E2E_METRICS, "webnlg": WEBNLG_METRICS, "dart": WEBNLG_METRICS}


def read_scores(path):
    """{metric name: value} of an `nlg-eval --json` output file."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        try:
            scores = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON: {error}") from None
    if not isinstance(scores, dict):
        raise ValueError(f"{path}: expected a JSON object of metric name -> value, got {type(scores).__name__}")
    for name, value in scores.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"{path}: metric {name!r} is not a number: {value!r}")
    return {name: float(value) for name, value in scores.items()}


def metrics_table(torch_scores, jittor_scores, dataset):
    """One row per metric: the dataset's official metrics first (none for an unknown dataset), then any
    other metric either file has.

    relative_pct = 100 * (jittor - torch) / |torch|; a metric missing on one side is NaN there.
    """
    expected = DATASET_METRICS.get(dataset, ())
    extra = sorted((set(torch_scores) | set(jittor_scores)) - set(expected))
    rows = []
    for metric in (*expected, *extra):
        torch_value = torch_scores.get(metric, math.nan)
        jittor_value = jittor_scores.get(metric, math.nan)
        delta = jittor_value - torch_value
        relative = 100 * delta / abs(torch_value) if torch_value else math.nan
        rows.append({"metric": metric, "torch": torch_value, "jittor": jittor_value, "delta": delta,
                     "relative_pct": relative})
    return pd.DataFrame(rows, columns=["metric", "torch", "jittor", "delta", "relative_pct"])
