"""NLG_jittor/src/gpt2_ft.py on bad input: one line naming the file or flag, no traceback (the cases of
tests/conftest.py, as tests/torch/test_bad_input.py runs them on the torch trainer); NLG_DEBUG=1 shows the
traceback."""
import os
import subprocess
import sys

import pytest

from common_data.paths import REPO_ROOT

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


def test_nlg_debug_shows_the_traceback(bad_trainer_inputs):
    result = run_trainer(bad_trainer_inputs["malformed_jsonl"][0], debug=True)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "DataFormatError" in result.stderr

