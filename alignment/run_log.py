"""One training run as tables, whichever file it was read from."""
import dataclasses
from pathlib import Path

import pandas as pd

STEP_LOSS_COLUMNS = ("step", "loss")  # every step's training loss (metrics.jsonl "step" events)
STEP_COLUMNS = ("step", "epoch", "batches", "lr", "ms_per_batch", "loss", "avg_loss", "ppl")
# valid_loss is the most precise value the log holds: console logs print it with 2 decimals on the
# `| Eval` line, but the `average loss 1.3299...` line before it carries the same number in full.
EVAL_COLUMNS = ("step", "index", "seconds", "valid_loss", "valid_ppl", "best_ppl")
EVAL_BATCH_COLUMNS = ("step", "batch_index", "loss")
CHECKPOINT_COLUMNS = ("step", "path")
SWITCH_COLUMNS = ("step", "adapter_mode", "previous_mode")  # JELLY seq2par: sequential -> parallel


def frame(rows, columns):
    """A DataFrame of `rows` (dicts) with at least `columns`, in that order, then any others."""
    table = pd.DataFrame(list(rows))
    for column in columns:
        if column not in table:
            table[column] = pd.Series(dtype="float64")
    return table[list(columns) + [column for column in table.columns if column not in columns]]


@dataclasses.dataclass
class RunLog:
    """What one run logged. `records` are its run.json-style records (name -> dict), `notes` what was skipped."""
    source: Path
    steps: pd.DataFrame
    evals: pd.DataFrame
    checkpoints: pd.DataFrame
    eval_batches: pd.DataFrame
    switches: pd.DataFrame
    step_losses: pd.DataFrame = dataclasses.field(default_factory=lambda: frame([], STEP_LOSS_COLUMNS))
    records: dict = dataclasses.field(default_factory=dict)
    notes: list = dataclasses.field(default_factory=list)


def empty_run(source):
    """The RunLog of a run that could not be read: no rows, so every comparison says so."""
    return RunLog(source=Path(source), steps=frame([], STEP_COLUMNS), evals=frame([], EVAL_COLUMNS),
                  checkpoints=frame([], CHECKPOINT_COLUMNS), eval_batches=frame([], EVAL_BATCH_COLUMNS),
                  switches=frame([], SWITCH_COLUMNS))
