import resource
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from common_data.model.checkpoint import save_model_checkpoint, save_tensors
from common_data.cli.ft_args import parse_args
from common_data.model.gpt2_config import AdapterConfig, GPT2Config
from common_data.model.init_params import init_adapter_params, init_base_params
from common_data.util.jsonl import write_jsonl
from common_data.util.paths import shared_dir
from common_data.training.resume import Progress, save_trainer_state


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
def bad_trainer_flags(tiny_trainer_argv, tmp_path_factory):
    """gpt2_ft.py command lines (either framework) that argparse must refuse (exit status 2) with one line naming
    the flag: {case: (argv, [texts of the line])}. Each case differs from tiny_trainer_argv in one value."""
    good = tiny_trainer_argv
    step_at = good.index("--max_step")
    without_max_step = [*good[:step_at], *good[step_at + 2:]]
    config = tmp_path_factory.mktemp("bad_flags") / "negative_max_step.yaml"
    config.write_text("max_step: -5\n")
    return {
        "max_step_zero": ([*good, "--max_step", "0"], ["--max_step must be at least 1, got 0"]),
        "negative_max_step_in_a_config_file": ([*without_max_step, "--config", str(config)],
                                               ["--max_step must be at least 1, got -5"]),
        "adalora_target_r_zero": ([*good, "--adapter", "adalora", "--target_r", "0"],
                                  ["--target_r must be at least 1, got 0", "mask every rank"]),
    }


@pytest.fixture(scope="session")
def file_size_limit():
    """limit(n_bytes): a preexec_fn for subprocess.run under which writing a file past n_bytes fails with EFBIG, as a
    full disk fails a write (SIGXFSZ ignored, so that the write returns the error instead of killing the process)."""
    def limit(n_bytes):
        def apply():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
        return apply
    return limit


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


# the trace tests' model: activations of order 1 (initializer_range 0.2), so that a planted change is far above
# float32 noise
TRACE_CONFIG = GPT2Config(vocab_size=512, n_positions=64, n_embd=32, n_layer=3, n_head=2, initializer_range=0.2)
TRACE_ADAPTERS = {
    "lora": AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32),
    "jelly": AdapterConfig(adapter="jelly", lora_dim=4, lora_alpha=32, jelly_mode="seq2par"),
}


@pytest.fixture(scope="module")
def trace_inputs(tmp_path_factory):
    """(folder, recorder_argv(adapter), n_layer): rows, a small base checkpoint and adapters with nonzero A and B (a fresh
    B = 0 would hide a wrong adapter scale), and the trace recorders' flags for one training step on them."""
    folder = tmp_path_factory.mktemp("trace")
    rng = np.random.default_rng(0)
    write_jsonl(folder / "rows.jsonl", [{"context": rng.integers(0, TRACE_CONFIG.vocab_size, 8).tolist(),
                                         "completion": rng.integers(0, TRACE_CONFIG.vocab_size, 10).tolist()}
                                        for _ in range(4)])
    save_tensors(folder / "base.safetensors", init_base_params(TRACE_CONFIG, seed=1),
                 {"config": TRACE_CONFIG.to_dict()})
    for adapter, adapter_config in TRACE_ADAPTERS.items():
        shapes = init_adapter_params(TRACE_CONFIG, adapter_config, seed=0)
        save_tensors(folder / f"{adapter}.safetensors",
                     {name: rng.normal(0, 0.1, a.shape).astype(np.float32) for name, a in shapes.items()})

    def recorder_argv(adapter):
        adapter_config = TRACE_ADAPTERS[adapter]
        return [str(arg) for arg in [
            "--data", folder / "rows.jsonl", "--init_checkpoint", folder / "base.safetensors",
            "--adapter_checkpoint", folder / f"{adapter}.safetensors", "--adapter", adapter,
            "--lora_dim", adapter_config.lora_dim, "--lora_alpha", int(adapter_config.lora_alpha),
            "--jelly_mode", adapter_config.jelly_mode, "--rows", "4", "--batch_size", "2", "--seq_len", "24",
            "--pad_multiple", "8", "--steps", "1", "--lr", "0.01", "--correct_bias", "--weight_decay", "0.01",
            "--random_seed", "5"]]
    return folder, recorder_argv, TRACE_CONFIG.n_layer


@pytest.fixture(scope="session")
def top_log_softmax_case():
    """case(k) -> (logits [9, 1000] float32, each row's k best log-probabilities in float64, their columns), for
    both frameworks' top_log_softmax: equal logits (the lower column first) and -inf bans, one row with fewer
    finite logits than some k."""
    def case(k):
        rng = np.random.default_rng(k)
        logits = rng.normal(0, 3, (9, 1000)).astype(np.float32)
        logits[:, 500:600] = np.round(logits[:, 500:600])
        logits[2, :990] = -np.inf
        logits[3, rng.integers(0, 1000, 200)] = -np.inf
        exact = logits.astype(np.float64)
        peak = exact.max(-1, keepdims=True)
        exact -= np.log(np.exp(exact - peak).sum(-1, keepdims=True)) + peak
        order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        return logits, np.take_along_axis(exact, order, axis=1), order
    return case


@pytest.fixture(scope="session")
def token_loss_case():
    """case(label_smooth, vocab_size): hidden [5, 16] and weight [V, 16] (float32), targets and weights (one 0,
    one 0.5), and in float64 the loss, sum of weight * ((1 - ls) * -log p[target] + ls * mean of -log p), and
    the gradient of the logits hidden weight^T, for both frameworks' LM head losses."""
    def case(label_smooth, vocab_size):
        rng = np.random.default_rng(3)
        hidden, weight = (rng.normal(0, 1, shape).astype(np.float32) for shape in ((5, 16), (vocab_size, 16)))
        targets, weights = rng.integers(0, vocab_size, 5), np.array([1, 0, 1, 1, 0.5], np.float32)
        logits = hidden.astype(np.float64) @ weight.T
        log_normalizer = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        per_token = log_normalizer - logits[np.arange(5), targets]
        per_token = (1 - label_smooth) * per_token + label_smooth * (log_normalizer - logits.mean(-1))
        smoothed = np.full(logits.shape, label_smooth / vocab_size)
        smoothed[np.arange(5), targets] += 1 - label_smooth
        logits_grad = (np.exp(logits - log_normalizer[:, None]) - smoothed) * weights[:, None]
        return SimpleNamespace(hidden=hidden, weight=weight, targets=targets, weights=weights,
                               loss=(per_token * weights).sum(), logits_grad=logits_grad)
    return case
