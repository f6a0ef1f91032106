"""bench/jittor_worker.py, as python -m bench runs it: measurements of our Jittor training and decoding."""
import json
import math
import subprocess
import sys
from dataclasses import asdict

from bench import jittor_profile, report, workload
from common_data.model.gpt2_config import config_for_card
from common_data.data.encoding import encode_rows, load_tokenizer
from common_data.util.jsonl import read_jsonl, write_jsonl


def test_worker_writes_a_training_measurement(shared, tmp_path):
    rows = read_jsonl(shared / "datasets/e2e/train_sampled18_formatted.jsonl")[:64]
    write_jsonl(tmp_path / "train.jsonl", encode_rows(rows, load_tokenizer(shared / "vocab")))
    spec = workload.TrainSpec(str(tmp_path / "train.jsonl"), str(tmp_path / "train.jsonl"), seq_len=128,
                              warmup_steps=1, steps=2)
    workload.write_json(tmp_path / "spec.json", asdict(spec))
    subprocess.run([sys.executable, "-m", "bench.jittor_worker", "train", "--impl", "ours-jittor",
                    "--spec", str(tmp_path / "spec.json"), "--out", str(tmp_path / "out.json")], check=True)
    measurement = json.loads((tmp_path / "out.json").read_text())
    assert set(measurement) == set(asdict(workload.Measurement("", "", "", 0.0, 0, "")))
    assert (measurement["task"], measurement["impl"]) == ("train", "ours-jittor")
    examples = workload.load_train_examples(spec)
    counts = measurement["counts"]
    assert {name: counts[name] for name in ("tokens", "completion_tokens")} == workload.timed_token_counts(spec,
                                                                                                      examples)
    timed = workload.bench_batches(spec, examples)[spec.warmup_steps:]
    assert counts["flops"] == sum(workload.step_flops(config_for_card(spec.model_card), batch) for batch in timed)
    # the LM head (numpy), the blocks' matmuls (oneDNN) and attention (our kernel) are seen and took time
    breakdown = counts["breakdown"]
    assert set(breakdown) == set(report.BREAKDOWN_KINDS)
    assert all(breakdown[kind] > 0 for kind in (workload.LM_HEAD, workload.BLOCK_MATMULS, workload.ATTENTION))
    assert len(measurement["losses"]) == spec.total_steps
    # GPT-2's initialisation predicts nearly uniformly: the loss starts near ln(vocabulary size)
    assert all(abs(loss - math.log(50257)) < 0.3 for loss in measurement["losses"])
    assert measurement["seconds"] > 0 and measurement["peak_memory_bytes"] > 0


def test_worker_writes_a_decoding_measurement(shared, tmp_path):
    rows = read_jsonl(shared / "datasets/e2e/train_sampled18_formatted.jsonl")[:16]
    write_jsonl(tmp_path / "test.jsonl", encode_rows(rows, load_tokenizer(shared / "vocab")))
    spec = workload.DecodeSpec(str(tmp_path / "test.jsonl"), contexts=3, batch_size=3, beam=2, eval_len=8)
    workload.write_json(tmp_path / "spec.json", asdict(spec))
    subprocess.run([sys.executable, "-m", "bench.jittor_worker", "decode", "--impl", "ours-jittor",
                    "--spec", str(tmp_path / "spec.json"), "--out", str(tmp_path / "out.json")], check=True)
    measurement = json.loads((tmp_path / "out.json").read_text())
    assert (measurement["task"], measurement["impl"]) == ("decode", "ours-jittor")
    assert measurement["counts"]["sentences"] == 3
    assert 3 <= measurement["counts"]["generated_tokens"] <= 3 * spec.eval_len


def test_the_profile_names_the_matmuls_of_a_training_step(shared, tmp_path, capsys):
    rows = read_jsonl(shared / "datasets/e2e/train_sampled18_formatted.jsonl")[:16]
    write_jsonl(tmp_path / "train.jsonl", encode_rows(rows, load_tokenizer(shared / "vocab")))
    assert jittor_profile.main(["--steps", "1", "--batch_size", "2", "--seq_len", "64", "--top", "30",
                                "--train_data", str(tmp_path / "train.jsonl")]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = next(index for index, line in enumerate(lines) if line.startswith("1 steps of gpt2.tiny, batch 2"))
    kinds = lines[summary + 1:]
    shares = [float(line.split("%")[0]) for line in kinds]
    # each share is rounded to 0.1%, so their sum may pass 100 by half a unit per line
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 100 + 0.05 * len(shares)
    # forward x W, backward dY x W^T and X^T x dY: the three forms of a linear layer's matmuls
    assert {"mkl_matmul Trans_a:N Trans_b:N", "mkl_matmul Trans_a:N Trans_b:T",
            "mkl_matmul Trans_a:T Trans_b:N"} <= {line.split("calls")[1].strip() for line in kinds}
