"""`python -m alignment trace`: the pre-flight check stops runs that do not start alike, and the whole command on
the shipped gpt2.tiny (PyTorch here, Jittor in its environment) names no module.

Planted divergences and --isolate: tests/jittor/test_trace.py.
"""
import subprocess
import sys

import numpy as np

from alignment import trace
from common_data.checkpoint import load_tensors
from common_data.jsonl import read_jsonl, write_jsonl
from common_data.paths import REPO_ROOT
from NLG_pytorch.src import trace_hooks


def torch_trace(argv, output):
    assert trace_hooks.main([*argv, "--output", str(output)]) == 0
    return load_tensors(output)


def test_preflight_catches_a_different_seed_and_a_different_batch(trace_inputs, tmp_path):
    folder, recorder_argv, _ = trace_inputs
    argv = recorder_argv("lora")
    reference = torch_trace(argv, tmp_path / "reference.safetensors")
    again = torch_trace(argv, tmp_path / "again.safetensors")
    assert trace.preflight(reference, again, "again") == []
    assert all(np.array_equal(reference[0][key], again[0][key]) for key in reference[0])

    seeded = torch_trace([*argv, "--random_seed", "6"], tmp_path / "seed.safetensors")
    problems = trace.preflight(reference, seeded, "seed")
    assert any(problem.startswith("seed: --random_seed 6, the reference's is 5") for problem in problems), problems

    rows = folder / "rows.jsonl"
    original = list(read_jsonl(rows))
    write_jsonl(rows, [{**row, "completion": row["completion"][::-1]} for row in original])
    try:
        other_batch = torch_trace(argv, tmp_path / "batch.safetensors")
    finally:
        write_jsonl(rows, original)
    problems = trace.preflight(reference, other_batch, "batch")
    assert problems and all("the batch differs" in problem for problem in problems), problems
    assert any(problem.startswith("batch: the batch differs: 1/batch/input_ids at (") for problem in problems)


def test_the_trace_command_on_gpt2_tiny_names_no_module(tmp_path):
    data = tmp_path / "rows.jsonl"
    rng = np.random.default_rng(3)
    write_jsonl(data, [{"context": rng.integers(0, 50257, 6).tolist(), "completion": rng.integers(0, 50257, 6).tolist()}
                       for _ in range(2)])
    command = [sys.executable, "-m", "alignment", "trace", "--work-dir", tmp_path / "traces",
               "--out-md", tmp_path / "trace.md", "--figures", tmp_path / "figures", "--",
               "--data", data, "--model_card", "gpt2.tiny", "--lora_dim", "4", "--lora_alpha", "32", "--rows", "2",
               "--batch_size", "2", "--seq_len", "16", "--pad_multiple", "8", "--steps", "1", "--lr", "0.01",
               "--correct_bias", "--beam_contexts", "1", "--beam", "2", "--eval_len", "3"]
    result = subprocess.run([str(arg) for arg in command], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no module over the tolerance" in result.stdout
    report = (tmp_path / "trace.md").read_text()
    for heading in ("Verdict", "Pre-flight", "Forward pass, step 1", "Backward pass, step 1", "Update, step 1",
                    "Decoding"):
        assert f"\n## {heading}\n" in report
    assert "| h.3.mlp.c_proj |" in report and "| 0 | none |" in report
    assert (tmp_path / "figures" / "trace_errors.png").stat().st_size > 10_000
    assert (tmp_path / "trace.html").read_text().count("<h2>") == report.count("\n## ")
