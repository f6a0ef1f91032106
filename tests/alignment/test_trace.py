"""`python -m alignment trace`: the pre-flight check stops runs that do not start alike, the whole command on the
shipped gpt2.tiny (PyTorch here, Jittor in its environment) names no module, and `python -m alignment report
--trace` shows that trace in a section of its own.

Planted divergences and --isolate: tests/jittor/test_trace.py.
"""
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from alignment import trace
from alignment.cli import main
from common_data.model.checkpoint import load_tensors
from common_data.util.jsonl import read_jsonl, write_jsonl
from common_data.util.paths import REPO_ROOT
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


@pytest.fixture(scope="module")
def tiny_trace(tmp_path_factory):
    """(folder, completed process) of the whole command, with --isolate, on the shipped gpt2.tiny."""
    folder = tmp_path_factory.mktemp("tiny_trace")
    data = folder / "rows.jsonl"
    rng = np.random.default_rng(3)
    write_jsonl(data, [{"context": rng.integers(0, 50257, 6).tolist(), "completion": rng.integers(0, 50257, 6).tolist()}
                       for _ in range(2)])
    command = [sys.executable, "-m", "alignment", "trace", "--isolate", "--work-dir", folder / "traces",
               "--out-md", folder / "trace.md", "--figures", folder / "figures", "--",
               "--data", data, "--model_card", "gpt2.tiny", "--lora_dim", "4", "--lora_alpha", "32", "--rows", "2",
               "--batch_size", "2", "--seq_len", "16", "--pad_multiple", "8", "--steps", "1", "--lr", "0.01",
               "--correct_bias", "--beam_contexts", "1", "--beam", "2", "--eval_len", "3"]
    result = subprocess.run([str(arg) for arg in command], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, result


def test_the_trace_command_on_gpt2_tiny_names_no_module(tiny_trace):
    folder, result = tiny_trace
    assert "no module over the tolerance" in result.stdout
    report = (folder / "trace.md").read_text()
    for heading in ("Verdict", "Pre-flight", "Forward pass, step 1", "Backward pass, step 1", "Update, step 1",
                    "Isolated (--isolate)", "Decoding"):
        assert f"\n## {heading}\n" in report
    assert "| h.3.mlp.c_proj |" in report and "| 0 | none |" in report
    for phase in ("forward", "backward", "update"):
        assert f"\n- {phase}: none over the tolerance\n" in report
    assert (folder / "figures" / "trace_errors.png").stat().st_size > 10_000
    assert (folder / "trace.html").read_text().count("<h2>") == report.count("\n## ")


def test_a_report_given_the_trace_folder_has_its_section_and_figure(tiny_trace, tmp_path, capsys, run_folder,
                                                                    report_sections, report_headings):
    folder, _ = tiny_trace
    runs = [run_folder(tmp_path / side, side, {}, peak_mib=64) for side in ("torch", "jittor")]
    out_md, figures = tmp_path / "log" / "report.md", tmp_path / "figure"
    assert main(["report", "--torch", str(runs[0]), "--jittor", str(runs[1]), "--trace", str(folder / "traces"),
                 "--out-md", str(out_md), "--figures", str(figures)]) == 0
    body = report_sections(out_md.read_text())
    headings = list(report_headings)
    assert list(body) == [*headings[:5], "Layer-by-layer trace", *headings[5:]]  # after the beam outputs and samples
    section = body["Layer-by-layer trace"]
    assert "gpt2.tiny, lora r 4, 1 step(s) of 2 rows x 16 tokens" in section
    assert "runs torch, torch64, jittor, jittor_isolated" in section
    assert "**No module over the tolerance**" in section
    assert "- isolated, step 1: forward: none; backward: none; update: none" in section
    rows = [line.split(" | ")[0].lstrip("| ") for line in section.splitlines() if line.startswith("| ")]
    assert rows[2:] == ["wte", "wpe", "h.0", "h.1", "h.2", "h.3", "ln_f"]
    assert "](../figure/trace_errors.png)" in section
    assert imread(figures / "trace_errors.png").shape[1] > 800
    page = (tmp_path / "log" / "report.html").read_text()
    assert "<h2>Layer-by-layer trace</h2>" in page
    assert 'alt="error per module along the network, forward and backward, step 1"' in page

    with pytest.raises(SystemExit):  # a folder without the trace's manifest
        main(["report", "--torch", str(runs[0]), "--jittor", str(runs[1]), "--trace", str(tmp_path)])
    assert "--trace " + str(tmp_path) + ": no trace.json there" in capsys.readouterr().err
