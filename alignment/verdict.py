"""The verdict on a pair of runs, PyTorch's and Jittor's, of one recipe:

- step-exact: at every step both logged, every loss series within the tolerance of the other framework's;
- equivalent: not step-exact, but every segment replayed from a shared state is step-exact, and the free-running
  gap stays inside the float32 envelope (the gap of two PyTorch runs that differ in rounding alone): within
  `factor` times its level in every window, growing by at most that factor more over the run, and without a sign
  of its own (a bias the envelope does not have);
- not equivalent: a segment or the envelope test fails, or there is no evidence for either;
- incomplete: a run stopped before its planned steps or before the other; not comparable: no step in common.

A segment is K steps from a shared state: 0 is both runs' initial state (the free runs' first K steps); any
other start S is a replay, one framework restarted from the other's trainer.S checkpoint (run folder
replays/from_<source>.S beside the replaying framework's run), compared with the source's own steps S+1..S+K.
"""
import dataclasses
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from alignment.compare import DEFAULT_TOLERANCE, compare_runs, matched_curve
from alignment.runs import read_run
from alignment.summary import SIDES
from common_data.cli.verdict_args import DEFAULT_ENVELOPE_FACTOR, DEFAULT_SEGMENT_STEPS

REPLAYS = "replays"
REPLAY_NAME = re.compile(r"from_(torch|jittor)\.(\d+)")
OTHER = {"torch": "jittor", "jittor": "torch"}
BIAS_FLOOR = 0.5  # |mean Δ| / rms Δ that a gap may show whatever the envelope's


def replay_folder(run_folder, source, start):
    """Where the framework of `run_folder` replays the segment that starts from `source`'s trainer.<start>."""
    return Path(run_folder) / REPLAYS / f"from_{source}.{start}"


@dataclasses.dataclass(frozen=True)
class Segment:
    """K steps from a shared state; `curve` is matched_curve of the source's and the replay's per-step losses
    (columns torch and jittor whichever replayed), steps start+1 .. start+K."""
    start: int
    steps: int
    source: str  # the framework whose state it starts from ("both" for the initial state)
    curve: pd.DataFrame
    folder: Path | None  # the replay's run folder; None for segment 0

    @property
    def name(self):
        if self.folder is None:
            return f"steps 1-{self.steps} from the shared initial state"
        return (f"steps {self.start + 1}-{self.start + self.steps}, {SIDES[OTHER[self.source]]} "
                f"from {SIDES[self.source]}'s step {self.start}")

    @property
    def complete(self):
        return len(self.curve) == self.steps

    @property
    def max_abs(self):
        return float(self.curve["abs_delta"].max()) if len(self.curve) else math.nan

    def passes(self, tolerance):
        return self.complete and self.max_abs <= tolerance


def segment_zero(torch_run, jittor_run, steps):
    curve = matched_curve(torch_run.step_losses, jittor_run.step_losses, "loss")
    return Segment(0, steps, "both", curve[curve["step"] <= steps].reset_index(drop=True), None)


def replayed_segments(runs):
    """Every replay found under the runs' folders ({side: RunLog}) that starts from a state of the other run of the
    pair (its --resume_from in that run's folder), by start step."""
    segments = []
    for replaying, run in runs.items():
        folder = Path(run.source) / REPLAYS
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            match = REPLAY_NAME.fullmatch(path.name)
            if match is None or match.group(1) != OTHER[replaying]:
                continue
            source, start = match.group(1), int(match.group(2))
            replay = read_run(path)
            args = replay.records.get("run", {}).get("args", {})
            if Path(args.get("resume_from") or "").parent.resolve() != Path(runs[source].source).resolve():
                continue
            steps = (args.get("stop_step") or args.get("max_step") or start) - start
            sides = {source: runs[source].step_losses, replaying: replay.step_losses}
            curve = matched_curve(sides["torch"], sides["jittor"], "loss")
            curve = curve[(curve["step"] > start) & (curve["step"] <= start + steps)].reset_index(drop=True)
            segments.append(Segment(start, steps, source, curve, path))
    return sorted(segments, key=lambda segment: (segment.start, segment.source))


@dataclasses.dataclass(frozen=True)
class Envelope:
    """Two PyTorch runs of one recipe that differ in rounding alone (alignment/replay.py): their losses at every
    step."""
    path: Path
    steps: np.ndarray
    delta: np.ndarray  # perturbed - reference
    record: dict  # what it was measured with: perturbation, recipe, machine, versions, commit, date


def read_envelope(path):
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        steps, reference, perturbed = (np.asarray(record[key], dtype=float)
                                       for key in ("steps", "reference", "perturbed"))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not an envelope file of `python -m alignment verify` ({error})") from None
    return Envelope(Path(path), steps.astype(int), perturbed - reference, record)


@dataclasses.dataclass(frozen=True)
class EnvelopeTest:
    """The free-running gap against the envelope. `windows`: first_step, last_step, gap_rms, envelope_rms, band
    (the largest gap_rms allowed), gap_mean; `scale`: the ratio of the gap's rms to the envelope's over the first
    window, at least 1; growth in decades from the first third of the run to the last; bias = |mean Δ| / rms Δ
    over the run."""
    windows: pd.DataFrame
    factor: float
    scale: float
    growth_gap: float
    growth_envelope: float
    bias_gap: float
    bias_envelope: float

    @property
    def windows_over(self):
        return self.windows[self.windows["gap_rms"] > self.windows["band"]]

    @property
    def growth_limit(self):
        return self.growth_envelope + math.log10(self.factor)

    @property
    def bias_limit(self):
        return max(BIAS_FLOOR, 2 * self.bias_envelope)

    @property
    def failures(self):
        """Sentences, one per failed test; empty when the gap stays inside the envelope."""
        failures = []
        if len(self.windows_over):
            window = self.windows_over.iloc[0]
            failures.append(f"the gap stands above the envelope band in {len(self.windows_over)} of "
                            f"{len(self.windows)} windows, first at steps {window.first_step:.0f}-"
                            f"{window.last_step:.0f} (rms {window.gap_rms:.2e} > {window.band:.2e})")
        if self.growth_gap > self.growth_limit:
            failures.append(f"the gap grows by {self.growth_gap:.2f} decades over the run, the envelope by "
                            f"{self.growth_envelope:.2f} (limit {self.growth_limit:.2f})")
        if self.bias_gap > self.bias_limit:
            failures.append(f"the gap has a sign of its own: |mean Δ| / rms Δ = {self.bias_gap:.2f}, the envelope's "
                            f"{self.bias_envelope:.2f} (limit {self.bias_limit:.2f})")
        return failures


def rms(values):
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else math.nan


def bias(values):
    spread = rms(values)
    return abs(float(np.mean(values))) / spread if spread > 0 else 0.0


def growth(values):
    """log10 of the rms over the last third over the rms over the first third (0 where either is 0)."""
    third = len(values) // 3
    if third == 0:
        return 0.0
    first, last = rms(values[:third]), rms(values[-third:])
    return math.log10(last / first) if first > 0 and last > 0 else 0.0


def envelope_test(gap_curve, envelope, tolerance, factor, window):
    """The free run's per-step gap (matched_curve) against the envelope, at the steps both hold, in windows of
    `window` steps. The band of a window is factor x the envelope's largest rms so far at the pair's own level of
    rounding, never below the tolerance: the envelope's perturbation puts less rounding into a step than the other
    framework does (Jittor's loss sums over the vocabulary in float64, for one), so its curve is scaled by the ratio
    of the two gaps over the first window, where both are the rounding of a few steps and no drift yet."""
    envelope_delta = pd.Series(envelope.delta, index=envelope.steps)
    curve = gap_curve[gap_curve["step"].isin(envelope_delta.index)]
    gap = curve["delta"].to_numpy(dtype=float)
    reference = envelope_delta.loc[curve["step"]].to_numpy()
    rows = []
    for first in range(0, len(curve), window):
        part = slice(first, first + window)
        steps = curve["step"].iloc[part]
        rows.append({"first_step": int(steps.iloc[0]), "last_step": int(steps.iloc[-1]), "gap_rms": rms(gap[part]),
                     "envelope_rms": rms(reference[part]), "gap_mean": float(np.mean(gap[part]))})
    windows = pd.DataFrame(rows, columns=["first_step", "last_step", "gap_rms", "envelope_rms", "gap_mean"])
    first_gap, first_envelope = windows["gap_rms"].iloc[0], windows["envelope_rms"].iloc[0]
    scale = max(1.0, first_gap / first_envelope) if first_envelope > 0 else 1.0
    windows["band"] = np.maximum(tolerance, factor * scale * windows["envelope_rms"].cummax())
    return EnvelopeTest(windows, factor, scale, growth(gap), growth(reference), bias(gap), bias(reference))


@dataclasses.dataclass(frozen=True)
class Verdict:
    kind: str  # step-exact, equivalent, not equivalent, incomplete, not comparable
    reason: str  # one sentence
    segments: tuple
    envelope: EnvelopeTest | None
    first_failing: Segment | None


def planned_step(run):
    """The step a run meant to reach (run.json's stop_step, else max_step), or None when it does not say."""
    record = run.records.get("run", {})
    return record.get("stop_step") or record.get("max_step")


def last_step(run):
    steps = [int(table["step"].max()) for table in (run.step_losses, run.steps) if len(table.dropna(subset=["step"]))]
    return max(steps) if steps else 0


def incomplete_runs(runs):
    """Sentences on the runs that stopped short: of their own planned steps, or of the other run's last step."""
    texts = []
    for side, run in runs.items():
        last, planned = last_step(run), planned_step(run)
        other = last_step(runs[OTHER[side]])
        if planned is not None and last < planned:
            texts.append(f"the {SIDES[side]} run `{run.source}` ends at step {last} of its {planned}")
        elif last < other:
            texts.append(f"the {SIDES[side]} run `{run.source}` ends at step {last}, the other at {other}")
    return texts


def judge(torch_run, jittor_run, tolerance=DEFAULT_TOLERANCE, segment_steps=DEFAULT_SEGMENT_STEPS, envelope=None,
          factor=DEFAULT_ENVELOPE_FACTOR):
    """compare_runs with its verdict."""
    comparison = compare_runs(torch_run, jittor_run, tolerance)
    runs = {"torch": torch_run, "jittor": jittor_run}
    return dataclasses.replace(comparison, verdict=decide(comparison, runs, tolerance, segment_steps, envelope, factor))


def decide(comparison, runs, tolerance, segment_steps, envelope=None, factor=DEFAULT_ENVELOPE_FACTOR):
    """The Verdict of a RunComparison of `runs` ({side: RunLog}), with the replays found beside them and the
    envelope (an Envelope or None). Segment 0 and the envelope's windows take the replays' length, else
    segment_steps."""
    short = incomplete_runs(runs)
    replays = replayed_segments(runs)
    segment_steps = replays[0].steps if replays else segment_steps
    segments = tuple(([segment_zero(runs["torch"], runs["jittor"], segment_steps)]
                      if len(comparison.curves["step_loss"]) else []) + replays)
    if not any(delta.matched for delta in comparison.deltas.values()):
        return Verdict("not comparable", "the two runs share no logged step.", segments, None, None)
    if short:
        return Verdict("incomplete", "; ".join(short) + ": no verdict on a run cut short.", segments, None, None)
    over = [delta for delta in comparison.deltas.values() if delta.first_over_step is not None]
    if not over:
        return Verdict("step-exact", f"every logged loss is within {tolerance:g} of the other framework's.",
                       segments, None, None)
    failing = next((segment for segment in segments if not segment.passes(tolerance)), None)
    test = None
    if envelope is not None and len(comparison.curves["step_loss"]):
        test = envelope_test(comparison.curves["step_loss"], envelope, tolerance, factor, segment_steps)
    first_over = min(delta.first_over_step for delta in over)
    if failing is not None:
        detail = (f"its largest |Δ loss| is {failing.max_abs:.2e}" if failing.complete else
                  f"it has {len(failing.curve)} of its {failing.steps} steps")
        return Verdict("not equivalent", f"the free runs part from step {first_over} and the segment {failing.name} "
                       f"is not step-exact: {detail}.", segments, test, failing)
    if not replays:
        return Verdict("not equivalent", f"the free runs part from step {first_over}, and no segment was replayed "
                       "from a shared state to tell rounding from a bug (python -m alignment verify).",
                       segments, test, None)
    if test is None:
        return Verdict("not equivalent", f"the free runs part from step {first_over}, and there is no float32 "
                       "envelope to hold their gap against (python -m alignment verify).", segments, None, None)
    if test.failures:
        return Verdict("not equivalent", f"{len(segments)} segments are step-exact, but " + "; ".join(test.failures)
                       + ".", segments, test, None)
    return Verdict("equivalent", f"the free runs part from step {first_over} (largest |Δ loss| "
                   f"{comparison.deltas['step_loss'].max_abs:.2e}), but all {len(segments)} segments replayed from "
                   f"shared states are step-exact (largest |Δ| {max(s.max_abs for s in segments):.2e}) and the gap "
                   f"stays within {factor:g} x the float32 envelope (at the pair's own rounding, {test.scale:.3g} x "
                   "the envelope's), grows like it and has no sign of its own.",
                   segments, test, None)
