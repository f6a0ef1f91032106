"""The report's figures, written as PNG files: matched loss curves and PyTorch-vs-Jittor bar charts."""

import numpy as np
from matplotlib.figure import Figure

from alignment.compare import CURVES
from common_data.util.atomic import atomic_path

FRAMEWORKS = {"torch": ("PyTorch", "-"), "jittor": ("Jittor", "--")}  # label, line style
BAR_COLORS = {"torch": "#ee4c2c", "jittor": "#3b7dd8"}
SERIES = {  # label, color
    "step_loss": ("training loss (every step)", "C0"),
    "loss": ("training loss (logged batch)", "C0"),
    "avg_loss": ("training loss (running mean)", "C2"),
    "valid_loss": ("validation loss", "C3"),
}


def save(figure, path):
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)


def draw_loss_curves(top, bottom, torch_run, jittor_run, comparison, series, legend_columns):
    """Top: the `series` of both runs. Bottom: Jittor - PyTorch at matched steps, with the tolerance band.
    The logged batch's loss is left out where every step's loss is there."""
    if len(comparison.curves["step_loss"]):
        series = [name for name in series if name != "loss"]
    for name, (table, column) in CURVES.items():
        if name not in series:
            continue
        label, color = SERIES[name]
        marker = "o" if table == "evals" else None
        for framework, run in (("torch", torch_run), ("jittor", jittor_run)):
            framework_name, linestyle = FRAMEWORKS[framework]
            data = getattr(run, table).dropna(subset=["step", column])
            if len(data):
                top.plot(data["step"], data[column], color=color, linestyle=linestyle, marker=marker,
                         markersize=5, linewidth=1.3, label=f"{label}, {framework_name}")
        curve = comparison.curves[name]
        if len(curve):
            bottom.plot(curve["step"], curve["delta"], color=color, marker=marker or ".", markersize=5,
                        linewidth=1, label=f"{label} ({len(curve)} matched steps)")
    tolerance = comparison.tolerance
    for sign in (1, -1):
        bottom.axhline(sign * tolerance, color="0.45", linestyle=":", linewidth=1.2,
                       label=f"tolerance ±{tolerance:g}" if sign == 1 else None)
    bottom.axhline(0, color="black", linewidth=0.6)
    for framework, run in (("torch", torch_run), ("jittor", jittor_run)):
        for step, mode in zip(run.switches["step"], run.switches["adapter_mode"]):
            for axes in (top, bottom):
                axes.axvline(step, color="0.3", linestyle=FRAMEWORKS[framework][1], linewidth=1,
                             label=f"adapter switched to {mode}, {FRAMEWORKS[framework][0]}" if axes is top else None)
    top.set_ylabel("loss (nats per token)")
    bottom.set_xlabel("training step")
    bottom.set_ylabel("Δ loss (nats per token)")
    for axes in (top, bottom):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small", ncol=legend_columns)


def plot_loss_curves(path, title, torch_run, jittor_run, comparison):
    """One dataset: every loss series of both runs (top) and their difference (bottom)."""
    figure = Figure(figsize=(10, 7.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    draw_loss_curves(top, bottom, torch_run, jittor_run, comparison, SERIES, legend_columns=2)
    top.set_title(title)
    bottom.set_title("Difference at the steps both runs logged (Jittor − PyTorch)")
    save(figure, path)


def plot_loss_panels(path, datasets):
    """One column per (name, torch run, jittor run, comparison): training and validation loss, then Δ."""
    figure = Figure(figsize=(5.2 * len(datasets), 7.0), layout="constrained")
    axes = figure.subplots(2, len(datasets), sharex="col", height_ratios=[3, 2], squeeze=False)
    for column, (name, torch_run, jittor_run, comparison) in enumerate(datasets):
        top, bottom = axes[0, column], axes[1, column]
        draw_loss_curves(top, bottom, torch_run, jittor_run, comparison, ("step_loss", "loss", "valid_loss"),
                         legend_columns=1)
        top.set_title(name)
        bottom.set_title(f"{name}: Jittor − PyTorch", fontsize="medium")
    figure.suptitle("Loss of the PyTorch (solid) and Jittor (dashed) runs")
    save(figure, path)


def plot_metric_bars(path, tables):
    """One row per dataset {name: metrics_table}, one small panel per metric with a PyTorch and a Jittor bar."""
    width = max(len(table) for table in tables.values())
    figure = Figure(figsize=(2.3 * width, 2.4 * len(tables) + 0.6), layout="constrained")
    axes = figure.subplots(len(tables), width, squeeze=False)
    for row, (name, table) in enumerate(tables.items()):
        for column in range(width):
            panel = axes[row, column]
            if column >= len(table):
                panel.set_visible(False)
                continue
            metric = table.iloc[column]
            values = [metric["torch"], metric["jittor"]]
            bars = panel.bar([0, 1], np.nan_to_num(values), color=[BAR_COLORS["torch"], BAR_COLORS["jittor"]])
            panel.bar_label(bars, labels=["n/a" if np.isnan(value) else f"{value:.4g}" for value in values],
                            fontsize="small", padding=2)
            panel.set_xticks([0, 1], [FRAMEWORKS["torch"][0], FRAMEWORKS["jittor"][0]], fontsize="small")
            panel.set_title(f"{name}: {metric['metric']}" + (" (lower is better)" if metric["metric"] == "TER" else ""),
                            fontsize="medium")
            panel.margins(y=0.2)
            panel.grid(axis="y", alpha=0.3)
    figure.suptitle("Generation metrics, PyTorch and Jittor")
    save(figure, path)


def plot_side_by_side(path, table, title, xlabel, value_format):
    """Grouped horizontal bars, PyTorch above Jittor, one group per (dataset, phase) row of `table`, top down."""
    categories = [f"{dataset}: {phase}" for dataset, phase in zip(table["dataset"], table["phase"])]
    positions = np.arange(len(categories))
    figure = Figure(figsize=(9.0, 1.2 + 0.55 * len(categories)), layout="constrained")
    axes = figure.subplots()
    height = 0.38
    for offset, framework in ((-height / 2, "torch"), (height / 2, "jittor")):
        values = table[framework].to_numpy(dtype=float)
        bars = axes.barh(positions + offset, np.nan_to_num(values), height, color=BAR_COLORS[framework],
                         label=FRAMEWORKS[framework][0])
        axes.bar_label(bars, labels=["n/a" if np.isnan(value) else format(value, value_format) for value in values],
                       fontsize="small", padding=2)
    axes.set_yticks(positions, categories, fontsize="small")
    axes.invert_yaxis()
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.margins(x=0.12)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over their labels
    save(figure, path)
