"""NLG_jittor/src/gpt2_ft.py on bad input: one line naming the file or flag, no traceback (the cases of
tests/conftest.py, as tests/torch/test_bad_input.py runs them on the torch trainer); NLG_DEBUG=1 shows the
traceback. And --config RUN/run.json repeats a run."""
import json
import os
import subprocess
import sys

import pytest

from common_data.paths import REPO_ROOT
from common_data.runlog import read_metrics
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
