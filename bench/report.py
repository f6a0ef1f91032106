"""Records of log/bench.json and the figure, from the measurements of python -m bench.

A record: {"task", "impl", "device", "config", "metric", "value", "ratio_to_ours_torch", "samples", "spread",
"ratio_samples"}: value is the median of the repeats (listed in samples), spread their range over that median,
the ratio is value / ours-torch's value of the same task and metric, and ratio_samples the ratio repeat by
repeat (the implementations take turns, so repeat i of each ran under the same conditions). An implementation
that could not run has value null and a "missing" reason.
"""
import statistics

import pandas as pd
from matplotlib.figure import Figure

from bench.gemm import SHAPES
from bench.workload import ATTENTION, BLOCK_MATMULS, LM_HEAD, REST
from common_data.util.atomic import atomic_path

BREAKDOWN_KINDS = (LM_HEAD, BLOCK_MATMULS, ATTENTION, REST)

REFERENCE_IMPL = "ours-torch"
MIB = 2 ** 20
RATIO_MOVE_WARNING = 0.10  # warn when a ratio's repeats span more than this share of its median


def per_second(count):
    return lambda measurement: measurement["counts"][count] / measurement["seconds"]


def count(name):
    return lambda measurement: measurement["counts"].get(name)


def gflops(measurement):
    flops = measurement["counts"].get("flops")
    return None if flops is None else flops / measurement["seconds"] / 1e9


def breakdown_seconds(kind):
    return lambda measurement: measurement["counts"].get("breakdown", {}).get(kind)


METRICS = {
    "gemm": {f"gflops_{shape}": count(f"gflops_{shape}") for shape in SHAPES},
    "train": {
        "tokens_per_s": per_second("tokens"),
        "completion_tokens_per_s": per_second("completion_tokens"),
        "gflops": gflops,
        **{f"step_seconds: {kind}": breakdown_seconds(kind) for kind in BREAKDOWN_KINDS},
        "peak_memory_bytes": lambda measurement: measurement["peak_memory_bytes"],
        "first_loss": lambda measurement: measurement["losses"][0],
        "mean_loss": lambda measurement: statistics.fmean(measurement["losses"]),
    },
    "decode": {
        "sentences_per_s": per_second("sentences"),
        "peak_memory_bytes": lambda measurement: measurement["peak_memory_bytes"],
        "mean_generated_tokens": lambda measurement: (measurement["counts"]["generated_tokens"]
                                                      / measurement["counts"]["sentences"]),
    },
    "eval": {"seconds": lambda measurement: measurement["seconds"]},
}


def build_records(measurements, missing, device, task_configs):
    """measurements: {(task, impl): [measurement dicts, one per repeat]}; missing: {(task, impl): reason}."""
    records = []
    for (task, impl), runs in measurements.items():
        config = {**task_configs[task], **runs[0]["config"]}
        for metric, compute in METRICS[task].items():
            samples = [compute(run) for run in runs]
            if None in samples:  # a measurement of an earlier commit (--baseline) without it
                continue
            memory = {"memory": runs[0]["memory_kind"]} if metric == "peak_memory_bytes" else {}
            records.append({"task": task, "impl": impl, "device": device, "config": {**config, **memory},
                            "metric": metric, "value": statistics.median(samples), "samples": samples})
    for (task, impl), reason in missing.items():
        for metric in METRICS[task]:
            records.append({"task": task, "impl": impl, "device": device, "config": task_configs[task],
                            "metric": metric, "value": None, "samples": [], "missing": reason})
    reference = {(r["task"], r["metric"], r["impl"]): r for r in records}
    for record in records:
        base = reference.get((record["task"], record["metric"], reference_impl(record["impl"])), {})
        record["spread"] = relative_range(record["samples"])
        record["ratio_to_ours_torch"] = (record["value"] / base["value"]
                                         if record["value"] is not None and base.get("value") else None)
        pairs = zip(record["samples"], base.get("samples", [])) if record["samples"] else []
        record["ratio_samples"] = [mine / theirs for mine, theirs in pairs if theirs]
    return records


def reference_impl(impl):
    """What an implementation's ratio compares with: ours-torch, or ours-torch-full for full fine-tuning."""
    return REFERENCE_IMPL + "-full" if impl.split("@")[0].endswith("-full") else REFERENCE_IMPL


def add_limit_shares(records, threads):
    """A share_of_gemm_limit record beside each training gflops record: its median over the best GEMM of the gemm
    task at `threads` threads (the training's), any library and shape."""
    limits = [record["value"] for record in records
              if record["task"] == "gemm" and record["value"] and record["impl"].endswith(f" x{threads}")]
    if not limits:
        return records
    limit = max(limits)
    shares = [{**record, "metric": "share_of_gemm_limit", "value": record["value"] / limit,
               "samples": [sample / limit for sample in record["samples"]],
               "config": {**record["config"], "gemm_limit_gflops": limit, "gemm_threads": threads}}
              for record in records if record["task"] == "train" and record["metric"] == "gflops"]
    return records + shares


def relative_range(samples):
    """(max - min) / median of the samples; None for fewer than two or a zero median."""
    if len(samples) < 2 or not statistics.median(samples):
        return None
    return (max(samples) - min(samples)) / abs(statistics.median(samples))


def unstable_ratios(records, threshold=RATIO_MOVE_WARNING):
    """Warnings for the ratios to ours-torch that moved by more than threshold between repeats."""
    warnings = []
    for record in records:
        moved = relative_range(record.get("ratio_samples") or [])
        if record["impl"] != REFERENCE_IMPL and moved is not None and moved > threshold:
            shown = ", ".join(f"{ratio:.3g}" for ratio in record["ratio_samples"])
            warnings.append(f"{record['task']} {record['metric']} {record['impl']}: its ratio to {REFERENCE_IMPL} "
                            f"moved by {moved:.0%} between repeats ({shown}): the figure is not stable here")
    return warnings


PANELS = (("train", "tokens_per_s", "training: tokens / s", 1),
          ("train", "peak_memory_bytes", "training: peak memory (MiB)", MIB),
          ("decode", "sentences_per_s", "decoding: sentences / s", 1),
          ("eval", "seconds", "scoring the E2E test set: seconds", 1))


def ratio_label(ratio, absent):
    """The text over a bar: its ratio to ours-torch, nothing when ours-torch was not measured."""
    if absent:
        return "missing"
    return "" if pd.isna(ratio) else f"{ratio:.2f}x"


def plot(records, path, title):
    """Top row, one bar chart per panel: the median of each implementation, the repeats' range, the ratio to ours.
    Bottom row: the machine's GEMM limit per library and shape, each training step's GFLOP/s with its share of that
    limit, and where a step's time goes."""
    table = pd.DataFrame(records)
    figure = Figure(figsize=(4.2 * len(PANELS), 8.8))
    axes = figure.subplots(2, len(PANELS))
    for axis, (task, metric, label, unit) in zip(axes[0], PANELS):
        rows = table[(table.task == task) & (table.metric == metric)] if len(table) else table
        axis.set_title(label, fontsize=10)
        if rows.empty:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
            axis.set_xticks([])
            continue
        missing = rows.value.isna().tolist()
        values = [0.0 if absent else value / unit for absent, value in zip(missing, rows.value)]
        low = [value - min(samples) / unit if samples else 0.0 for value, samples in zip(values, rows.samples)]
        high = [max(samples) / unit - value if samples else 0.0 for value, samples in zip(values, rows.samples)]
        positions = range(len(rows))
        axis.bar(positions, values, yerr=[low, high], capsize=3,
                 color=["tab:blue" if impl.startswith("ours") and "@" not in impl else "tab:gray"
                        for impl in rows.impl])
        axis.set_xticks(list(positions), list(rows.impl), rotation=30, ha="right", fontsize=9)
        for position, top, ratio, absent in zip(positions, map(sum, zip(values, high)), rows.ratio_to_ours_torch,
                                                missing):
            axis.annotate(ratio_label(ratio, absent), (position, top), ha="center", va="bottom",
                          fontsize=8, xytext=(0, 2), textcoords="offset points")
        axis.margins(y=0.15)
    plot_limit(axes[1][0], table)
    plot_shares(axes[1][1], table)
    plot_breakdown(axes[1][2], table)
    for axis in axes[1][3:]:
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format=path.suffix.lstrip("."))


def task_rows(table, task, metric_prefix):
    if table.empty:
        return table
    return table[(table.task == task) & table.metric.str.startswith(metric_prefix) & table.value.notna()]


def plot_limit(axis, table):
    axis.set_title("float32 GEMM: GFLOP/s per library and threads", fontsize=10)
    rows = task_rows(table, "gemm", "gflops_")
    if rows.empty:
        axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
        return
    grouped_bars(axis, rows.assign(stage=rows.metric.str.removeprefix("gflops_")), 1)
    axis.set_ylim(top=axis.get_ylim()[1] * 1.2)
    axis.legend(fontsize=7, ncol=3, loc="upper center")


def plot_shares(axis, table):
    axis.set_title("training step: GFLOP/s (share of the best GEMM)", fontsize=10)
    rows = task_rows(table, "train", "gflops")
    shares = task_rows(table, "train", "share_of_gemm_limit").set_index("impl").value if len(rows) else {}
    if rows.empty:
        axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
        return
    positions = range(len(rows))
    axis.bar(positions, rows.value, color=["tab:gray" if "@" in impl else "tab:blue" for impl in rows.impl])
    axis.set_xticks(list(positions), list(rows.impl), rotation=30, ha="right", fontsize=9)
    for position, value, impl in zip(positions, rows.value, rows.impl):
        if impl in shares:
            axis.annotate(f"{shares[impl]:.0%}", (position, value), ha="center", va="bottom", fontsize=8,
                          xytext=(0, 2), textcoords="offset points")
    axis.margins(y=0.15)


def plot_breakdown(axis, table):
    axis.set_title("our training steps: seconds by kind of work", fontsize=10)
    rows = task_rows(table, "train", "step_seconds: ")
    rows = rows[rows.impl.str.startswith("ours")] if len(rows) else rows
    if rows.empty:
        axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
        return
    seconds = rows.assign(kind=rows.metric.str.removeprefix("step_seconds: ")).pivot_table(
        index="impl", columns="kind", values="value", sort=False)
    bottom = pd.Series(0.0, index=seconds.index)
    for kind in [kind for kind in BREAKDOWN_KINDS if kind in seconds]:
        axis.bar(range(len(seconds)), seconds[kind].fillna(0.0), bottom=bottom, label=kind)
        bottom += seconds[kind].fillna(0.0)
    axis.set_xticks(list(range(len(seconds))), list(seconds.index), rotation=30, ha="right", fontsize=9)
    axis.set_ylim(top=bottom.max() * 1.45)  # room for the legend above the bars
    axis.legend(fontsize=7, loc="upper left")


def grouped_bars(axis, rows, unit):
    """Bars of each implementation, one per stage (e.g. fp32 and bf16), side by side."""
    stage_names = sorted(rows.stage.unique())
    impls = list(dict.fromkeys(rows.impl))
    width = 0.8 / len(stage_names)
    for offset, stage in enumerate(stage_names):
        chosen = rows[rows.stage == stage].set_index("impl")
        values = [chosen.value.get(impl) for impl in impls]
        positions = [index + offset * width for index in range(len(impls))]
        bars = axis.bar(positions, [0.0 if pd.isna(value) else value / unit for value in values], width,
                        label=stage)
        for bar, value in zip(bars, values):
            if pd.isna(value):
                axis.annotate("missing", (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom", fontsize=7)
    axis.set_xticks([index + 0.4 - width / 2 for index in range(len(impls))], impls, rotation=30, ha="right",
                    fontsize=9)
    axis.legend(fontsize=8)


def plot_gpu_check(records, path, title):
    """bench/gpu_check.py's figure: training speed and memory per precision, decoding speed, loss alignment."""
    table = pd.DataFrame(records)
    figure = Figure(figsize=(17, 4.2))
    axes = figure.subplots(1, 4)
    panels = (("train", "tokens_per_s", "training: tokens / s", 1),
              ("train", "peak_memory_bytes", "training: peak memory (MiB)", MIB),
              ("decode", "sentences_per_s", "decoding: sentences / s", 1))
    for axis, (task, metric, label, unit) in zip(axes, panels):
        axis.set_title(label, fontsize=10)
        rows = table[(table.task == task) & (table.metric == metric)] if len(table) else table
        if rows.empty:
            axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
            continue
        grouped_bars(axis, rows, unit)
    axis = axes[3]
    axis.set_title("|loss - torch's| per step (fp32)", fontsize=10)
    rows = table[table.task == "align"] if len(table) else table
    drawn = False
    for _, row in rows.iterrows():
        if row["samples"]:
            steps = range(1, len(row["samples"]) + 1)
            # exact zeros cannot be drawn on a log scale: they sit at the axis floor
            zeros = sum(delta == 0 for delta in row["samples"])
            axis.plot(steps, [max(delta, 1e-9) for delta in row["samples"]], marker=".",
                      label=row["impl"] + (f" ({zeros} steps exactly 0, drawn at 1e-9)" if zeros else ""))
            drawn = True
    if drawn:
        axis.set_yscale("log")
        axis.set_xlabel("step")
        axis.legend(fontsize=8)
    else:
        axis.text(0.5, 0.5, "not measured", ha="center", va="center", transform=axis.transAxes)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, format=path.suffix.lstrip("."))
