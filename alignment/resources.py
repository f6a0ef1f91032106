"""Peak memory and wall time of two runs side by side, from their run records (run.json, run.<step>.json)."""
import math

import pandas as pd

MIB = 2 ** 20
COLUMNS = ["dataset", "phase", "torch", "jittor", "ratio"]


def segments(record):
    """A resumed run's record and those of the runs before it (run.json keeps them in `previous_runs`)."""
    return [record, *record.get("previous_runs", [])]


def process_label(name, record):
    """What a run record's process did: its longest phase ('train' for run.json), else the record's name."""
    phases = record.get("phases_s") or {}
    return max(phases, key=phases.get) if phases else name


def phase_seconds(records):
    """{phase: seconds}: each record's phases, then its whole process, summed over resumed segments."""
    seconds = {}
    for name, record in records.items():
        prefix = "" if name == "run" else f"{name}: "
        for segment in segments(record):
            for phase, value in (segment.get("phases_s") or {}).items():
                seconds[prefix + phase] = seconds.get(prefix + phase, 0.0) + float(value)
    for name, record in records.items():
        walls = [float(segment["wall_s"]) for segment in segments(record) if "wall_s" in segment]
        if walls:
            seconds[f"whole process ({process_label(name, record)})"] = sum(walls)
    return seconds


def peak_memory(records):
    """({process: peak memory in MiB}, {process: how it was measured}), the largest over resumed segments."""
    peaks, kinds = {}, {}
    for name, record in records.items():
        measured = [segment["peak_memory"] for segment in segments(record) if segment.get("peak_memory")]
        if measured:
            largest = max(measured, key=lambda memory: memory["bytes"])
            label = process_label(name, record)
            peaks[label] = largest["bytes"] / MIB
            kinds[label] = str(largest.get("kind", "unknown"))
    return peaks, kinds


def side_by_side(dataset, torch_values, jittor_values):
    rows = []
    for phase in dict.fromkeys([*torch_values, *jittor_values]):
        torch_value = torch_values.get(phase, math.nan)
        jittor_value = jittor_values.get(phase, math.nan)
        ratio = jittor_value / torch_value if torch_value else math.nan
        rows.append({"dataset": dataset, "phase": phase, "torch": torch_value, "jittor": jittor_value,
                     "ratio": ratio})
    return rows


def resource_tables(pairs):
    """(runtime in seconds, peak memory in MiB) tables for [(dataset, torch RunLog, jittor RunLog)].

    The memory table's `measured` column says what each side measured (e.g. CUDA allocator peak, RSS).
    """
    runtime, memory = [], []
    for dataset, torch_run, jittor_run in pairs:
        runtime += side_by_side(dataset, phase_seconds(torch_run.records), phase_seconds(jittor_run.records))
        (torch_peaks, torch_kinds), (jittor_peaks, jittor_kinds) = map(peak_memory, (torch_run.records,
                                                                                      jittor_run.records))
        for row in side_by_side(dataset, torch_peaks, jittor_peaks):
            row["measured"] = f"{torch_kinds.get(row['phase'], '-')} / {jittor_kinds.get(row['phase'], '-')}"
            memory.append(row)
    return pd.DataFrame(runtime, columns=COLUMNS), pd.DataFrame(memory, columns=COLUMNS + ["measured"])
