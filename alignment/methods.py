"""The method comparison of `make compare`: adapter methods trained with one budget of steps, each in PyTorch and
in Jittor (scripts/compare.sh), side by side: trainable parameters, time per step, peak memory,
validation loss, generation metrics, and Jittor minus PyTorch.

A method's runs are `<runs>/torch_<method>` and `<runs>/jittor_<method>`, run folders of our trainers with the
pipeline's `scores.json` and `pred.txt` beside them.
"""
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from alignment.compare import DEFAULT_TOLERANCE, compare_predictions
from alignment.figures import BAR_COLORS, FRAMEWORKS, save
from alignment.render import Image, Paragraph, Section, Table, number, write_html, write_markdown
from alignment.runs import read_run
from alignment.scores import DATASET_METRICS, read_scores
from alignment.summary import SIDES, share_text, valid_loss_fall
from alignment.replay import cached_envelope
from alignment.verdict import judge
from common_data.training.runlog import read_metrics

TITLE = "Adapter methods on E2E: PyTorch and Jittor"
METRICS = DATASET_METRICS["e2e"]
MIB = 2 ** 20
# what each name of `make compare` trains (see scripts/compare.sh)
DESCRIPTIONS = {
    "lora": "LoRA (Hu et al. 2021)",
    "jelly": "JELLY, sequential then parallel LoRA",
    "dora": "DoRA: LoRA with a trained magnitude",
    "pissa": "PiSSA: LoRA started from W's principal singular triplets",
    "adalora": "AdaLoRA: SVD-form LoRA with a rank budget",
    "bitfit": "BitFit: the bias terms only",
    "full": "full fine-tuning",
    "rslora": "rsLoRA: LoRA scaled by alpha / sqrt(r)",
    "loraplus": "LoRA+: B at a higher learning rate",
}


def side_row(method, side, run, scores):
    """One method in one framework: its cost, its validation loss and its metrics."""
    record = run.records.get("run", {})
    steps = record.get("final_step") or math.nan
    memory = record.get("peak_memory") or {}
    fall = valid_loss_fall(run)
    row = {"method": method, "framework": SIDES[side], "steps": steps,
           "trainable parameters": record.get("trainable_parameters", math.nan),
           "ms per step": 1000 * record.get("phases_s", {}).get("train", math.nan) / steps,
           "peak memory (MiB)": memory.get("bytes", math.nan) / MIB,
           "valid loss at step 0": fall[0] if fall else math.nan,
           "valid loss at the end": fall[1] if fall else math.nan, "device": record.get("device", "unknown")}
    row.update({metric: (scores or {}).get(metric, math.nan) for metric in METRICS})
    return row


def load_method(folder, method):
    """(runs by side, scores by side or None, PredictionAgreement or None) of one method."""
    runs, scores, predictions = {}, {}, {}
    for side in SIDES:
        run_folder = Path(folder) / f"{side}_{method}"
        runs[side] = read_run(run_folder)
        scores[side] = read_scores(run_folder / "scores.json") if (run_folder / "scores.json").is_file() else None
        predictions[side] = run_folder / "pred.txt"
    agreement = None
    if all(path.is_file() for path in predictions.values()):
        agreement = compare_predictions(predictions["torch"], predictions["jittor"])
    return runs, scores, agreement


def kept_ranks_text(folder, method):
    """Whether AdaLoRA's rank allocations kept the same ranks in both frameworks; where they first differ, the
    relative gap between the last kept and the first dropped score in each (a near-tie when it is tiny); 'n/a' for
    other methods."""
    allocations = {side: [event for event in read_metrics(run / "metrics.jsonl")
                          if event["event"] == "rank_allocation"]
                   for side, run in ((side, Path(folder) / f"{side}_{method}") for side in SIDES)}
    if not any(allocations.values()):
        return "n/a"
    pairs = list(zip(allocations["torch"], allocations["jittor"]))
    differing = [(torch_event, jittor_event) for torch_event, jittor_event in pairs
                 if (torch_event["step"], torch_event["ranks"]) != (jittor_event["step"], jittor_event["ranks"])]
    if not differing and len(allocations["torch"]) == len(allocations["jittor"]):
        return f"identical at {len(pairs)} allocations"
    if not differing:
        return f"{len(allocations['torch'])} allocations in PyTorch, {len(allocations['jittor'])} in Jittor"
    first = differing[0]
    gaps = ", ".join(f"{SIDES[side]} {number(event.get('margin'), '.1e')}" for side, event in zip(SIDES, first))
    return (f"different at {len(differing)} of {len(pairs)} allocations, first at step {first[0]['step']} "
            f"(gap at the threshold: {gaps})")


def method_tables(folder, methods, tolerance=DEFAULT_TOLERANCE):
    """(per method and framework table, Jittor − PyTorch table per method, validation curves {method: {side: df}})."""
    rows, deltas, curves = [], [], {}
    for method in methods:
        runs, scores, agreement = load_method(folder, method)
        side_rows = {side: side_row(method, side, runs[side], scores[side]) for side in SIDES}
        rows.extend(side_rows.values())
        comparison = judge(runs["torch"], runs["jittor"], tolerance, envelope=cached_envelope(runs["torch"]))
        delta = {"method": method, "verdict": comparison.status,
                 "max |Δ loss|": comparison.headline.max_abs,
                 "identical beam outputs": share_text(agreement),
                 "AdaLoRA's kept ranks": kept_ranks_text(folder, method)}
        for column in ("valid loss at the end", *METRICS, "ms per step", "peak memory (MiB)"):
            delta[f"Δ {column}"] = side_rows["jittor"][column] - side_rows["torch"][column]
        deltas.append(delta)
        curves[method] = {side: runs[side].evals.dropna(subset=["step", "valid_loss"]) for side in SIDES}
    return pd.DataFrame(rows), pd.DataFrame(deltas), curves


def bar_panel(axes, table, column, title, value_format):
    """Grouped bars of `column`: one group per method, PyTorch and Jittor side by side."""
    methods = list(dict.fromkeys(table["method"]))
    positions = np.arange(len(methods))
    width = 0.4
    for offset, side in ((-width / 2, "torch"), (width / 2, "jittor")):
        values = table[table["framework"] == SIDES[side]].set_index("method").reindex(methods)[column]
        values = values.to_numpy(dtype=float)
        bars = axes.bar(positions + offset, np.nan_to_num(values), width, color=BAR_COLORS[side],
                        label=FRAMEWORKS[side][0])
        axes.bar_label(bars, labels=["n/a" if np.isnan(v) else format(v, value_format) for v in values],
                       fontsize="x-small", padding=1, rotation=90)
    axes.set_xticks(positions, methods, fontsize="small")
    axes.set_title(title)
    axes.margins(y=0.25)
    axes.grid(axis="y", alpha=0.3)


def plot_methods(path, table, curves):
    """Validation loss of every method over the steps, then BLEU, time per step and peak memory per method."""
    figure = Figure(figsize=(13, 8.5), layout="constrained")
    grid = figure.subplots(2, 2)
    loss = grid[0, 0]
    for index, (method, sides) in enumerate(curves.items()):
        for side, evals in sides.items():
            name, linestyle = FRAMEWORKS[side]
            loss.plot(evals["step"], evals["valid_loss"], color=f"C{index}", linestyle=linestyle, marker="o",
                      markersize=4, label=f"{method}, {name}")
    loss.set_xlabel("training step")
    loss.set_ylabel("validation loss (nats per token)")
    loss.set_title("Validation loss (PyTorch solid, Jittor dashed)")
    loss.grid(alpha=0.3)
    loss.legend(fontsize="x-small", ncol=2)
    bar_panel(grid[0, 1], table, "BLEU", "BLEU (official E2E scorer)", ".4f")
    bar_panel(grid[1, 0], table, "ms per step", "Training time per step (ms)", ".0f")
    bar_panel(grid[1, 1], table, "peak memory (MiB)", "Peak memory of training (MiB)", ".0f")
    grid[0, 1].legend(loc="upper left", fontsize="small")
    figure.suptitle("Adapter methods on the embedded E2E default, one budget of steps")
    save(figure, path)


def display(table, formats):
    shown = table.copy()
    for column, spec in formats.items():
        if column in shown:
            shown[column] = [number(value, spec) for value in shown[column]]
    return shown


def build_methods_report(folder, methods, out_md, out_html, figures_dir, tolerance=DEFAULT_TOLERANCE, prefix=""):
    """Write the method comparison (Markdown, HTML, figure); returns (per-framework table, delta table)."""
    table, deltas, curves = method_tables(folder, methods, tolerance)
    figure_path = Path(figures_dir) / f"{prefix}methods.png"
    plot_methods(figure_path, table, curves)
    metric_formats = dict.fromkeys(METRICS, ".4f")
    devices = "; ".join(f"{SIDES[side]} on {', '.join(sorted(set(table[table.framework == SIDES[side]].device)))}"
                        for side in SIDES)
    shown = display(table.drop(columns="device"), {"steps": ".0f", "trainable parameters": ",.0f", "ms per step": ".0f", "peak memory (MiB)": ".0f",
                            "valid loss at step 0": ".4f", "valid loss at the end": ".4f", **metric_formats})
    delta_formats = {column: ".2e" for column in deltas if column.startswith("Δ ")}
    delta_formats.update({"max |Δ loss|": ".2e", "Δ ms per step": "+.0f", "Δ peak memory (MiB)": "+.0f"})
    listed = ", ".join(f"`{method}` ({DESCRIPTIONS.get(method, method)})" for method in methods)
    sections = [
        Section("Methods", [
            Paragraph(f"Runs in `{folder}`: {listed}. Every method trains the same base with the same data, batch "
                      "order and budget of steps, in PyTorch and in Jittor, then decodes the sampled E2E test set "
                      "with beam search and is scored by the official E2E scorer. Time per step is the training "
                      "phase's wall time over its steps (validation excluded); peak memory is the process's peak "
                      "(resident set on a CPU, the allocator's peak on a GPU). `make compare` runs a method's two "
                      "frameworks at once, each on half the cores (PARALLEL=0: one after the other on all of them); "
                      f"the runs' devices: {devices}."),
            Table(shown), Image(figure_path, "Validation loss, BLEU, time per step and peak memory per method")]),
        Section("Jittor − PyTorch", [
            Paragraph(f"Per method: the verdict of the training curves (tolerance {tolerance:g} nats per token at "
                      "every logged step), the largest |Δ| of the logged training loss, the share of identical beam "
                      "outputs, and Jittor's value minus PyTorch's for the validation loss, each metric, the time "
                      "per step and the peak memory."),
            Table(display(deltas, delta_formats))]),
    ]
    write_markdown(out_md, TITLE, sections)
    write_html(out_html, TITLE, sections)
    return table, deltas
