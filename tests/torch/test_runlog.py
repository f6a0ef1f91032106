import json
import math
import shutil
import subprocess
import sys

import pytest

from common_data.training import runlog
from common_data.training.runlog import AdapterLine, EvalLine, MetricsLog, RunRecord, TrainLine, parse_line, read_metrics

SEED_LOGS = ["torch_e2e_train.log", "jittor_e2e_train.log"]


@pytest.mark.parametrize("name", SEED_LOGS)
def test_train_and_eval_lines_of_the_seed_logs_round_trip(shared, name):
    lines = (shared / "fixtures/seed_run" / name).read_text(encoding="utf-8").splitlines()
    metric_lines = [line for line in lines if line.startswith(("| epoch", "| Eval"))]
    assert len(metric_lines) > 40
    for line in metric_lines:
        record = parse_line(line)
        assert isinstance(record, (TrainLine, EvalLine)), line
        assert str(record) == line


def test_seed_log_lines_read_as_their_fields(shared):
    log = shared / "fixtures/seed_run/torch_e2e_train.log"
    records = runlog.parse_log(log)
    first = records[0]
    assert first == TrainLine(epoch=1, step=100, batches=100, lr=4e-05, ms_per_batch=697.27,
                              loss=4.67, avg_loss=5.56, ppl=260.55)
    kinds = [record[0] for record in records if isinstance(record, tuple)]
    assert kinds.count("checkpoint") == sum(line.startswith("saving checkpoint") for line in log.open())
    assert ("eval_progress", {"batch_index": 0, "loss": 1.2632}) in records
    assert ("checkpoint", {"path": "./trained_models/GPT2_M/e2e/model.947.pt"}) in records
    assert ("end", {}) == records[-1]
    evals = [record for record in records if isinstance(record, EvalLine)]
    assert [(record.index, record.step, record.valid_loss) for record in evals] == [(1, 2000, 1.33), (2, 4000, 1.29)]


def test_jittor_eval_progress_reads_the_value_inside_jt_var():
    assert parse_line("eval samples: 100 loss: jt.Var([1.8544922], dtype=float32)") == \
        ("eval_progress", {"batch_index": 100, "loss": 1.8544922})
    assert parse_line(runlog.eval_progress_line(3, 1.23456)) == ("eval_progress", {"batch_index": 3, "loss": 1.2346})


def test_our_lines_round_trip():
    train = TrainLine(epoch=2, step=1234567, batches=12, lr=1.5e-4, ms_per_batch=12345.678,
                      loss=float("nan"), avg_loss=2.5, ppl=math.exp(2.5))
    assert str(parse_line(str(train))) == str(train)
    assert math.isnan(parse_line(str(train)).loss)
    for line in (AdapterLine("jelly", "sequential", 0), AdapterLine("jelly", "parallel", 300, "sequential")):
        assert parse_line(str(line)) == line
    assert parse_line(runlog.checkpoint_line("w/model.10.safetensors")) == \
        ("checkpoint", {"path": "w/model.10.safetensors"})
    assert parse_line(runlog.epoch_start_line(3)) == ("epoch_start", {"epoch": 3})
    assert parse_line("something else") is None


def test_perplexity_saturates_instead_of_overflowing():
    assert runlog.perplexity(1.0) == pytest.approx(math.e)
    assert runlog.perplexity(1000.0) == math.inf


def test_metrics_log_writes_strict_json_and_resume_keeps_events_up_to_the_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in (1, 2, 3):
        log.write("train", step=step, loss=float(step))
    log.write("eval", step=3, valid_loss=float("inf"))
    log.close()
    events = read_metrics(path)
    assert [(event["event"], event["step"]) for event in events] == \
        [("train", 1), ("train", 2), ("train", 3), ("eval", 3)]
    assert events[3]["valid_loss"] == "inf"

    with path.open("a") as handle:
        handle.write('{"event": "train", "st')  # a run killed mid-line
    log = MetricsLog(path, resume_step=2)
    log.write("train", step=3, loss=9.0)
    log.close()
    assert [(event["step"], event["loss"]) for event in read_metrics(path)] == [(1, 1.0), (2, 2.0), (3, 9.0)]

    assert [event["step"] for event in read_metrics(path)] == [1, 2, 3]
    MetricsLog(path).close()
    assert path.read_text() == ""


def test_read_metrics_names_a_broken_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2: not a JSON object"):
        read_metrics(path)


def test_phases_nest_and_add_up(tmp_path, monkeypatch):
    clock = iter(range(0, 1000, 10))  # every reading of the clock advances it by 10 s
    monkeypatch.setattr(runlog.time, "perf_counter", lambda: next(clock))
    record = RunRecord(tmp_path / "run.json", args={}, framework={}, device="cpu", seed=1)
    with record.phase("setup"):
        pass
    with record.phase("train"):
        with record.phase("eval"):
            pass
        with record.phase("save"):
            pass
    assert record.record["phases_s"] == {"setup": 10, "train": 30, "eval": 10, "save": 10}


def test_run_json_holds_the_run_description(tmp_path):
    path = tmp_path / "run.json"
    record = RunRecord(path, args={"lr": 2e-4, "lora_targets": ("q", "v")}, framework={"name": "torch", "torch": "2"},
                       device="cpu", seed=7)
    with record.phase("train"):
        pass
    record.write("finished", {"kind": "rss", "bytes": runlog.peak_rss_bytes()}, final_step=5)
    saved = json.loads(path.read_text())
    assert saved["args"] == {"lr": 2e-4, "lora_targets": ["q", "v"]}
    assert saved["framework"] == {"name": "torch", "torch": "2"}
    assert (saved["device"], saved["seed"], saved["status"], saved["final_step"]) == ("cpu", 7, "finished", 5)
    assert set(saved["git"]) == {"commit", "dirty"}
    assert saved["phases_s"]["train"] >= 0 and saved["wall_s"] >= saved["phases_s"]["train"]
    assert saved["peak_memory"]["kind"] == "rss" and saved["peak_memory"]["bytes"] > 10 << 20

    resumed = RunRecord(path, args={}, framework={}, device="cpu", seed=7, resumed_from_step=5)
    resumed.write("finished", {"kind": "rss", "bytes": 1})
    again = json.loads(path.read_text())
    assert again["resumed_from_step"] == 5
    assert [run["final_step"] for run in again["previous_runs"]] == [5]


def test_peak_rss_sees_a_large_allocation():
    # in a fresh interpreter: in this one the block may reuse memory that earlier tests freed and glibc kept
    code = ("import psutil; from common_data.training import runlog; before = psutil.Process().memory_info().rss; "
            "block = bytearray(64 << 20); print(runlog.peak_rss_bytes() >= before + len(block) * 0.9)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "True\n"


def test_cpu_name_is_the_model_lscpu_reports():
    if shutil.which("lscpu") is None:
        pytest.skip("lscpu is not installed")
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    model = next(line.partition(":")[2].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    assert runlog.cpu_name() == model


def test_git_state_reports_the_checkout(tmp_path):
    state = runlog.git_state()
    assert state["commit"] is None or len(state["commit"]) == 40
    assert runlog.git_state(tmp_path) == {"commit": None, "dirty": None}
