from pathlib import Path

import pytest

from common_data.checkpoint import save_model_checkpoint, save_tensors
from common_data.cli.ft_args import parse_args
from common_data.gpt2_config import GPT2Config
from common_data.init_params import init_base_params
from common_data.jsonl import write_jsonl
from common_data.paths import shared_dir
from common_data.resume import Progress, save_trainer_state


@pytest.fixture(scope="session")
def shared():
    """The local mirror of official files and fixtures (../shared); tests that need it skip without it."""
    path = shared_dir()
    if path is None:
        pytest.skip("../shared (local mirror of the official files) is not present")
    return path


@pytest.fixture(scope="session")
def tiny_trainer_argv(tmp_path_factory):
    """A gpt2_ft.py command line (either framework) of one quick step on 8 made-up rows."""
    folder = tmp_path_factory.mktemp("tiny_run")
    train = folder / "train.jsonl"
    write_jsonl(train, [{"context": [10 + row, 11, 12], "completion": [20, 21 + row, 50256]} for row in range(8)])
    return [str(arg) for arg in ["--train_data", train, "--valid_data", train, "--model_card", "gpt2.tiny",
                                 "--train_batch_size", "4", "--seq_len", "16", "--lora_dim", "4", "--max_step", "1",
                                 "--work_dir", folder / "run"]]


@pytest.fixture(scope="session")
def bad_trainer_inputs(tiny_trainer_argv, tmp_path_factory):
    """gpt2_ft.py command lines (either framework) that must stop with one line, and what that line says:
    {case: (argv, [texts of the line])}. Each case differs from tiny_trainer_argv in one thing."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    good = tiny_trainer_argv
    malformed = folder / "malformed.jsonl"
    lines = Path(good[good.index("--train_data") + 1]).read_text().splitlines(keepends=True)
    malformed.write_text("".join([*lines[:2], lines[2][:-8] + "\n", *lines[3:]]))

    other_run = folder / "other_run"
    save_model_checkpoint(other_run, 2, {}, {"step": 2})
    save_trainer_state(other_run, 2, {}, Progress(step=2), {}, parse_args([*good, "--lora_dim", "8"]))
    small = folder / "small.safetensors"
    small_config = GPT2Config(n_embd=32, n_layer=1, n_head=2, n_positions=512)
    save_tensors(small, init_base_params(small_config, seed=0), {"config": small_config.to_dict()})
    pickled = folder / "pytorch_model.bin"
    pickled.write_bytes(b"PK\x03\x04" + bytes(200))  # the start of the zip file torch.save writes
    a_file = folder / "a_file"
    a_file.write_text("not a folder\n")

    cases = {
        "malformed_jsonl": (["--train_data", malformed], [f"{malformed}: line 3: malformed JSON"]),
        "resume_from_another_run": (["--work_dir", other_run, "--resume"],
                                    [str(other_run), "comes from a different run", "--lora_dim 8 there, 4 here"]),
        "checkpoint_of_another_size": (["--init_checkpoint", small], [str(small), "1 layers x 32", "gpt2.tiny"]),
        "unwritable_work_dir": (["--work_dir", a_file / "run"], [f"--work_dir {a_file / 'run'}: cannot create"]),
        "not_safetensors": (["--init_checkpoint", pickled],
                            [str(pickled), "not a safetensors file", "model_process.py import-hf"]),
    }
    return {case: ([str(arg) for arg in [*good, *extra]], texts) for case, (extra, texts) in cases.items()}


@pytest.fixture(scope="session")
def one_error_line():
    """check(stderr, prog): the line `PROG: error: ...` that ends stderr, checked to be its only error and to come
    without a traceback."""
    def check(stderr, prog):
        assert "Traceback" not in stderr, stderr
        lines = stderr.strip().splitlines()
        assert lines[-1].startswith(f"{prog}: error: "), stderr
        assert sum(": error: " in line for line in lines) == 1, stderr
        return lines[-1]
    return check
