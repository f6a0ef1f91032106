"""How far two runs are apart: their losses at matched steps and their beam outputs line by line."""
import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd

# series -> (RunLog table, column) of every compared curve; the first series both runs logged is the headline
CURVES = {"step_loss": ("step_losses", "loss"), "loss": ("steps", "loss"), "avg_loss": ("steps", "avg_loss"),
          "valid_loss": ("evals", "valid_loss")}
DEFAULT_TOLERANCE = 1e-4


def matched_curve(torch_table, jittor_table, column):
    """step, torch, jittor, delta (= jittor - torch), abs_delta at the steps both tables hold.

    A step logged twice (a resumed run) counts with its last entry; a table without any value in
    `column` has no steps. abs_delta is 0 where both values are equal (both NaN or the same infinity
    included) and infinite where only one side is NaN: a loss that turns NaN in one framework diverged.
    """
    def by_step(table):
        rows = table.dropna(subset=["step"]).drop_duplicates("step", keep="last")
        if rows[column].isna().all():
            rows = rows.iloc[:0]
        return pd.Series(rows[column].to_numpy(dtype=float), index=rows["step"].astype(int).to_numpy())

    joined = pd.concat({"torch": by_step(torch_table), "jittor": by_step(jittor_table)}, axis=1, join="inner")
    joined = joined.sort_index().rename_axis("step").reset_index()
    torch_values, jittor_values = joined["torch"].to_numpy(), joined["jittor"].to_numpy()
    equal = (torch_values == jittor_values) | (np.isnan(torch_values) & np.isnan(jittor_values))
    with np.errstate(invalid="ignore"):
        joined["delta"] = jittor_values - torch_values
        joined["abs_delta"] = np.where(equal, 0.0, np.nan_to_num(np.abs(joined["delta"]), nan=math.inf))
    return joined


@dataclasses.dataclass(frozen=True)
class CurveDelta:
    """Summary of one matched curve. max_at_step is None when no step differs, first_over_step when none
    is past the tolerance."""
    series: str
    matched: int
    max_abs: float
    max_at_step: int | None
    mean_abs: float
    first_over_step: int | None


def curve_delta(series, curve, tolerance):
    if curve.empty:
        return CurveDelta(series, 0, math.nan, None, math.nan, None)
    worst = int(curve["abs_delta"].to_numpy().argmax())
    max_abs = float(curve["abs_delta"].iloc[worst])
    over = curve.loc[curve["abs_delta"] > tolerance, "step"].tolist()
    return CurveDelta(series=series, matched=len(curve), max_abs=max_abs,
                      max_at_step=int(curve["step"].iloc[worst]) if max_abs > 0 else None,
                      mean_abs=float(curve["abs_delta"].mean()), first_over_step=int(over[0]) if over else None)


@dataclasses.dataclass(frozen=True)
class PredictionAgreement:
    """Two prediction files compared line by line (surrounding whitespace ignored)."""
    torch_lines: int
    jittor_lines: int
    identical: int
    first_difference: tuple | None  # (line number, torch text, jittor text)

    @property
    def share(self):
        """Identical lines over the longer file: a line only one file has counts as different."""
        longest = max(self.torch_lines, self.jittor_lines)
        return self.identical / longest if longest else math.nan


def read_lines(path):
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle]


def compare_predictions(torch_path, jittor_path):
    torch_lines, jittor_lines = read_lines(Path(torch_path)), read_lines(Path(jittor_path))
    same = [a == b for a, b in zip(torch_lines, jittor_lines)]
    first = next((number for number, equal in enumerate(same, 1) if not equal), None)
    if first is None and len(torch_lines) != len(jittor_lines):
        first = len(same) + 1
    difference = None
    if first is not None:
        difference = (first, *(lines[first - 1] if first <= len(lines) else None
                               for lines in (torch_lines, jittor_lines)))
    return PredictionAgreement(len(torch_lines), len(jittor_lines), sum(same), difference)


@dataclasses.dataclass
class RunComparison:
    """Matched curves of two runs, with their deltas, and the verdict they add up to (alignment.verdict.judge)."""
    curves: dict  # series -> matched_curve table
    deltas: dict  # series -> CurveDelta
    tolerance: float
    epoch_mismatches: int  # matched steps logged in different epochs: the runs do not walk the data alike
    verdict: object = None  # alignment.verdict.Verdict

    @property
    def headline(self):
        return next((delta for delta in self.deltas.values() if delta.matched), self.deltas["loss"])

    @property
    def status(self):
        return self.verdict.kind


def compare_runs(torch_run, jittor_run, tolerance=DEFAULT_TOLERANCE):
    curves = {series: matched_curve(getattr(torch_run, table), getattr(jittor_run, table), column)
              for series, (table, column) in CURVES.items()}
    epochs = matched_curve(torch_run.steps, jittor_run.steps, "epoch")
    return RunComparison(curves=curves, deltas={series: curve_delta(series, curve, tolerance)
                                                for series, curve in curves.items()},
                         tolerance=tolerance, epoch_mismatches=int((epochs["abs_delta"] > 0).sum()))
