"""Read console logs in microsoft/LoRA's gpt2_ft.py format: ours and those of earlier ports.

The grammar of one line is common_data.training.runlog's. This module adds what real logs need: warnings,
progress bars and tensor reprs between the records, text glued in front of a record, and a last line
cut off by a run that was killed or is still writing. A line that starts as a record but cannot be
read is an error naming the file and line, unless it is that cut-off last line.
"""
import dataclasses
import re
from pathlib import Path

from alignment.run_log import (CHECKPOINT_COLUMNS, EVAL_BATCH_COLUMNS, EVAL_COLUMNS, STEP_COLUMNS, SWITCH_COLUMNS,
                               RunLog, frame)
from common_data.training.runlog import AdapterLine, EvalLine, TrainLine, parse_line

RECORD_MARKERS = ("| epoch ", "| Eval ", "| adapter ", "saving checkpoint", "eval samples:", "average loss",
                  "start to train the model", "End of training")
CHECKPOINT_STEP = re.compile(r"\.(\d+)\.[A-Za-z]+$")


def record_text(line):
    """(the record part of a console line, from its first marker on; whether that is the line's start),
    or None when the line holds no marker."""
    text = line.rstrip().rsplit("\r", 1)[-1]  # a progress bar redraws the line after a carriage return
    starts = [text.find(marker) for marker in RECORD_MARKERS if marker in text]
    return (text[min(starts):], min(starts) == 0) if starts else None


def read_console_log(path):
    """The steps, evaluations, eval batches, checkpoints and adapter switches of a console log."""
    path = Path(path)
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.readlines()
    steps, evals, eval_batches, checkpoints, switches, notes = [], [], [], [], [], []
    pending_batches, pending_average = [], None
    for number, line in enumerate(lines, 1):
        found = record_text(line)
        if found is None:
            continue
        text, at_start = found
        try:
            record = parse_line(text)
        except ValueError:
            record = None
        if record is None:
            if not at_start:  # chatter that happens to contain a marker
                continue
            if number == len(lines) and not line.endswith("\n"):
                notes.append(f"{path}:{number}: skipped the cut-off last line {line.strip()!r}")
                continue
            raise ValueError(f"{path}:{number}: a log record that cannot be read: {line.strip()!r}")
        if isinstance(record, TrainLine):
            steps.append(dataclasses.asdict(record))
        elif isinstance(record, EvalLine):
            exact_loss = record.valid_loss if pending_average is None else pending_average
            evals.append({"step": record.step, "index": record.index, "seconds": record.seconds,
                          "valid_loss": exact_loss, "valid_ppl": record.valid_ppl, "best_ppl": record.best_ppl})
            eval_batches.extend({**batch, "step": record.step} for batch in pending_batches)
            pending_batches, pending_average = [], None
        elif isinstance(record, AdapterLine):
            if record.switched_from is not None:  # the line at the start of a run only states the mode
                switches.append({"step": record.step, "adapter_mode": record.mode,
                                 "previous_mode": record.switched_from})
        else:
            kind, fields = record
            if kind == "checkpoint":
                checkpoint = str(fields["path"]).strip()
                match = CHECKPOINT_STEP.search(checkpoint)
                step = int(match.group(1)) if match else (steps[-1]["step"] if steps else None)
                checkpoints.append({"step": step, "path": checkpoint})
            elif kind == "eval_progress":
                pending_batches.append({"batch_index": fields["batch_index"], "loss": float(fields["loss"])})
            elif kind == "eval_average":
                pending_average = float(fields["loss"])
    if pending_batches or pending_average is not None:
        notes.append(f"{path}: the log ends inside an evaluation ({len(pending_batches)} eval batch lines "
                     "without their `| Eval` line)")
        eval_batches.extend({**batch, "step": None} for batch in pending_batches)
    batches_table = frame(eval_batches, EVAL_BATCH_COLUMNS)
    batches_table["step"] = batches_table["step"].astype("Int64")
    return RunLog(source=path, steps=frame(steps, STEP_COLUMNS), evals=frame(evals, EVAL_COLUMNS),
                  checkpoints=frame(checkpoints, CHECKPOINT_COLUMNS), eval_batches=batches_table,
                  switches=frame(switches, SWITCH_COLUMNS), notes=notes)

