"""bench/: the same loss from ours, microsoft/LoRA's padded configuration and transformers + peft, and
log/bench.json's records from a minimal `python -m bench` run (times are never asserted)."""
import json
import math
import os

import numpy as np
import pytest
import torch

from bench import gemm, report, workload
from bench.__main__ import main as bench_main
from bench.hf_worker import hf_labels, hf_model
from common_data.training import batching
from common_data.model.gpt2_config import AdapterConfig, config_for_card
from NLG_pytorch.src.model import GPT2LMModel

RECORD_KEYS = {"task", "impl", "device", "config", "metric", "value", "ratio_to_ours_torch", "samples", "spread",
               "ratio_samples"}
IMPLS = {"ours-torch", "ours-jittor", "padded512", "hf-peft", "hf-generate"}


@pytest.fixture(scope="module")
def spec(e2e_encoded):
    return workload.TrainSpec(str(e2e_encoded["train"]), str(e2e_encoded["valid"]), seq_len=128, warmup_steps=1,
                              steps=2, seed=4)


def test_the_three_losses_agree_on_one_batch(spec):
    examples = workload.load_train_examples(spec)
    (batch,) = workload.bench_batches(spec, examples)[:1]
    (padded,) = workload.bench_batches(spec, examples, pad_to_seq_len=True)[:1]
    assert padded.input_ids.shape == (spec.batch_size, spec.seq_len) and batch.input_ids.shape[1] < spec.seq_len
    ours = GPT2LMModel(config_for_card(spec.model_card), AdapterConfig(lora_dim=4, lora_alpha=32.0), seed=spec.seed)
    hf = hf_model(spec.model_card, spec.seed)

    def tensors(chosen):
        return [torch.from_numpy(array) for array in (chosen.input_ids, chosen.targets, chosen.loss_mask)]

    with torch.no_grad():
        _, loss = ours(*tensors(batch)[:2], loss_mask=tensors(batch)[2])
        input_ids, targets, loss_mask = tensors(padded)
        _, every_position = ours(input_ids, targets=targets, loss_mask=loss_mask, full_logits=True)
        hf_loss = hf(input_ids=tensors(batch)[0], labels=torch.from_numpy(hf_labels(batch))).loss
    assert loss.item() == pytest.approx(every_position.item(), rel=1e-5)
    assert loss.item() == pytest.approx(hf_loss.item(), rel=1e-5)
    assert (hf_labels(batch) != -100).sum() == batch.loss_mask.sum()


def test_the_flops_count_the_blocks_on_the_tokens_they_run_on(spec):
    """Our trainer packs the real tokens; microsoft/LoRA's configuration (full_logits) runs every padded position."""
    (batch,) = workload.bench_batches(spec, workload.load_train_examples(spec))[:1]
    wider = batching.Batch(*(np.pad(array, ((0, 0), (0, 32))) for array in (batch.input_ids, batch.targets,
                                                                            batch.loss_mask)), batch.lengths)
    config = config_for_card(spec.model_card)
    rows, length = batch.input_ids.shape
    attention = 2 * 4 * rows * ((length + 32) ** 2 - length ** 2) * config.n_embd * config.n_layer
    assert workload.step_flops(config, wider) - workload.step_flops(config, batch) == attention
    blocks = 2 * 24 * rows * 32 * config.n_embd ** 2 * config.n_layer
    head = 2 * 2 * rows * 32 * config.n_embd * config.vocab_size
    full = workload.step_flops(config, wider, full_logits=True) - workload.step_flops(config, batch, full_logits=True)
    assert full == attention + blocks + head


def test_token_counts_leave_padding_out(spec):
    examples = workload.load_train_examples(spec)
    timed = workload.bench_batches(spec, examples)[spec.warmup_steps:]
    counts = workload.timed_token_counts(spec, examples)
    assert counts["completion_tokens"] == sum(int(b.loss_mask.sum()) for b in timed)
    padded_width = sum(b.input_ids.size for b in timed)
    assert counts["completion_tokens"] < counts["tokens"] < padded_width
    order = batching.epoch_order(len(examples), spec.batch_size, spec.seed, workload.TRAIN_EPOCH)
    first_row = examples[order[spec.warmup_steps][0]]
    assert np.array_equal(timed[0].input_ids[0, :len(first_row.input_ids)], first_row.input_ids)


def test_bench_writes_records_with_agreeing_losses(spec, tmp_path):
    out, figure = tmp_path / "bench.json", tmp_path / "bench.png"
    status = bench_main(["--tasks", "train", "--impls", "ours-torch,padded512,hf-peft", "--model_card", "gpt2.tiny",
                         "--no-bf16", "--train_data", spec.train_data, "--valid_data", spec.valid_data,
                         "--batch_size", "2", "--seq_len", "64", "--warmup_steps", "1", "--steps", "2", "--repeats", "1",
                         "--seed", "4", "--out", str(out), "--figure", str(figure)])
    assert status == 0
    records = json.loads(out.read_text())
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for record in records:
        assert set(record) == RECORD_KEYS, record
        assert record["impl"] in IMPLS and record["task"] == "train"
        # the rest of a step is its wall time less what the profiler saw, which may be all of it
        assert math.isfinite(record["value"]) and (record["value"] > 0 or record["metric"].startswith("step_seconds"))
        assert record["config"]["model_card"] == "gpt2.tiny" and record["config"]["steps"] == 2
    value = {(r["impl"], r["metric"]): r["value"] for r in records}
    ratio = {(r["impl"], r["metric"]): r["ratio_to_ours_torch"] for r in records}
    impls = {"ours-torch", "padded512", "hf-peft"}
    assert {impl for impl, _ in value} == impls
    for impl in impls:
        assert value[impl, "first_loss"] == pytest.approx(value["ours-torch", "first_loss"], rel=1e-5)
        # peft adapts all of c_attn with torch's AdamW: after the first update the losses drift apart a little
        assert value[impl, "mean_loss"] == pytest.approx(value["ours-torch", "mean_loss"], rel=1e-3)
        assert ratio[impl, "tokens_per_s"] == pytest.approx(value[impl, "tokens_per_s"]
                                                            / value["ours-torch", "tokens_per_s"])
        # the same batches: tokens per completion token is the same for every implementation
        assert value[impl, "tokens_per_s"] / value[impl, "completion_tokens_per_s"] == pytest.approx(
            value["ours-torch", "tokens_per_s"] / value["ours-torch", "completion_tokens_per_s"])
    assert value["padded512", "mean_loss"] == pytest.approx(value["ours-torch", "mean_loss"], rel=1e-5)
    assert ratio["ours-torch", "tokens_per_s"] == 1.0


def test_ours_report_flops_and_where_the_step_goes_and_the_others_do_not(spec, tmp_path):
    out = tmp_path / "bench.json"
    bench_main(["--tasks", "train", "--impls", "ours-torch,hf-peft", "--train_data", spec.train_data,
                "--valid_data", spec.valid_data, "--batch_size", "2", "--seq_len", "64", "--warmup_steps", "1",
                "--steps", "2", "--repeats", "1", "--out", str(out), "--figure", str(tmp_path / "bench.png")])
    metrics = {(r["impl"], r["metric"]): r["value"] for r in json.loads(out.read_text())}
    assert metrics["ours-torch", "gflops"] > 0
    assert metrics["ours-torch", f"step_seconds: {workload.LM_HEAD}"] > 0
    assert metrics["ours-torch", f"step_seconds: {workload.BLOCK_MATMULS}"] > 0
    assert ("hf-peft", "tokens_per_s") in metrics and ("hf-peft", "gflops") not in metrics


def test_the_gemm_task_measures_each_shape_on_one_thread_and_on_all_cores(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_main(["--tasks", "gemm", "--impls", "numpy-openblas", "--repeats", "1", "--out", str(out),
                       "--figure", str(tmp_path / "bench.png")]) == 0
    records = json.loads(out.read_text())
    threads = sorted({1, os.cpu_count()})
    assert {(r["impl"], r["metric"]) for r in records} == {
        (f"numpy-openblas x{count}", f"gflops_{shape}") for count in threads for shape in gemm.SHAPES}
    assert all(record["value"] > 0 for record in records)
    assert records[0]["config"]["rows"] == 192 and records[0]["config"]["library"].startswith("numpy")


def test_a_steps_share_of_the_limit_is_over_the_best_gemm_at_its_thread_count():
    def record(task, impl, metric, value):
        return {"task": task, "impl": impl, "metric": metric, "value": value, "samples": [value], "config": {}}
    records = [record("gemm", "a x1", "gflops_square", 50.0), record("gemm", "a x2", "gflops_square", 80.0),
               record("gemm", "b x2", "gflops_lm_head_forward", 100.0), record("train", "ours-torch", "gflops", 25.0)]
    shares = [r for r in report.add_limit_shares(records, 2) if r["metric"] == "share_of_gemm_limit"]
    assert [(r["impl"], r["value"], r["config"]["gemm_limit_gflops"]) for r in shares] == [("ours-torch", 0.25, 100.0)]
    assert report.add_limit_shares(records, 4) == records


def test_figure_without_ours_torch_has_no_ratios(tmp_path):
    # `python -m bench --impls ours-jittor` measures no reference: the figure still draws, without ratios
    measurement = {"seconds": 2.0, "counts": {"tokens": 100, "completion_tokens": 40}, "peak_memory_bytes": 2 ** 20,
                   "losses": [10.0], "config": {}, "memory_kind": "rss"}
    records = report.build_records({("train", "ours-jittor"): [measurement]}, {("train", "hf-peft"): "failed"},
                                   "cpu", {"train": {}})
    assert {record["ratio_to_ours_torch"] for record in records} == {None}
    report.plot(records, tmp_path / "bench.png", "title")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [report.ratio_label(None, False), report.ratio_label(0.5, False), report.ratio_label(None, True)] == [
        "", "0.50x", "missing"]


def test_records_give_the_spread_and_warn_when_a_ratio_moves_between_repeats():
    def measurement(seconds):
        return {"seconds": seconds, "counts": {"tokens": 100, "completion_tokens": 40}, "peak_memory_bytes": 2 ** 20,
                "losses": [10.0], "config": {}, "memory_kind": "rss"}

    def records_for(jittor_seconds):
        runs = {("train", "ours-torch"): [measurement(1.0), measurement(2.0), measurement(1.0)],
                ("train", "ours-jittor"): [measurement(seconds) for seconds in jittor_seconds]}
        return report.build_records(runs, {}, "cpu", {"train": {}})

    steady = records_for([1.1, 2.2, 1.1])  # slower by the same factor in every repeat, whatever the load
    tokens = {r["impl"]: r for r in steady if r["metric"] == "tokens_per_s"}
    assert tokens["ours-torch"]["spread"] == pytest.approx((100 - 50) / 100)
    assert tokens["ours-jittor"]["ratio_samples"] == pytest.approx([1 / 1.1] * 3)
    assert report.unstable_ratios(steady) == []
    moving = report.unstable_ratios(records_for([1.1, 2.0, 1.4]))
    assert any("tokens_per_s ours-jittor" in warning for warning in moving)
