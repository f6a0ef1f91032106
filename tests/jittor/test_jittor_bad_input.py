"""NLG_jittor/src/gpt2_ft.py on bad input: one line naming the file or flag, no traceback (the cases of
tests/conftest.py, as tests/torch/test_bad_input.py runs them on the torch trainer); NLG_DEBUG=1 shows the
traceback. And --config RUN/run.json repeats a run."""
import json
import os
import subprocess
import sys

import pytest

from common_data.model.checkpoint import checkpoint_steps, load_model_checkpoint
from common_data.util.paths import REPO_ROOT
from common_data.training.runlog import read_metrics
from NLG_jittor.src import gpt2_ft

TRAINER = REPO_ROOT / "NLG_jittor" / "src" / "gpt2_ft.py"


def run_trainer(argv, debug=False):
    env = {key: value for key, value in os.environ.items() if key != "NLG_DEBUG"}
    if debug:
        env["NLG_DEBUG"] = "1"
    return subprocess.run([sys.executable, str(TRAINER), *argv], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT)


@pytest.mark.parametrize("case", ["malformed_jsonl", "resume_from_another_run", "checkpoint_of_another_size",
                                  "unwritable_work_dir", "not_safetensors"])
def test_the_trainer_stops_with_one_line(case, bad_trainer_inputs, one_error_line):
    argv, texts = bad_trainer_inputs[case]
    result = run_trainer(argv)
    assert result.returncode == 1
    line = one_error_line(result.stderr, "gpt2_ft.py")
    assert all(text in line for text in texts), line


@pytest.mark.parametrize("case", ["max_step_zero", "negative_max_step_in_a_config_file", "adalora_target_r_zero"])
def test_flags_that_would_train_nothing_are_refused(case, bad_trainer_flags, one_error_line):
    argv, texts = bad_trainer_flags[case]
    result = run_trainer(argv)
    assert result.returncode == 2
    line = one_error_line(result.stderr, "gpt2_ft.py")
    assert all(text in line for text in texts), line


def test_nlg_debug_shows_the_traceback(bad_trainer_inputs):
    result = run_trainer(bad_trainer_inputs["malformed_jsonl"][0], debug=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "DataFormatError" in result.stderr


def test_the_run_json_of_a_run_repeats_it(tiny_trainer_argv, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    assert gpt2_ft.main([*tiny_trainer_argv, "--lora_dropout", "0.1", "--max_step", "3", "--log_interval", "1",
                         "--work_dir", str(first)]) == 0
    assert gpt2_ft.main(["--config", str(first / "run.json"), "--work_dir", str(again)]) == 0

    def losses(folder):
        return [event["loss"] for event in read_metrics(folder / "metrics.jsonl") if event["event"] == "train"]

    assert len(losses(first)) == 3 and losses(again) == losses(first)
    first_args, again_args = (json.loads((folder / "run.json").read_text())["args"] for folder in (first, again))
    assert {**again_args, "work_dir": None, "config": None} == {**first_args, "work_dir": None}


def test_a_full_disk_at_a_checkpoint_leaves_the_last_one_and_names_it(tiny_trainer_argv, tmp_path, file_size_limit,
                                                                      one_error_line):
    """A resumed run first removes the temporary files a killed save left; then its checkpoint cannot be written
    (16 MiB of adapters, files limited to 8 MiB, more than Jittor writes into its cache): the error names the file
    and the checkpoint --resume would take."""
    work_dir = tmp_path / "run"
    argv = [*tiny_trainer_argv, "--lora_dim", "256", "--lora_targets", "c_attn,c_proj,c_fc,mlp_proj", "--work_dir",
            str(work_dir)]
    assert gpt2_ft.main(argv) == 0
    for name in (".model.2.safetensors.x1y2z3w4.tmp", ".tmpAbC123"):
        (work_dir / name).write_bytes(bytes(1024))
    result = subprocess.run([sys.executable, str(TRAINER), *argv, "--resume", "--max_step", "2"], capture_output=True,
                            text=True, cwd=REPO_ROOT, preexec_fn=file_size_limit(8 * 2 ** 20))
    assert result.returncode == 1
    line = one_error_line(result.stderr, "gpt2_ft.py")
    assert line.startswith(f"gpt2_ft.py: error: {work_dir / 'model.2.safetensors'}: cannot write it (") \
        and "File too large" in line, line
    assert line.endswith(f"; the newest complete checkpoint, {work_dir / 'model.1.safetensors'}, is untouched")
    assert sorted(path.name for path in work_dir.iterdir() if path.name.startswith(".")) == []
    assert checkpoint_steps(work_dir) == [1]
    assert load_model_checkpoint(work_dir / "model.1.safetensors")[1]["step"] == 1
