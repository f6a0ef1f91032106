"""The report's section on the verdict of each pair of runs: the free-running gap against the float32 envelope,
the replayed segments, and where a trace of the first failing segment starts."""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from alignment.figures import save
from alignment.render import Bullets, Image, Paragraph, Section, Subheading, Table, number
from alignment.summary import verdict_sentence
from common_data.model.checkpoint import trainer_checkpoint_path
from common_data.util.paths import REPO_ROOT

# gpt2_ft.py's arguments that probe.py (and so `python -m alignment trace`) takes, by probe flag
TRACE_FLAGS = {"data": "train_data", "model_card": "model_card", "init_checkpoint": "init_checkpoint",
               "random_seed": "random_seed", "adapter": "adapter", "lora_dim": "lora_dim", "lora_alpha": "lora_alpha",
               "lora_targets": "lora_targets", "use_rslora": "use_rslora", "label_smooth": "label_smooth",
               "batch_size": "train_batch_size", "seq_len": "seq_len", "pad_multiple": "pad_multiple",
               "lr": "lr", "weight_decay": "weight_decay", "correct_bias": "correct_bias",
               "adam_epislon": "adam_epislon", "adam_beta1": "adam_beta1", "adam_beta2": "adam_beta2",
               "scheduler": "scheduler", "warmup_step": "warmup_step", "clip": "clip",
               "loraplus_lr_ratio": "loraplus_lr_ratio"}


def trace_command(segment, runs):
    """The `python -m alignment trace` command that traces `segment` from its saved state (from the shared initial
    state for segment 0)."""
    source = "torch" if segment.source == "both" else segment.source
    args = runs[source].records.get("run", {}).get("args", {})
    flags = []
    for flag, key in TRACE_FLAGS.items():
        value = args.get(key)
        if value is None or value is False:
            continue
        if value is True:
            flags.append(f"--{flag}")
            continue
        flags += [f"--{flag}", ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    if segment.folder is not None:
        flags += ["--trainer_checkpoint", str(trainer_checkpoint_path(runs[source].source, segment.start))]
    flags += ["--steps", str(segment.steps)]
    return f"python -m alignment trace --work-dir runs/trace_segment_{segment.start} -- {' '.join(flags)}"


def plot_verdict(path, title, comparison, envelope, tolerance):
    """|Δ loss| of the free runs at every step and per window, the envelope per window and its band, and each
    segment's |Δ|; exact matches sit on the bottom edge."""
    figure = Figure(figsize=(10, 5.2), layout="constrained")
    axes = figure.subplots()
    floor = tolerance / 1000
    curve = comparison.curves["step_loss"]
    axes.plot(curve["step"], np.maximum(curve["abs_delta"], floor), color="C0", alpha=0.35, linewidth=0.8,
              label="free runs, |Jittor − PyTorch| per step")
    test = comparison.verdict.envelope
    if test is not None:
        windows = test.windows
        edges = np.append(windows["first_step"].to_numpy() - 0.5, windows["last_step"].iloc[-1] + 0.5)
        axes.stairs(np.maximum(windows["gap_rms"], floor), edges, baseline=None, color="C0", linewidth=2,
                    label="free runs, rms per window")
        axes.stairs(np.maximum(windows["envelope_rms"], floor), edges, baseline=None, color="0.45", linewidth=2,
                    label=f"envelope ({envelope_label(envelope)}), rms per window")
        axes.stairs(windows["band"], edges, baseline=None, color="black", linestyle="--", linewidth=1.2,
                    label=f"band: {test.factor:g} x {test.scale:.3g} x the envelope's largest rms so far, "
                          "≥ the tolerance")
    elif envelope is not None:
        axes.plot(envelope.steps, np.maximum(np.abs(envelope.delta), floor), color="0.45", linewidth=0.8,
                  label=f"envelope ({envelope_label(envelope)})")
    for passed, color, label in ((True, "C2", "segments from a shared state, step-exact"),
                                 (False, "C3", "segments from a shared state, failing")):
        chosen = [segment for segment in comparison.verdict.segments if segment.passes(tolerance) == passed]
        for index, segment in enumerate(chosen):
            axes.plot(segment.curve["step"], np.maximum(segment.curve["abs_delta"], floor), color=color,
                      linestyle="none", marker="o", markersize=3, label=label if index == 0 else None)
    axes.axhline(tolerance, color="black", linestyle=":", linewidth=1.2, label=f"tolerance {tolerance:g}")
    axes.set_yscale("log")
    axes.set_ylim(bottom=floor * 0.8)
    axes.set_xlabel("training step")
    axes.set_ylabel("|Δ loss| (nats per token)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    figure.legend(fontsize="small", loc="outside lower center", ncol=2)
    save(figure, path)


def segment_rows(verdict, tolerance):
    return pd.DataFrame([{"segment": segment.name, "steps compared": f"{len(segment.curve)} / {segment.steps}",
                          "max |Δ loss|": number(segment.max_abs, ".2e"),
                          "step-exact": "yes" if segment.passes(tolerance) else "no"}
                         for segment in verdict.segments])


def envelope_label(envelope):
    """What the envelope's two PyTorch runs differ in, in a few words."""
    kind = envelope.record.get("kind", "one ulp")  # envelopes measured before the kind was recorded moved the base
    return "PyTorch vs PyTorch, " + ("products summed in another order" if kind == "summation order"
                                     else "base moved by one ulp")


def envelope_bullets(test, envelope):
    worst = (test.windows["gap_rms"] / test.windows["band"]).max()
    window = int(test.windows["last_step"].iloc[0] - test.windows["first_step"].iloc[0] + 1)
    record = envelope.record
    return Bullets((
        f"level: the gap's rms per window of {window} steps reaches at most {worst:.2f} of its band "
        f"({len(test.windows_over)} windows over); the band is {test.factor:g} x the envelope's rms x "
        f"{test.scale:.3g}, the ratio of the two gaps over the first window (the pair's own rounding)",
        f"growth over the run: {test.growth_gap:+.2f} decades, the envelope's {test.growth_envelope:+.2f} "
        f"(limit {test.growth_limit:+.2f})",
        f"sign: |mean Δ| / rms Δ = {test.bias_gap:.2f}, the envelope's {test.bias_envelope:.2f} "
        f"(limit {test.bias_limit:.2f})",
        f"envelope `{shown_path(envelope.path)}`: {record.get('perturbation', 'n/a')}; measured on "
        f"{record.get('machine', 'n/a')}, "
        f"{record.get('versions', 'n/a')}, commit {record.get('commit', 'n/a')}, {record.get('date', 'n/a')}",
    ))


def shown_path(path):
    """`path` relative to the repository when it lies in it (a report names its files the same on every machine)."""
    path = Path(path).resolve()
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def verdict_section(results, tolerance, figures_dir, figure_prefix):
    blocks = [Paragraph(
        "**step-exact**: every logged loss within the tolerance of the other framework's at the same step. "
        "**equivalent**: not step-exact, but every segment replayed from a shared state (the free runs' first steps, "
        "and Jittor restarted from PyTorch's saved trainer states) is step-exact, and the free-running gap stays "
        "inside the float32 envelope: two PyTorch runs that differ in rounding alone (every product summed in "
        "another order), the drift that rounding alone causes. **not equivalent**: a segment or the envelope test "
        "fails, or the evidence is missing.")]
    for result in results:
        verdict = result.comparison.verdict
        blocks += [Subheading(result.dataset), Paragraph(verdict_sentence(result))]
        if len(result.comparison.curves["step_loss"]):
            path = figures_dir / f"{figure_prefix}{result.dataset}_verdict.png"
            plot_verdict(path, f"{result.dataset}: the gap of the free runs, the envelope and the segments",
                         result.comparison, result.envelope, tolerance)
            blocks.append(Image(path, f"{result.dataset}: |Δ loss| per step of the free runs, the float32 envelope "
                                      "with its band, and the replayed segments"))
        if verdict.segments:
            blocks.append(Table(segment_rows(verdict, tolerance)))
        if verdict.envelope is not None:
            blocks.append(envelope_bullets(verdict.envelope, result.envelope))
        elif result.envelope is None:
            blocks.append(Paragraph("No float32 envelope given (`--envelope`)."))
        if verdict.first_failing is not None:
            runs = result.runs
            blocks.append(Paragraph("Trace the first failing segment, module by module, from its saved state: "
                                    f"`{trace_command(verdict.first_failing, runs)}`"))
    return Section("Verdict", blocks)
