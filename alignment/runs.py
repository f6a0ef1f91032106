"""Read a run: one of our run folders, or a console log file.

A run folder holds what common_data.training.runlog writes: `metrics.jsonl` (one JSON object per event, its
kind under "event") and `run.json` (arguments, framework, device, wall time per phase in `phases_s`,
`wall_s`, `peak_memory` {"kind", "bytes"}). Later steps of the same run (beam search, decoding) may
add their own records beside it as `run.<step>.json`, e.g. `run.beam.json`. The pipeline scripts
(scripts/steps.sh) append each step's wall time to `timings.tsv`: step, seconds, exit status.
"""
import json
from pathlib import Path

import pandas as pd

from alignment.console_log import read_console_log
from alignment.run_log import (CHECKPOINT_COLUMNS, EVAL_BATCH_COLUMNS, EVAL_COLUMNS, STEP_COLUMNS, STEP_LOSS_COLUMNS,
                               SWITCH_COLUMNS, RunLog, frame)
from common_data.training.runlog import read_metrics_and_torn_line

METRICS_FILE = "metrics.jsonl"
RECORD_PATTERNS = ("run.json", "run.*.json")
STEP_TIMINGS = "timings.tsv"
# metrics.jsonl event kind -> (RunLog table, its leading columns); "start" and "end" events are not tabled
EVENT_TABLES = {
    "step": ("step_losses", STEP_LOSS_COLUMNS),
    "train": ("steps", STEP_COLUMNS),
    "eval": ("evals", EVAL_COLUMNS),
    "checkpoint": ("checkpoints", CHECKPOINT_COLUMNS),
    "switch": ("switches", SWITCH_COLUMNS),
}


def read_run(path):
    """A RunLog from a run folder (metrics.jsonl + run records) or from a console log file."""
    path = Path(path)
    if path.is_dir():
        return read_run_folder(path)
    if path.is_file():
        return read_console_log(path)
    raise FileNotFoundError(f"{path}: no such run folder or log file")


def read_run_folder(folder):
    folder = Path(folder)
    rows = {table: [] for table, _ in EVENT_TABLES.values()}
    notes = []
    metrics_path = folder / METRICS_FILE
    if metrics_path.is_file():
        events, torn_line = read_metrics_and_torn_line(metrics_path)
        for number, event in enumerate(events, 1):
            if not isinstance(event, dict) or "event" not in event:
                raise ValueError(f"{metrics_path}: line {number}: an event needs an 'event' field, got {event!r}")
            if event["event"] in EVENT_TABLES:
                table = EVENT_TABLES[event["event"]][0]
                rows[table].append({key: value for key, value in event.items() if key != "event"})
        if torn_line is not None:
            notes.append(f"{metrics_path}: line {torn_line}: cut off (the run was stopped while writing it), skipped")
    else:
        notes.append(f"{metrics_path}: missing")
    tables = {table: numeric(frame(rows[table], columns)) for table, columns in EVENT_TABLES.values()}
    records = read_records(folder)
    if not records:
        notes.append(f"{folder / 'run.json'}: missing")
    return RunLog(source=folder, eval_batches=frame([], EVAL_BATCH_COLUMNS), records=records, notes=notes, **tables)


def read_records(folder):
    """{name: record} of the run records in `folder`: 'run' for run.json, 'beam' for run.beam.json."""
    records = {}
    for pattern in RECORD_PATTERNS:
        for path in sorted(folder.glob(pattern)):
            with open(path, encoding="utf-8") as handle:
                try:
                    record = json.load(handle)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}: line {error.lineno}: not valid JSON ({error.msg}, column "
                                     f"{error.colno})") from None
            check_record(path, record)
            records[path.name.removesuffix(".json").removeprefix("run.")] = record
    if (folder / STEP_TIMINGS).is_file():
        records["pipeline step"] = {"phases_s": step_seconds(folder / STEP_TIMINGS)}
    return records


def step_seconds(path):
    """{step: wall seconds} from a pipeline timings.tsv; a step run more than once counts with its last run."""
    seconds = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3 or not fields[1].isdigit():
                raise ValueError(f"{path}:{number}: expected 'step<TAB>seconds<TAB>exit status', got {line.strip()!r}")
            seconds[fields[0]] = float(fields[1])
    return seconds


def check_record(path, record):
    """Reject a run record whose fields the report reads have the wrong shape, naming file and field."""
    if not isinstance(record, dict):
        raise ValueError(f"{path}: a run record is a JSON object, got {type(record).__name__}")
    phases = record.get("phases_s", {})
    if not isinstance(phases, dict) or not all(is_number(value) for value in phases.values()):
        raise ValueError(f"{path}: field 'phases_s' must map phase names to seconds, got {phases!r}")
    if "wall_s" in record and not is_number(record["wall_s"]):
        raise ValueError(f"{path}: field 'wall_s' must be a number of seconds, got {record['wall_s']!r}")
    memory = record.get("peak_memory")
    if memory is not None and not (isinstance(memory, dict) and is_number(memory.get("bytes"))):
        raise ValueError(f"{path}: field 'peak_memory' must be {{'kind': ..., 'bytes': n}}, got {memory!r}")
    previous = record.get("previous_runs", [])
    if not isinstance(previous, list):
        raise ValueError(f"{path}: field 'previous_runs' must be a list of run records, got {previous!r}")
    for earlier in previous:
        check_record(f"{path} (previous_runs)", earlier)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numeric(table):
    """Turn the 'nan'/'inf'/'-inf' strings of metrics.jsonl (strict JSON has no such numbers) into floats."""
    for column in table.columns:
        values = table[column]
        if values.dtype == object and values.dropna().map(is_json_number).all():
            table[column] = pd.to_numeric(values, errors="coerce")
    return table


def is_json_number(value):
    return is_number(value) or value in ("nan", "inf", "-inf")
