"""The verdicts on planted run folders: per-step losses, replayed segments and a float32 envelope, each made to pass
or to fail one test of alignment.verdict. (Real runs with planted bugs: tests/jittor/test_verdict_bugs.py.)"""
import json
from pathlib import Path

import numpy as np
import pytest

from alignment.cli import main
from alignment.replay import default_envelope_path, envelope_matches, recipe_key
from alignment.runs import read_run
from alignment.verdict import judge, read_envelope, replay_folder
from alignment.verdict_report import shown_path
from common_data.training.runlog import MetricsLog, RunRecord
from common_data.util.paths import REPO_ROOT

STEPS = 200
K = 20
TOLERANCE = 1e-4


def loss_curve():
    return {step: 3.0 - step / 100 for step in range(1, STEPS + 1)}


def drift(seed, start=60, scale=1e-4):
    """Rounding drift: from `start` on, a loss gap of random sign at each step (each batch meets the runs' small
    difference in weights from another side) whose size grows from 0 to `scale` by the last step."""
    rng = np.random.default_rng(seed)
    return {step: float(scale * max(0, step - start) / (STEPS - start) * rng.standard_normal())
            for step in range(1, STEPS + 1)}


def write_run(folder, losses, planned=STEPS, args=None):
    """A run folder as gpt2_ft.py writes it: every step's loss, a console line every 10 steps, run.json."""
    log = MetricsLog(folder / "metrics.jsonl")
    for step, loss in sorted(losses.items()):
        log.write("step", step=step, loss=loss)
        if step % 10 == 0:
            log.write("train", step=step, epoch=1, lr=1e-3, loss=loss, avg_loss=loss, ppl=1.0, ms_per_batch=1.0)
    log.close()
    record = RunRecord(folder / "run.json", args={"max_step": STEPS, **(args or {})}, framework={"name": "torch"},
                       device="cpu", seed=1)
    record.write("finished", {"kind": "rss", "bytes": 1}, max_step=STEPS, stop_step=planned,
                 final_step=max(losses))
    return folder


def pair(tmp_path, offsets, replays=(), envelope_offsets=None):
    """(torch run, jittor run, envelope path or None): Jittor's losses are PyTorch's plus `offsets`; each replay
    (start, offsets) is Jittor from PyTorch's state at start for K steps."""
    reference = loss_curve()
    torch_run = write_run(tmp_path / "torch", reference)
    jittor_run = write_run(tmp_path / "jittor",
                           {step: loss + offsets.get(step, 0.0) for step, loss in reference.items()})
    for start, replay_offsets in replays:
        folder = replay_folder(jittor_run, "torch", start)
        folder.mkdir(parents=True)
        write_run(folder, {step: reference[step] + replay_offsets.get(step, 0.0)
                           for step in range(start + 1, start + K + 1)}, planned=start + K,
                  args={"stop_step": start + K, "resume_from": str(torch_run / f"trainer.{start}.safetensors")})
    envelope = None
    if envelope_offsets is not None:
        envelope = tmp_path / "envelope.json"
        steps = sorted(reference)
        envelope.write_text(json.dumps({"steps": steps, "reference": [reference[step] for step in steps],
                                        "perturbed": [reference[step] + envelope_offsets[step] for step in steps],
                                        "perturbation": "planted"}))
    return torch_run, jittor_run, envelope


def verdict(torch_run, jittor_run, envelope=None):
    return judge(read_run(torch_run), read_run(jittor_run), TOLERANCE, K,
                 None if envelope is None else read_envelope(envelope)).verdict


def quiet_replays(starts=(20, 100, 180)):
    return [(start, {start + 1: 3e-6}) for start in starts]


def test_runs_within_the_tolerance_are_step_exact(tmp_path):
    result = verdict(*pair(tmp_path, {step: 5e-5 for step in range(1, STEPS + 1)})[:2])
    assert result.kind == "step-exact"
    assert [(segment.start, segment.complete) for segment in result.segments] == [(0, True)]
    assert result.segments[0].max_abs == pytest.approx(5e-5)


def test_drift_without_replayed_segments_is_not_equivalent(tmp_path):
    result = verdict(*pair(tmp_path, drift(1), envelope_offsets=drift(2)))
    assert result.kind == "not equivalent" and "no segment was replayed" in result.reason


def test_drift_like_the_envelope_with_step_exact_segments_is_equivalent(tmp_path):
    result = verdict(*pair(tmp_path, drift(1), quiet_replays(), envelope_offsets=drift(2)))
    assert result.kind == "equivalent", result.reason
    assert [segment.start for segment in result.segments] == [0, 20, 100, 180]
    assert result.envelope is not None and not result.envelope.failures


def test_without_an_envelope_the_drift_is_not_equivalent(tmp_path):
    torch_run, jittor_run, _ = pair(tmp_path, drift(1), quiet_replays())
    result = verdict(torch_run, jittor_run)
    assert result.kind == "not equivalent" and "no float32 envelope" in result.reason


def test_a_failing_or_unfinished_segment_is_named_first(tmp_path):
    replays = [(20, {25: 3e-6}), (100, {110: 4e-4}), (180, {190: 5e-4})]
    result = verdict(*pair(tmp_path, drift(1), replays, envelope_offsets=drift(2)))
    assert result.kind == "not equivalent" and result.first_failing.start == 100
    assert "steps 101-120, Jittor from PyTorch's step 100 is not step-exact: its largest |Δ loss| is 4.00e-04" \
        in result.reason

    cut = tmp_path / "cut"
    cut.mkdir()
    torch_run, jittor_run, envelope = pair(cut, drift(1), quiet_replays(), envelope_offsets=drift(2))
    metrics = replay_folder(jittor_run, "torch", 20) / "metrics.jsonl"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:15]))
    result = verdict(torch_run, jittor_run, envelope)
    assert result.first_failing.start == 20 and "it has 14 of its 20 steps" in result.reason


def test_a_gap_ten_times_the_envelope_or_with_a_sign_of_its_own_is_not_equivalent(tmp_path):
    (tmp_path / "level").mkdir()
    far = {step: 10 * value for step, value in drift(1).items()}
    result = verdict(*pair(tmp_path / "level", far, quiet_replays(), envelope_offsets=drift(2)))
    assert result.kind == "not equivalent" and "above the envelope band" in result.reason

    (tmp_path / "bias").mkdir()
    biased = {step: value + 1.5e-4 * (step > 60) for step, value in drift(1, scale=1e-5).items()}
    result = verdict(*pair(tmp_path / "bias", biased, quiet_replays(), envelope_offsets=drift(2)))
    assert result.kind == "not equivalent" and "a sign of its own" in result.reason, result.reason
    assert result.envelope.bias_gap > 0.8


def test_a_gap_that_outgrows_the_envelope_is_not_equivalent(tmp_path):
    # the envelope is flat at the gap's final level; the gap climbs to it from far below
    envelope = {step: 4e-4 * (-1) ** step for step in range(1, STEPS + 1)}
    climbing = {step: 4e-4 * 10 ** (4 * (step / STEPS - 1)) * (-1) ** step for step in range(1, STEPS + 1)}
    result = verdict(*pair(tmp_path, climbing, quiet_replays(), envelope_offsets=envelope))
    assert result.kind == "not equivalent" and "grows by" in result.reason, result.reason


def test_a_replay_from_another_runs_state_is_not_a_segment_of_this_pair(tmp_path):
    torch_run, jittor_run, envelope = pair(tmp_path, drift(1), quiet_replays((20,)), envelope_offsets=drift(2))
    other = replay_folder(jittor_run, "torch", 100)
    other.mkdir(parents=True)
    write_run(other, {step: 0.0 for step in range(101, 121)}, planned=120,
              args={"stop_step": 120, "resume_from": str(tmp_path / "another_torch_run" / "trainer.100.safetensors")})
    result = verdict(torch_run, jittor_run, envelope)
    assert [segment.start for segment in result.segments] == [0, 20] and result.kind == "equivalent"


def test_a_run_cut_short_is_incomplete(tmp_path, capsys):
    reference = loss_curve()
    torch_run = write_run(tmp_path / "torch", reference)
    jittor_run = write_run(tmp_path / "jittor", {step: reference[step] for step in range(1, 40)})
    result = verdict(torch_run, jittor_run)
    assert result.kind == "incomplete"
    assert f"the Jittor run `{jittor_run}` ends at step 39 of its 200" in result.reason
    assert main(["report", "--torch", str(torch_run), "--jittor", str(jittor_run), "--out-md",
                 str(tmp_path / "r.md"), "--figures", str(tmp_path / "figures")]) == 0
    assert capsys.readouterr().out.startswith("e2e: incomplete — the Jittor run")


@pytest.mark.parametrize("kind", ["equivalent", "not equivalent"])
def test_the_report_shows_the_verdict_with_its_figure_and_segments(tmp_path, kind, report_sections):
    replays = quiet_replays() if kind == "equivalent" else [(20, {}), (100, {101: 2e-4})]
    torch_run, jittor_run, envelope = pair(tmp_path, drift(1), replays, envelope_offsets=drift(2))
    out_md = tmp_path / "report.md"
    assert main(["report", "--torch", str(torch_run), "--jittor", str(jittor_run), "--envelope", str(envelope),
                 "--out-md", str(out_md), "--figures", str(tmp_path / "figures")]) == 0
    section = report_sections(out_md.read_text())["Verdict"]
    assert f"**e2e: {kind}** —" in section
    assert "| steps 1-20 from the shared initial state | 20 / 20 |" in section
    assert "](figures/e2e_verdict.png)" in section
    assert (tmp_path / "figures" / "e2e_verdict.png").stat().st_size > 20_000
    assert "- level: the gap's rms per window of 20 steps" in section
    trace = "Trace the first failing segment"
    assert (trace in section) == (kind == "not equivalent")
    if kind == "not equivalent":
        assert "--trainer_checkpoint " + str(torch_run / "trainer.100.safetensors") + " --steps 20`" in section


def test_an_envelope_holds_for_the_same_recipe_whatever_the_flags_that_do_not_change_the_losses(tmp_path):
    measured_for = {"config": "recipes/embedded/e2e.yaml", "lr": 0.002, "lora_targets": ["q", "v"], "max_epoch": None,
                    "work_dir": "runs/a", "eval_interval": 100}
    path = tmp_path / "e2e.json"
    path.write_text(json.dumps({"recipe": recipe_key(measured_for)}))
    # a later flag left unset, another run folder and validation interval: the same recipe, the same file name
    later = {**measured_for, "tensorboard": "tb", "adapter_checkpoint": None, "work_dir": "runs/b", "eval_interval": 50}
    assert envelope_matches(path, later)
    assert default_envelope_path(later, "runs/b") == default_envelope_path(measured_for, "runs/a")
    for changed in ({"lr": 0.004}, {"lora_targets": ["q", "k", "v"]}, {"max_epoch": 2}):
        assert not envelope_matches(path, {**later, **changed})
        assert default_envelope_path({**later, **changed}, "runs/b") != default_envelope_path(later, "runs/b")


def test_the_report_names_an_envelope_of_the_repository_by_its_path_in_it(tmp_path):
    assert shown_path(REPO_ROOT / "log" / "envelopes" / "e2e-0.json") == Path("log/envelopes/e2e-0.json")
    assert shown_path(tmp_path / "e2e.json") == (tmp_path / "e2e.json").resolve()
