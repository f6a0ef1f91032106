"""`python -m alignment trace`: run the recorders (each in its framework's environment) and report where the
runs part, module by module (the comparison is alignment.trace); and the trace's section of the alignment report,
read back from the trace folder."""
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from alignment import trace
from alignment.figures import save
from alignment.render import (
    Bullets,
    Image,
    Paragraph,
    Section,
    Subheading,
    Table,
    write_html,
    write_markdown,
)
from common_data.util.atomic import atomic_open
from common_data.model.checkpoint import load_tensors
from common_data.util.paths import REPO_ROOT
from common_data.trace import names

RECORDERS = {"torch": "NLG_pytorch/src/trace_hooks.py", "jittor": "NLG_jittor/src/trace_hooks.py"}
MANIFEST = "trace.json"  # in the trace folder: the wall time of each run, by the label its file is named after


@dataclass(frozen=True)
class Run:
    label: str
    framework: str
    extra: tuple = ()


@dataclass
class Trace:
    run: Run
    arrays: dict
    metadata: dict
    seconds: float


@dataclass
class Comparison:
    traces: dict  # label -> Trace
    problems: list  # pre-flight: what differs between the runs' inputs
    stats: dict  # key -> trace.Stats of Jittor against PyTorch
    found: trace.Verdict
    isolated: dict | None  # key -> trace.Stats of the --isolate run

    @property
    def n_layer(self):
        return self.traces["torch"].metadata["n_layer"]

    @property
    def step(self):
        """The step shown: the first with a finding, else the first."""
        return self.found.step or 1


def run_recorder(run, recorder_args, folder):
    """One recorder in its framework's environment, as a separate process; its trace."""
    output = Path(folder) / f"{run.label}.safetensors"
    env = {key: value for key, value in os.environ.items() if key not in ("NLG_FRAMEWORK", "VIRTUAL_ENV")}
    command = [str(REPO_ROOT / "environments" / "run"), run.framework, "python", str(REPO_ROOT / RECORDERS[run.framework]),
               *recorder_args, *run.extra, "--output", str(output)]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"the {run.label} trace failed ({' '.join(command)}):\n{result.stderr[-3000:]}")
    arrays, metadata = load_tensors(output)
    return Trace(run, arrays, metadata, seconds)


def planned_runs(repeat, folder, isolate):
    runs = [Run("torch", "torch"), Run("torch64", "torch", ("--float64",)), Run("jittor", "jittor")]
    if repeat:
        runs += [Run("torch_again", "torch"), Run("jittor_again", "jittor")]
    if isolate:
        runs.append(Run("jittor_isolated", "jittor", ("--isolate", str(Path(folder) / "torch.safetensors"))))
    return runs


def number(value):
    return f"{value:.3g}"


def stats_row(stats):
    return {"max abs": number(stats.max_abs), "max rel": number(stats.max_rel), "mean abs": number(stats.mean_abs),
            "cosine": f"{stats.cosine:.9f}", "within tol": f"{100 * stats.within:.1f}%",
            "bit-exact": "yes" if stats.bit_exact else "no", "tolerance": number(stats.tolerance),
            "torch vs f64": number(stats.torch_vs_float64), "Jittor vs f64": number(stats.jittor_vs_float64),
            "over": f"**{stats.side}**" if stats.over else ""}


def status(name, finding, stats, key):
    if key not in stats or not stats[key].over:
        return "ok"
    return "introduced here" if finding is not None and finding.name == name and finding.introduced else "inherited"


def module_table(stats, step, n_layer, phase, finding):
    rows = []
    for name in names.module_order(n_layer):
        key = names.key(step, phase, name, "out")
        if key in stats:
            rows.append({"module": name, **stats_row(stats[key]), "status": status(name, finding, stats, key)})
    return pd.DataFrame(rows)


def update_table(stats, step, parameters, finding):
    rows = []
    for parameter in parameters:
        for phase in ("grad", "exp_avg", "exp_avg_sq", "param"):
            key = names.key(step, phase, parameter)
            rows.append({"parameter": parameter, "tensor": phase, **stats_row(stats[key]),
                         "status": status(parameter, finding, stats, key)})
    key = names.key(step, "lr", "lr")
    rows.append({"parameter": "lr", "tensor": "lr", **stats_row(stats[key]), "status": status("lr", finding, stats, key)})
    return pd.DataFrame(rows)


def plot_errors(path, stats, step, n_layer, title, found=None):
    """Error per module along the network, forward (outputs) and backward (gradients of the outputs); a dotted
    line at the module each pass's verdict names."""
    modules = names.module_order(n_layer)
    figure = Figure(figsize=(min(max(8.0, 0.28 * len(modules)), 18.0), 7.5), layout="constrained")
    axes = figure.subplots(2, 1, sharex=True)
    floor = 1e-14
    for axis, phase in zip(axes, ("forward", "backward")):
        picked = [stats.get(names.key(step, phase, name, "out")) for name in modules]
        x = np.arange(len(modules))

        def series(field, picked=picked):
            return [max(getattr(s, field), floor) if s is not None else np.nan for s in picked]

        axis.semilogy(x, series("max_abs"), "o-", color="C3", label="|Jittor - PyTorch| (max abs)")
        axis.semilogy(x, series("torch_vs_float64"), ".--", color="C0", label="PyTorch float32 vs float64")
        axis.semilogy(x, series("jittor_vs_float64"), ".--", color="C2", label="Jittor vs PyTorch float64")
        axis.semilogy(x, series("tolerance"), "-", color="0.5", drawstyle="steps-mid", label="tolerance")
        finding = getattr(found, phase, None)
        if finding is not None and finding.name in modules:
            position = modules.index(finding.name)
            right = position < len(modules) / 2
            axis.axvline(position, color="C3", linestyle=":")
            axis.annotate(f"{finding.name}: {'introduced here' if finding.introduced else 'inherited'}",
                          (position, 1.0), xycoords=("data", "axes fraction"),
                          xytext=(4 if right else -4, -12), ha="left" if right else "right",
                          textcoords="offset points", color="C3", fontsize=8,
                          bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        axis.set_ylabel("max abs error, " + ("gradient of the output" if phase == "backward" else "output"))
        axis.set_title(f"{phase} pass, step {step} (0 is drawn at {floor:g})")
        axis.grid(True, which="major", alpha=0.3)
    axes[-1].set_xticks(np.arange(len(modules)), modules, rotation=90, fontsize=7 if len(modules) < 64 else 5)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=8)
    figure.suptitle(title)
    save(figure, path)


def beam_rows(torch32, jittor):
    rows = []
    for context in trace.beam_contexts(torch32):
        found = trace.compare_beam(torch32, jittor, context)
        if found.step == 0:
            rows.append({"context": context, "first differing step": "none",
                         "max |score diff|": number(found.max_score_diff), "tokens": "", "margin": "", "reading": ""})
            continue
        rows.append({"context": context, "first differing step": f"{found.step} (rank {found.rank})",
                     "max |score diff|": number(found.max_score_diff),
                     "tokens": f"PyTorch {found.torch_id}, Jittor {found.jittor_id}", "margin": number(found.margin),
                     "reading": "near-tie: noise" if found.near_tie else "**a real gap: a bug**"})
    return pd.DataFrame(rows)


def versions_text(metadata):
    versions = metadata["versions"]
    return ", ".join(f"{key} {value}" for key, value in versions.items() if key != "name" and value)


def build_sections(comparison, figure_path):
    traces, stats, found, problems = comparison.traces, comparison.stats, comparison.found, comparison.problems
    reference = traces["torch"]
    n_layer = comparison.n_layer
    parameters = trace.trained_parameters(reference.arrays)
    verdict_blocks = [Paragraph(sentence) for sentence in verdict_sentences(found, problems)]
    runs = pd.DataFrame([{"run": t.run.label, "framework": t.metadata["framework"], "dtype": t.metadata["dtype"],
                          "versions": versions_text(t.metadata), "wall time (s)": f"{t.seconds:.1f}"}
                         for t in traces.values()])
    preflight = [Table(runs), Bullets(tuple(problems)) if problems else Paragraph(
        "Every run has the same arguments (but its output file, --float64 and --isolate), the same batches (token "
        "ids, targets, loss masks: bit-exact) and bit-exact step-0 weights (SHA-256 of every tensor).")]
    sections = [Section("Verdict", verdict_blocks), Section("Pre-flight", preflight)]
    if problems:
        return sections
    step = comparison.step
    sections.append(Section("Tolerance", [Paragraph(
        f"A tensor is over the tolerance when its largest |Jittor - PyTorch| exceeds {trace.SAFETY:g} x its noise "
        f"floor + {trace.FLOOR_ROUNDINGS:g} float32 roundings of its scale. The noise floor is the largest "
        "|PyTorch float32 - PyTorch float64| of that tensor (and, with --repeat, the largest difference of a "
        "framework with itself). 'over' names the side further from the float64 run.")]))
    sections.append(Section("Error along the network", [Image(figure_path, f"error per module, step {step}")]))
    sections.append(Section(f"Forward pass, step {step}", [Table(module_table(stats, step, n_layer, "forward",
                                                                                found.forward))]))
    sections.append(Section(f"Backward pass, step {step}", [Paragraph("Gradient of the loss with respect to each "
                                                                       "module's output."),
                                                             Table(module_table(stats, step, n_layer, "backward",
                                                                                found.backward))]))
    sections.append(Section(f"Update, step {step}", [Table(update_table(stats, step, parameters, found.update))]))
    if comparison.isolated is not None:
        sections.append(Section("Isolated (--isolate)", isolate_blocks(comparison)))
    if trace.beam_contexts(reference.arrays):
        sections.append(Section("Decoding", [Paragraph(
            "Beam search from each context alone, after the traced steps; per search step the top candidates "
            "(score and id) of both frameworks. The margin is PyTorch's score gap between its candidate and "
            "Jittor's at the first differing rank."), Table(beam_rows(reference.arrays, traces["jittor"].arrays))]))
    return sections


def isolate_blocks(comparison):
    blocks = [Paragraph("Every Jittor module got the input PyTorch's received and passed PyTorch's output on; in the "
                        "backward pass every module got PyTorch's gradient of its output and passed PyTorch's "
                        "gradient of its input back; every update started from PyTorch's gradients, moments and "
                        "parameters. Each difference is charged to the code that made it.")]
    for step, own in isolated_errors(comparison).items():
        blocks.append(Subheading(f"step {step}"))
        blocks.append(Bullets(tuple(f"{phase}: {', '.join(found) if found else 'none over the tolerance'}"
                                    for phase, found in own.items())))
    return blocks


def isolated_errors(comparison):
    """{step: {pass: [names over the tolerance by themselves]}} of the --isolate run."""
    arrays = comparison.traces["torch"].arrays
    parameters = trace.trained_parameters(arrays)
    return {step: trace.own_errors(comparison.isolated, step, comparison.n_layer, parameters)
            for step in range(1, trace.trace_steps(arrays) + 1)}


def verdict_sentences(found, problems):
    if problems:
        return [("**Pre-flight check failed**: the runs do not start from the same inputs, so nothing was compared "
                 "(see Pre-flight).")]
    if not found.findings:
        return ["**No module over the tolerance**: forward, backward and update agree at every traced step."]
    return [f"First divergence at step {found.step}."] + [finding.sentence() for finding in found.findings]


def compare_traces(traces):
    """The pre-flight check of the traces {label: Trace} and, when it passes, Jittor against PyTorch."""
    reference = (traces["torch"].arrays, traces["torch"].metadata)
    problems = [problem for label, t in traces.items() if label != "torch"
                for problem in trace.preflight(reference, (t.arrays, t.metadata), label)]
    if problems:
        return Comparison(traces, problems, {}, trace.Verdict(0, None, None, None), None)
    repeats = [(traces[label].arrays, traces[f"{label}_again"].arrays) for label in ("torch", "jittor")
               if f"{label}_again" in traces]
    torch32, torch64 = traces["torch"].arrays, traces["torch64"].arrays
    stats = trace.compare(traces["jittor"].arrays, torch32, torch64, repeats)
    n_layer = traces["torch"].metadata["n_layer"]
    found = trace.verdict(stats, trace.trace_steps(torch32), n_layer, trace.trained_parameters(torch32))
    isolated = (trace.compare(traces["jittor_isolated"].arrays, torch32, torch64, repeats)
                if "jittor_isolated" in traces else None)
    return Comparison(traces, [], stats, found, isolated)


def read_traces(folder):
    """The traces that `python -m alignment trace` wrote into `folder` (its MANIFEST names them)."""
    traces = {}
    for label, seconds in json.loads((Path(folder) / MANIFEST).read_text())["seconds"].items():
        arrays, metadata = load_tensors(Path(folder) / f"{label}.safetensors")
        traces[label] = Trace(Run(label, metadata["framework"]), arrays, metadata, seconds)
    return traces


def run_trace(recorder_args, folder, out_md, out_html, figures_dir, repeat=False, isolate=False, prefix="trace_"):
    """Run the traces, compare them, write the report; the Comparison."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    traces = {}
    for run in planned_runs(repeat, folder, isolate):
        traces[run.label] = run_recorder(run, recorder_args, folder)
    with atomic_open(folder / MANIFEST) as handle:
        json.dump({"seconds": {label: t.seconds for label, t in traces.items()}}, handle, indent=1)
    comparison = compare_traces(traces)
    figure_path = Path(figures_dir) / f"{prefix}errors.png"
    if not comparison.problems:
        plot_errors(figure_path, comparison.stats, comparison.step, comparison.n_layer,
                    "Jittor against PyTorch, module by module", comparison.found)
    sections = build_sections(comparison, figure_path)
    write_markdown(out_md, "Layer-by-layer trace: PyTorch against Jittor", sections)
    write_html(out_html, "Layer-by-layer trace: PyTorch against Jittor", sections)
    return comparison


def subtree(name, n_layer):
    """A trace name and the names of every module inside it."""
    return [name] + [inner for child in names.children(name, n_layer) for inner in subtree(child, n_layer)]


def where(key):
    _, phase, name, item = names.split_key(key)
    if phase in ("forward", "backward"):
        return f"{name} {item}"
    return name if name == phase else f"{phase} of {name}"


def ratio_text(stats, keys):
    """The largest error / tolerance among `keys` (bold over 1) and where it is."""
    compared = [(stats[key].ratio, key) for key in keys if key in stats]
    if not compared:
        return "n/a"
    ratio, key = max(compared)
    return f"**{number(ratio)}** ({where(key)})" if ratio > 1 else f"{number(ratio)} ({where(key)})"


def short_table(comparison):
    """Per top-level module (and everything inside it) the largest error / tolerance in each pass."""
    step, n_layer, stats = comparison.step, comparison.n_layer, comparison.stats
    findings = {finding.phase: finding for finding in comparison.found.findings}
    rows = []
    for top in names.children(names.ROOT, comparison.n_layer):
        if top == names.LOSS:
            continue
        inside = subtree(top, n_layer)
        row = {"module": top}
        for phase in ("forward", "backward"):
            row[f"{phase}: max error / tolerance (where)"] = ratio_text(
                stats, [names.key(step, phase, name, item) for name in inside for item in ("in", "out")])
        row["verdict"] = "; ".join(f"{phase}: {finding.name} ({'introduced here' if finding.introduced else 'inherited'})"
                                   for phase, finding in findings.items() if finding.name in inside) or "ok"
        rows.append(row)
    return pd.DataFrame(rows)


def described_run(metadata):
    args = metadata["args"]
    adapter = f"{args['adapter']} r {args['lora_dim']}" if args.get("lora_dim") else args["adapter"]
    return (f"{args['model_card']}, {adapter}, {args['steps']} step(s) of {args['batch_size']} rows x "
            f"{args['seq_len']} tokens from `{args['data']}`")


def report_section(folder, figures_dir, prefix=""):
    """The alignment report's section on the trace in `folder` (a --work-dir of `python -m alignment trace`):
    the verdict, the largest error per top-level module and the figure of the error per module."""
    comparison = compare_traces(read_traces(folder))
    reference = comparison.traces["torch"]
    seconds = sum(t.seconds for t in comparison.traces.values())
    blocks = [Paragraph(f"`python -m alignment trace` in `{folder}`: {described_run(reference.metadata)}; runs "
                        f"{', '.join(comparison.traces)} ({seconds:.0f} s together). Its own report has every "
                        "module, the update and decoding.")]
    blocks += [Paragraph(sentence) for sentence in verdict_sentences(comparison.found, comparison.problems)]
    if comparison.problems:
        return Section("Layer-by-layer trace", [*blocks, Bullets(tuple(comparison.problems))])
    step = comparison.step
    figure_path = Path(figures_dir) / f"{prefix}trace_errors.png"
    plot_errors(figure_path, comparison.stats, step, comparison.n_layer, "Jittor against PyTorch, module by module",
                comparison.found)
    parameters = trace.trained_parameters(reference.arrays)
    update_keys = [names.key(step, "lr", "lr")] + [names.key(step, phase, parameter) for parameter in parameters
                                                   for phase in ("grad", *trace.UPDATE_PHASES[1:])]
    blocks += [Paragraph(f"Step {step}: the largest |Jittor - PyTorch| / tolerance of each top-level module and "
                         "the modules inside it (over 1: over the tolerance); of the gradients and the update, "
                         f"{ratio_text(comparison.stats, update_keys)}."),
               Table(short_table(comparison)),
               Image(figure_path, f"error per module along the network, forward and backward, step {step}")]
    if comparison.isolated is not None:
        blocks.append(Bullets(tuple(
            f"isolated, step {step}: " + "; ".join(f"{phase}: {', '.join(found) or 'none'}"
                                                   for phase, found in own.items())
            for step, own in isolated_errors(comparison).items())))
    return Section("Layer-by-layer trace", blocks)
