"""Assemble the alignment report of PyTorch and Jittor runs, one dataset at a time.

Every section is always there; where an input is missing the section says which one.
"""
import dataclasses
from pathlib import Path

import pandas as pd

from alignment import replay, trace_report
from alignment.compare import DEFAULT_TOLERANCE, compare_predictions
from alignment.figures import plot_loss_curves, plot_side_by_side
from alignment.render import Bullets, Image, Paragraph, Section, Subheading, Table, number, write_html, write_markdown
from alignment.resources import resource_tables
from alignment.run_log import empty_run
from alignment.runs import read_run
from alignment.samples import samples_section
from alignment.scores import read_scores
from alignment.summary import SERIES_NAMES, SIDES, share_text, step_text, summary_section
from alignment.verdict import judge, read_envelope
from alignment.verdict_report import verdict_section
from common_data.cli.verdict_args import DEFAULT_ENVELOPE_FACTOR

TITLE = "Alignment report: PyTorch vs Jittor"


@dataclasses.dataclass
class DatasetInputs:
    """The files to compare for one dataset; a path left None was not given.

    A run is a run folder (metrics.jsonl + run.json) or a console log; scores are `nlg-eval --json`
    outputs; predictions are decoded text files, one output per line; envelope is the float32 envelope of the
    runs' recipe (`python -m alignment verify`); test_input is the formatted test file (context, completion per row)
    that the predictions follow, for the samples.
    """
    dataset: str
    torch_run: Path | None = None
    jittor_run: Path | None = None
    torch_pred: Path | None = None
    jittor_pred: Path | None = None
    torch_scores: Path | None = None
    jittor_scores: Path | None = None
    envelope: Path | None = None
    test_input: Path | None = None  # the formatted test file the predictions follow (samples)


@dataclasses.dataclass
class DatasetResult:
    inputs: DatasetInputs
    runs: dict  # side -> RunLog (an empty one when the run is missing)
    comparison: object  # RunComparison
    scores: dict  # side -> {metric: value} or None
    predictions: object  # PredictionAgreement or None
    missing: dict  # kind ('run', 'scores', 'predictions') -> ["PyTorch run: not given", ...]
    loss_figure: Path | None
    envelope: object = None  # alignment.verdict.Envelope

    @property
    def dataset(self):
        return self.inputs.dataset


def load_dataset(inputs, tolerance, figure_path, envelope_factor=DEFAULT_ENVELOPE_FACTOR):
    """Read and compare everything given for one dataset; draw its loss curves when there are any."""
    missing = {"run": [], "scores": [], "predictions": []}

    def load(side, kind, reader):
        path = getattr(inputs, f"{side}_{'pred' if kind == 'predictions' else kind}")
        if path is None:
            missing[kind].append(f"{SIDES[side]} {kind}: not given")
            return None
        if not Path(path).exists():
            missing[kind].append(f"{SIDES[side]} {kind}: `{path}` does not exist")
            return None
        return reader(path)

    runs = {side: load(side, "run", read_run) or empty_run(getattr(inputs, f"{side}_run") or "-") for side in SIDES}
    scores = {side: load(side, "scores", read_scores) for side in SIDES}
    prediction_paths = {side: load(side, "predictions", Path) for side in SIDES}
    predictions = None
    if all(prediction_paths.values()):
        predictions = compare_predictions(prediction_paths["torch"], prediction_paths["jittor"])
    envelope = envelope_for(inputs.envelope, runs["torch"], missing)
    comparison = judge(runs["torch"], runs["jittor"], tolerance, envelope=envelope, factor=envelope_factor)
    has_curves = any(len(run.steps) or len(run.evals) for run in runs.values())
    if has_curves:
        plot_loss_curves(figure_path, f"{inputs.dataset}: loss of PyTorch and Jittor runs", runs["torch"],
                         runs["jittor"], comparison)
    return DatasetResult(inputs, runs, comparison, scores, predictions, missing, figure_path if has_curves else None,
                         envelope)


def envelope_for(path, torch_run, missing):
    """The Envelope at `path`, else the one `python -m alignment verify` keeps for runs of the PyTorch run's
    arguments; None (with a note in `missing` for a path that does not exist) when there is none."""
    if path is None:
        return replay.cached_envelope(torch_run)
    if not Path(path).is_file():
        missing["run"].append(f"envelope: `{path}` does not exist")
        return None
    return read_envelope(path)


def curves_section(results):
    blocks = []
    for result in results:
        blocks.append(Subheading(result.dataset))
        if result.loss_figure is None:
            blocks.append(Paragraph("No loss curves: " + ("; ".join(result.missing["run"]) or
                                                         "neither run logged a training or validation loss") + "."))
            continue
        blocks.append(Image(result.loss_figure, f"{result.dataset}: loss curves of both runs (top) and their "
                                                "difference at matched steps (bottom)"))
        rows = [{"series": SERIES_NAMES[delta.series], "matched steps": str(delta.matched),
                 "max abs Δ": number(delta.max_abs, ".3e"), "at step": step_text(delta.max_at_step),
                 "mean abs Δ": number(delta.mean_abs, ".3e"),
                 "first step over tolerance": step_text(delta.first_over_step)}
                for delta in result.comparison.deltas.values()]
        blocks.append(Table(pd.DataFrame(rows)))
        if result.missing["run"]:
            blocks.append(Paragraph("Missing: " + "; ".join(result.missing["run"]) + "."))
    return Section("Loss curves", blocks)


def outputs_section(results):
    blocks = [Paragraph("Beam-search outputs compared line by line (surrounding whitespace ignored); a line only "
                        "one file has counts as different.")]
    for result in results:
        blocks.append(Subheading(result.dataset))
        agreement = result.predictions
        if agreement is None:
            blocks.append(Paragraph("Not compared: " + "; ".join(result.missing["predictions"]) + "."))
            continue
        blocks.append(Paragraph(f"Identical outputs: {share_text(agreement)}; PyTorch file "
                                f"{agreement.torch_lines} lines, Jittor file {agreement.jittor_lines} lines."))
        if agreement.first_difference is not None:
            line, torch_text, jittor_text = agreement.first_difference
            blocks.append(Bullets((f"first difference, line {line}:",
                                   f"PyTorch: `{torch_text}`" if torch_text is not None else "PyTorch: (no line)",
                                   f"Jittor: `{jittor_text}`" if jittor_text is not None else "Jittor: (no line)")))
    return Section("Beam outputs", blocks)


def resource_section(title, table, unit, spec, figure_path, results, measured):
    if table.empty:
        lacking = [f"{result.dataset} {SIDES[side]} (`{run.source}`)" for result in results
                   for side, run in result.runs.items() if not run.records]
        return Section(title, [Paragraph(f"No {title.lower()} recorded: no run records (run.json) for "
                                         + (", ".join(lacking) or "any run") + ".")])
    display = pd.DataFrame({
        "dataset": table["dataset"], "phase": table["phase"], f"PyTorch ({unit})": table["torch"].map(
            lambda value: number(value, spec)),
        f"Jittor ({unit})": table["jittor"].map(lambda value: number(value, spec)),
        "Jittor / PyTorch": table["ratio"].map(lambda value: number(value, ".3f"))})
    if measured:
        display["measured (PyTorch / Jittor)"] = table["measured"]
    plot_side_by_side(figure_path, table, f"{title}: PyTorch vs Jittor", f"{title.lower()} ({unit})", spec)
    return Section(title, [Table(display), Image(figure_path, f"{title} per dataset and phase")])


def describe_process(run):
    """'framework on device (status)' from a run's main record, e.g. 'name=torch, torch=2.13.0 on cpu (finished)'."""
    record = run.records.get("run") or next(iter(run.records.values()), None)
    if record is None:
        return "n/a"
    framework = record.get("framework", "n/a")
    if isinstance(framework, dict):
        framework = ", ".join(f"{key}={value}" for key, value in framework.items())
    return f"{framework} on {record.get('device', 'n/a')} ({record.get('status', 'no status')})"


def inputs_section(results):
    rows, notes = [], []
    for result in results:
        for side, name in SIDES.items():
            run = result.runs[side]
            rows.append({"dataset": result.dataset, "side": name,
                         "run": str(getattr(result.inputs, f"{side}_run") or "not given"),
                         "records": ", ".join(sorted(run.records)) or "none", "framework": describe_process(run),
                         "steps / evals / checkpoints": f"{len(run.steps)} / {len(run.evals)} / {len(run.checkpoints)}",
                         "predictions": str(getattr(result.inputs, f"{side}_pred") or "not given"),
                         "scores": str(getattr(result.inputs, f"{side}_scores") or "not given")})
            notes += [f"{result.dataset}: {note}" for note in run.notes]
        notes += [f"{result.dataset}: {text}" for texts in result.missing.values() for text in texts]
    blocks = [Table(pd.DataFrame(rows))]
    blocks.append(Bullets(tuple(notes)) if notes else Paragraph("Every input was found and read in full."))
    return Section("Inputs", blocks)


def build_report(datasets, out_md, out_html, figures_dir, tolerance=DEFAULT_TOLERANCE, figure_prefix="",
                 trace_dir=None, envelope_factor=DEFAULT_ENVELOPE_FACTOR):
    """Compare each DatasetInputs, draw the figures into `figures_dir` and write the report; returns the results.
    trace_dir: a --work-dir of `python -m alignment trace`, reported in a section of its own."""
    figures_dir = Path(figures_dir)
    results = [load_dataset(inputs, tolerance, figures_dir / f"{figure_prefix}{inputs.dataset}_loss_curves.png",
                            envelope_factor) for inputs in datasets]
    runtime, memory = resource_tables([(result.dataset, result.runs["torch"], result.runs["jittor"])
                                       for result in results])
    sections = [
        summary_section(results, tolerance, figures_dir, figure_prefix),
        verdict_section(results, tolerance, figures_dir, figure_prefix),
        curves_section(results),
        outputs_section(results),
        samples_section(results),
        *([trace_report.report_section(trace_dir, figures_dir, figure_prefix)] if trace_dir is not None else []),
        resource_section("Peak memory", memory, "MiB", ".1f", figures_dir / f"{figure_prefix}peak_memory.png",
                         results, measured=True),
        resource_section("Runtime", runtime, "s", ".4g", figures_dir / f"{figure_prefix}runtime.png", results,
                         measured=False),
        inputs_section(results),
    ]
    write_markdown(out_md, TITLE, sections)
    write_html(out_html, TITLE, sections)
    return results
