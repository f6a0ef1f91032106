"""The report's opening section: one row per dataset, the loss curves of every dataset side by side, the
generation metrics as bars and as tables."""
import math

import pandas as pd

from alignment.figures import plot_loss_panels, plot_metric_bars
from alignment.render import Bullets, Image, Paragraph, Section, Subheading, Table, number
from alignment.scores import metrics_table

SIDES = {"torch": "PyTorch", "jittor": "Jittor"}
SERIES_NAMES = {"step_loss": "training loss at every step", "loss": "training loss",
                "avg_loss": "training loss, running mean", "valid_loss": "validation loss"}
HEADLINE_METRIC = "BLEU"


def step_text(step):
    return "none" if step is None else str(step)


def verdict_sentence(result, emphasis="**"):
    """The verdict and its reason, then how far the runs are apart; `emphasis` wraps the lead (Markdown bold in the
    report, nothing on a console)."""
    comparison = result.comparison
    lead = f"{emphasis}{result.dataset}: {comparison.status}{emphasis} —"
    if comparison.status == "not comparable":
        reasons = "; ".join(result.missing["run"]) or "the two runs share no logged step"
        return f"{lead} no matched steps ({reasons})."
    text = f"{lead} {comparison.verdict.reason}"
    head = comparison.headline
    name = SERIES_NAMES[head.series]
    if not head.matched:
        return text
    if head.max_at_step is None:
        text += f" The {name} is identical at all {head.matched} matched steps."
    else:
        text += (f" Over {head.matched} matched steps the {name} differs by at most {number(head.max_abs, '.3e')} "
                 f"(step {head.max_at_step}), {number(head.mean_abs, '.3e')} on average.")
    over = [f"{SERIES_NAMES[delta.series]} from step {delta.first_over_step}"
            for delta in comparison.deltas.values() if delta.first_over_step is not None]
    tolerance = f"the tolerance {comparison.tolerance:g}"
    text += f" Past {tolerance}: {'; '.join(over)}." if over else f" Nothing is past {tolerance}."
    if comparison.epoch_mismatches:
        text += (f" {comparison.epoch_mismatches} matched steps fall in different epochs of the two runs: "
                 "they do not walk the data alike (another batch size or data order), so step-by-step "
                 "agreement cannot be expected.")
    return text


def share_text(predictions):
    if predictions is None:
        return "n/a"
    longest = max(predictions.torch_lines, predictions.jittor_lines)
    return f"{predictions.identical}/{longest} ({100 * predictions.share:.2f}%)"


def valid_loss_fall(run):
    """(valid loss at step 0, at the last evaluation, fall in % of the first) or None without a step-0 evaluation."""
    evals = run.evals.dropna(subset=["step", "valid_loss"]).drop_duplicates("step", keep="last").sort_values("step")
    if evals.empty or int(evals["step"].iloc[0]) != 0 or len(evals) < 2:
        return None
    first, last = float(evals["valid_loss"].iloc[0]), float(evals["valid_loss"].iloc[-1])
    return first, last, 100 * (first - last) / first


def fall_text(run):
    fall = valid_loss_fall(run)
    if fall is None:
        return "n/a (no step-0 evaluation)"
    first, last, percent = fall
    return f"{first:.3f} → {last:.3f} (−{percent:.1f}%)" if percent >= 0 else f"{first:.3f} → {last:.3f} (+{-percent:.1f}%)"


def metric_frame(result):
    scores = result.scores
    if all(value is None for value in scores.values()):
        return None
    return metrics_table(scores["torch"] or {}, scores["jittor"] or {}, result.dataset)


def summary_row(result):
    head = result.comparison.headline
    row = {"dataset": result.dataset, "verdict": result.comparison.status, "matched steps": str(head.matched),
           "max abs Δ loss": number(head.max_abs, ".3e"), "at step": step_text(head.max_at_step),
           "identical beam outputs": share_text(result.predictions)}
    for side, name in SIDES.items():
        row[f"valid loss, step 0 → end ({name})"] = fall_text(result.runs[side])
    table = metric_frame(result)
    headline = None if table is None else table.loc[table["metric"] == HEADLINE_METRIC]
    for side, name in SIDES.items():
        value = math.nan if headline is None or headline.empty else float(headline[side].iloc[0])
        row[f"{HEADLINE_METRIC} ({name})"] = number(value, ".4f")
    return row


def metric_blocks(result):
    table = metric_frame(result)
    if table is None:
        return [Paragraph("No generation metrics: " + "; ".join(result.missing["scores"]) + ".")]
    blocks = [Table(pd.DataFrame({
        "metric": table["metric"], "PyTorch": table["torch"].map(number), "Jittor": table["jittor"].map(number),
        "Δ (Jittor − PyTorch)": table["delta"].map(lambda value: number(value, "+.4g")),
        "Δ %": table["relative_pct"].map(lambda value: number(value, "+.2f"))}))]
    if result.missing["scores"]:
        blocks.append(Paragraph("Missing: " + "; ".join(result.missing["scores"]) + "."))
    return blocks


def summary_section(results, tolerance, figures_dir, figure_prefix):
    """The section the report opens with; draws figures_dir/<prefix>summary_{loss_curves,metrics}.png."""
    blocks = [Paragraph(f"Tolerance on |Δ loss|: {tolerance:g} (nats per token). A pair of runs is **step-exact** "
                        "when at every step both logged, each loss series (training loss at every step, the logged "
                        "batch's, its running mean, validation loss) differs by no more than that; Δ is Jittor minus "
                        "PyTorch. Runs that are not may still be **equivalent** (see Verdict). The validation loss is "
                        "evaluated before the first step (step 0) and during the run."),
              Table(pd.DataFrame([summary_row(result) for result in results])),
              Bullets(tuple(verdict_sentence(result) for result in results))]
    curves = [result for result in results if result.loss_figure is not None]
    if curves:
        path = figures_dir / f"{figure_prefix}summary_loss_curves.png"
        plot_loss_panels(path, [(result.dataset, result.runs["torch"], result.runs["jittor"], result.comparison)
                                for result in curves])
        blocks.append(Image(path, "Loss curves per dataset: both frameworks overlaid (top), Jittor − PyTorch at "
                                  "matched steps with the tolerance band (bottom)"))
    tables = {result.dataset: metric_frame(result) for result in results}
    scored = {dataset: table for dataset, table in tables.items() if table is not None}
    if scored:
        path = figures_dir / f"{figure_prefix}summary_metrics.png"
        plot_metric_bars(path, scored)
        blocks.append(Image(path, "Generation metrics per dataset, PyTorch and Jittor (official scorers)"))
    blocks.append(Paragraph("Generation metrics: the official scorers, run by `nlg-eval <dataset> ... --json`: E2E as "
                            "e2e-metrics, WebNLG and DART as GenerationEval. Δ % is relative to PyTorch; TER is "
                            "the one metric where lower is better."))
    for result in results:
        blocks.append(Subheading(f"{result.dataset}: generation metrics"))
        blocks.extend(metric_blocks(result))
    return Section("Summary", blocks)
