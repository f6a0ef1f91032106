"""bench/jittor_worker.py, as python -m bench runs it: measurements of our Jittor training and decoding."""
import json
import math
import subprocess
import sys
from dataclasses import asdict

from bench import workload
from common_data.encoding import encode_rows, load_tokenizer
from common_data.jsonl import read_jsonl, write_jsonl


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
    assert measurement["counts"] == workload.timed_token_counts(spec, workload.load_train_examples(spec))
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
