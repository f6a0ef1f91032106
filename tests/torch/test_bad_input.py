"""Bad input stops every command with one line naming the file (or flag) and what is wrong, no traceback; --debug
or NLG_DEBUG=1 shows the traceback. The cases of the trainer come from tests/conftest.py (bad_trainer_inputs)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from common_data.model.checkpoint import checkpoint_steps, load_model_checkpoint
from common_data.cli.command import USER_ERRORS
from common_data.util.paths import REPO_ROOT
from NLG_pytorch.src import gpt2_ft

TRAINER = REPO_ROOT / "NLG_pytorch" / "src" / "gpt2_ft.py"
CASES = ["malformed_jsonl", "resume_from_another_run", "checkpoint_of_another_size", "unwritable_work_dir",
         "not_safetensors"]


def run(command, debug=False):
    env = {key: value for key, value in os.environ.items() if key != "NLG_DEBUG"}
    if debug:
        env["NLG_DEBUG"] = "1"
    return subprocess.run([sys.executable, *map(str, command)], capture_output=True, text=True, env=env, cwd=REPO_ROOT)


@pytest.mark.parametrize("case", CASES)
def test_the_trainer_stops_with_one_line(case, bad_trainer_inputs, one_error_line):
    argv, texts = bad_trainer_inputs[case]
    result = run([TRAINER, *argv])
    assert result.returncode == 1
    line = one_error_line(result.stderr, "gpt2_ft.py")
    assert all(text in line for text in texts), line


@pytest.mark.parametrize("case", ["max_step_zero", "negative_max_step_in_a_config_file", "adalora_target_r_zero"])
def test_flags_that_would_train_nothing_are_refused(case, bad_trainer_flags, one_error_line):
    argv, texts = bad_trainer_flags[case]
    result = run([TRAINER, *argv])
    assert result.returncode == 2
    line = one_error_line(result.stderr, "gpt2_ft.py")
    assert all(text in line for text in texts), line


@pytest.mark.parametrize("case", CASES)
def test_debugging_raises_the_error_itself(case, bad_trainer_inputs, monkeypatch):
    argv, texts = bad_trainer_inputs[case]
    monkeypatch.setenv("NLG_DEBUG", "1")
    with pytest.raises(USER_ERRORS) as error:
        gpt2_ft.main(argv)
    assert texts[-1] in str(error.value)


@pytest.mark.parametrize("debug_flag", [False, True], ids=["NLG_DEBUG=1", "--debug"])
def test_the_script_shows_the_traceback_when_debugging(debug_flag, bad_trainer_inputs):
    argv, texts = bad_trainer_inputs["not_safetensors"]
    result = run([TRAINER, *argv, *(["--debug"] if debug_flag else [])], debug=not debug_flag)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "CheckpointError" in result.stderr


def test_beam_search_and_model_process_name_a_file_that_is_not_safetensors(bad_trainer_inputs, one_error_line,
                                                                             tmp_path):
    argv, _ = bad_trainer_inputs["not_safetensors"]
    pickled, data = argv[argv.index("--init_checkpoint") + 1], argv[argv.index("--train_data") + 1]
    beam = run([REPO_ROOT / "NLG_pytorch" / "src" / "gpt2_beam.py", "--data", data, "--model_card", "gpt2.tiny",
                "--seq_len", "64", "--eval_len", "8", "--init_checkpoint", pickled, "--work_dir", tmp_path])
    export = run([REPO_ROOT / "model_process.py", "export-hf", pickled, tmp_path / "hf"])
    for result, prog in ((beam, "gpt2_beam.py"), (export, "model_process.py")):
        assert result.returncode == 1
        line = one_error_line(result.stderr, prog)
        assert pickled in line and "not a safetensors file" in line and "model_process.py import-hf" in line


def test_import_hf_refuses_a_pickle_without_advising_to_unpickle_it(tmp_path, one_error_line):
    """torch's own message on a file its restricted loader refuses suggests weights_only=False."""
    (tmp_path / "config.json").write_text(json.dumps({"n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16,
                                                      "n_positions": 16}))
    torch.save({"wte.weight": np.zeros((16, 8), np.float32)}, tmp_path / "pytorch_model.bin")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "config.json").write_text((tmp_path / "config.json").read_text())
    (tmp_path / "cut" / "pytorch_model.bin").write_bytes((tmp_path / "pytorch_model.bin").read_bytes()[:200])
    expected = {tmp_path: "holds Python objects besides tensors, and nothing is unpickled here",
                tmp_path / "cut": "not a PyTorch weights file"}
    for folder, text in expected.items():
        result = run([REPO_ROOT / "model_process.py", "import-hf", folder, tmp_path / "out.safetensors"])
        assert result.returncode == 1 and "weights_only" not in result.stderr
        line = one_error_line(result.stderr, "model_process.py")
        assert line.startswith(f"model_process.py: error: {folder / 'pytorch_model.bin'}: {text}"), line
    assert not (tmp_path / "out.safetensors").exists()


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
