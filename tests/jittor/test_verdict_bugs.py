"""The verdict on one long run: 200 steps of gpt2.tiny whose adapters (r 8 on all six targets) learn fast, in PyTorch
and in Jittor. The shipped Jittor trainer comes out step-exact or equivalent; each bug of planted_bugs.py, which the
first 20 steps do not show (every loss there within the tolerance of PyTorch's), comes out not equivalent, with the
segment at the peak learning rate named as the first that fails and a trace command that starts from its state."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alignment.cli import main as alignment_main
from alignment.runs import read_run
from alignment.verdict import judge, replay_folder
from alignment.verdict_report import trace_command
from common_data.model.checkpoint import save_tensors, trainer_checkpoint_path
from common_data.model.gpt2_config import config_for_card
from common_data.model.init_params import init_base_params
from common_data.util.jsonl import write_jsonl
from common_data.util.paths import REPO_ROOT

PLANTED_BUGS = Path(__file__).with_name("planted_bugs.py")
TOLERANCE = 1e-4
SEGMENT_STEPS = 20
WARMUP = 60  # the peak learning rate; the bugs' effects grow with the adapters, the largest around it
SEGMENTS = (20, WARMUP)  # replayed from PyTorch's saved states; segment 0 is the free runs' first 20 steps


def bug_names():
    spec = importlib.util.spec_from_file_location("planted_bugs", PLANTED_BUGS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sorted(module.BUGS)


def trainer_flags(folder):
    return ["--train_data", folder / "rows.jsonl", "--valid_data", folder / "rows.jsonl", "--model_card", "gpt2.tiny",
            "--init_checkpoint", folder / "base.safetensors", "--train_batch_size", "4", "--seq_len", "16",
            "--lora_dim", "8", "--lora_alpha", "32", "--lora_targets", "q,k,v,c_proj,c_fc,mlp_proj", "--lr", "0.002",
            "--correct_bias", "--adam_beta2", "0.999", "--warmup_step", str(WARMUP), "--max_step", "200",
            "--log_interval", "50", "--eval_interval", "1000", "--save_interval", str(SEGMENT_STEPS),
            "--random_seed", "3"]


def run(command):
    environment = {key: value for key, value in os.environ.items() if key not in ("NLG_FRAMEWORK", "VIRTUAL_ENV")}
    result = subprocess.run([str(item) for item in command], cwd=REPO_ROOT, env=environment, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, f"{command[:4]} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A folder with the rows, the base and the PyTorch run (folder/torch), its trainer state saved every 20 steps."""
    folder = tmp_path_factory.mktemp("verdict")
    rng = np.random.default_rng(0)
    vocabulary = rng.integers(0, 50257, 300)  # few tokens, so that the adapters learn the rows quickly
    write_jsonl(folder / "rows.jsonl", [{"context": vocabulary[rng.integers(0, 300, 6)].tolist(),
                                         "completion": vocabulary[rng.integers(0, 300, 6)].tolist() + [628]}
                                        for _ in range(32)])
    config = config_for_card("gpt2.tiny")
    save_tensors(folder / "base.safetensors", init_base_params(config, seed=3), {"config": config.to_dict()})
    run([REPO_ROOT / "environments" / "run", "torch", "python", REPO_ROOT / "NLG_pytorch" / "src" / "gpt2_ft.py",
         *trainer_flags(folder), "--work_dir", folder / "torch"])
    return folder


def jittor_run(folder, name, bug=None):
    """The Jittor run (with `bug` planted) and its replays of SEGMENTS from PyTorch's states; returns its folder."""
    script = [PLANTED_BUGS, bug] if bug else [REPO_ROOT / "NLG_jittor" / "src" / "gpt2_ft.py"]
    work_dir = folder / name
    run([sys.executable, *script, *trainer_flags(folder), "--work_dir", work_dir])
    if bug:
        for start in SEGMENTS:
            run([sys.executable, *script, "--config", folder / "torch" / "run.json", "--resume_from",
                 trainer_checkpoint_path(folder / "torch", start), "--stop_step", start + SEGMENT_STEPS,
                 "--work_dir", replay_folder(work_dir, "torch", start)])
    return work_dir


def test_the_shipped_trainer_is_step_exact_or_equivalent_and_its_replays_step_exact(reference, capsys):
    shipped = jittor_run(reference, "jittor")
    # --segments asks for the replays even of step-exact runs; --reverse replays PyTorch from Jittor's states too
    assert alignment_main(["verify", "--torch", str(reference / "torch"), "--jittor", str(shipped), "--reverse",
                           "--segments", ",".join(map(str, (0, *SEGMENTS))), "--segment_steps", "20"]) == 0
    printed = capsys.readouterr()
    assert f"replaying steps {WARMUP + 1}-{WARMUP + 20} in jittor from torch's step {WARMUP}" in printed.err
    assert f"replaying steps {WARMUP + 1}-{WARMUP + 20} in torch from jittor's step {WARMUP}" in printed.err
    comparison = judge(read_run(reference / "torch"), read_run(shipped), TOLERANCE)
    assert comparison.status in ("step-exact", "equivalent")
    assert printed.out.startswith(f"{shipped}: {comparison.status} — ")
    assert [(segment.start, segment.source, segment.complete, segment.passes(TOLERANCE))
            for segment in comparison.verdict.segments] == [
        (0, "both", True, True), *((start, source, True, True) for start in SEGMENTS for source in ("jittor", "torch"))]


@pytest.mark.parametrize("bug", bug_names())
def test_a_planted_bug_is_not_equivalent_from_the_segment_at_the_peak_learning_rate(reference, bug):
    comparison = judge(read_run(reference / "torch"), read_run(jittor_run(reference, bug, bug)), TOLERANCE)
    verdict = comparison.verdict
    first_steps = verdict.segments[0]
    # a comparison of the first 20 steps misses the bug ...
    assert (first_steps.start, first_steps.folder, first_steps.complete) == (0, None, True)
    assert first_steps.passes(TOLERANCE), first_steps.max_abs
    # ... the verdict does not
    assert verdict.kind == "not equivalent", verdict.reason
    assert verdict.first_failing.start == WARMUP, verdict.reason
    assert f"Jittor from PyTorch's step {WARMUP} is not step-exact" in verdict.reason
    command = trace_command(verdict.first_failing, {"torch": read_run(reference / "torch")})
    assert f"--trainer_checkpoint {reference / 'torch' / f'trainer.{WARMUP}.safetensors'} --steps 20" in command
