"""gpt2_ft.py on gpt2.tiny over a slice of E2E: learning, checkpoints, JELLY switch, resume, NaN stop, precision."""
import json

import numpy as np
import pytest

from common_data.model.checkpoint import load_model_checkpoint, load_tensors
from common_data.training.resume import newest_resumable_step
from common_data.training.runlog import AdapterLine, EvalLine, TrainLine, parse_line, read_metrics
from common_data.training.schedule import learning_rate
from common_data.cli.ft_args import parse_args
from NLG_pytorch.src import gpt2_ft, probe
from NLG_pytorch.src.distributed import init_ranks


def ft_argv(data, work_dir, *flags):
    return ["--train_data", str(data["train"]), "--valid_data", str(data["valid"]), "--model_card", "gpt2.tiny",
            "--work_dir", str(work_dir), "--train_batch_size", "8", "--valid_batch_size", "8", "--random_seed", "3",
            "--correct_bias", "--adam_beta2", "0.999", "--log_interval", "1", "--eval_interval", "1000", *flags]


def train(data, work_dir, *flags):
    """Run gpt2_ft.main in this process; returns its exit status."""
    return gpt2_ft.main(ft_argv(data, work_dir, *flags))


def events(work_dir, kind):
    return [event for event in read_metrics(work_dir / "metrics.jsonl") if event["event"] == kind]


def console_records(text):
    return [record for record in map(parse_line, text.splitlines()) if record is not None]


def test_full_fine_tuning_lowers_the_loss_clearly(e2e_encoded, tmp_path):
    # 80 steps of a randomly initialised gpt2.tiny: the loss starts near ln(50257) = 10.8
    assert train(e2e_encoded, tmp_path, "--lora_dim", "0", "--train_batch_size", "4", "--lr", "0.004",
                 "--warmup_step", "10", "--max_step", "80", "--log_interval", "10", "--save_interval", "80",
                 "--eval_interval", "80") == 0
    averages = [event["avg_loss"] for event in events(tmp_path, "train")]
    assert len(averages) == 8
    assert averages[0] > 8.0
    assert averages[-1] < 5.5 and max(averages[2:]) < min(averages[:2])
    (evaluation,) = events(tmp_path, "eval")
    assert evaluation["valid_loss"] < 6.0

    arrays, metadata = load_model_checkpoint(tmp_path / "model.80.safetensors")
    assert "wte.weight" in arrays and "h.3.mlp.c_fc.weight" in arrays
    assert (metadata["step"], metadata["adapter_mode"]) == (80, "full")
    run = json.loads((tmp_path / "run.json").read_text())
    assert (run["status"], run["final_step"], run["args"]["lora_dim"]) == ("finished", 80, 0)
    assert run["trainable_parameters"] == sum(array.size for array in arrays.values())
    assert {"setup", "train", "eval", "save"} <= set(run["phases_s"])
    assert run["framework"]["name"] == "torch" and run["peak_memory"]["bytes"] > 0


def test_lora_run_logs_like_microsoft_lora_and_saves_adapters_only(e2e_encoded, tmp_path, capsys):
    assert train(e2e_encoded, tmp_path, "--lora_dim", "4", "--lora_alpha", "32", "--lr", "0.0002",
                 "--warmup_step", "2", "--max_step", "6", "--save_interval", "3", "--eval_interval", "6") == 0
    records = console_records(capsys.readouterr().out)
    assert records[0] == AdapterLine("lora", "parallel", 0)
    train_lines = [record for record in records if isinstance(record, TrainLine)]
    assert [line.step for line in train_lines] == [1, 2, 3, 4, 5, 6]
    assert [f"{line.lr:.3g}" for line in train_lines] == \
        [f"{learning_rate(step, 2e-4, 'linear', 2, 6):.3g}" for step in range(1, 7)]
    assert ("checkpoint", {"path": str(tmp_path / "model.3.safetensors")}) in records
    assert [(record.index, record.step) for record in records if isinstance(record, EvalLine)] == [(1, 6)]
    events = list(read_metrics(tmp_path / "metrics.jsonl"))
    assert [event["event"] for event in events] == \
        ["start"] + ["step", "train"] * 3 + ["checkpoint"] + ["step", "train"] * 3 + ["eval", "checkpoint", "end"]
    # every step's loss is logged, the console's logged batch among them
    assert [(event["step"], event["loss"]) for event in events if event["event"] == "step"] == \
        [(event["step"], event["loss"]) for event in events if event["event"] == "train"]

    arrays, metadata = load_model_checkpoint(tmp_path / "model.3.safetensors")
    assert len(arrays) == 4 * 2 * 2  # layers x (q, v) x (A, B)
    assert all(".lora_A." in name or ".lora_B." in name for name in arrays)
    assert arrays["h.0.attn.c_attn.lora_A.q"].shape == (4, 256)
    assert metadata["step"] == 3 and metadata["adapter_config"]["lora_dim"] == 4
    assert json.loads((tmp_path / "model.3.json").read_text()) == metadata
    trainer_arrays, trainer_metadata = load_tensors(tmp_path / "trainer.3.safetensors")
    assert set(trainer_metadata["optimizer_steps"].values()) == {3}
    assert "rng.torch.0" in trainer_arrays and "exp_avg.h.2.attn.c_attn.lora_B.v" in trainer_arrays


def test_the_run_json_of_a_run_repeats_it(e2e_encoded, tmp_path):
    # adapter dropout and label smoothing on: the repeat must take every setting and the seed from run.json
    first, again = tmp_path / "first", tmp_path / "again"
    assert train(e2e_encoded, first, "--lora_dim", "4", "--lora_dropout", "0.1", "--label_smooth", "0.1",
                 "--lr", "0.001", "--warmup_step", "2", "--max_step", "4", "--save_interval", "4") == 0
    assert gpt2_ft.main(["--config", str(first / "run.json"), "--work_dir", str(again)]) == 0
    first_args, again_args = (json.loads((folder / "run.json").read_text())["args"] for folder in (first, again))
    assert {**again_args, "work_dir": None, "config": None} == {**first_args, "work_dir": None}
    assert [event["loss"] for event in events(again, "train")] == [event["loss"] for event in events(first, "train")]
    first_model, _ = load_model_checkpoint(first / "model.4.safetensors")
    again_model, _ = load_model_checkpoint(again / "model.4.safetensors")
    assert all(np.array_equal(first_model[name], again_model[name]) for name in first_model)


def test_a_segment_replayed_from_another_runs_checkpoint_repeats_its_steps(e2e_encoded, tmp_path):
    flags = ("--lora_dim", "4", "--lr", "0.001", "--warmup_step", "1", "--max_step", "6", "--save_interval", "3")
    assert train(e2e_encoded, tmp_path / "run", *flags) == 0
    assert train(e2e_encoded, tmp_path / "segment", *flags, "--resume_from",
                 str(tmp_path / "run" / "trainer.3.safetensors"), "--stop_step", "5") == 0
    original, segment = ([(event["step"], event["loss"]) for event in events(folder, "step")]
                         for folder in (tmp_path / "run", tmp_path / "segment"))
    assert [step for step, _ in segment] == [4, 5] and segment == original[3:5]
    # the schedule still runs to --max_step 6: the rate at step 5 is not the end's 0
    assert [event["lr"] for event in events(tmp_path / "segment", "train")] == \
        [event["lr"] for event in events(tmp_path / "run", "train")][3:5]
    record = json.loads((tmp_path / "segment" / "run.json").read_text())
    assert (record["final_step"], record["stop_step"], record["max_step"]) == (5, 5, 6)


def test_a_probe_from_a_trainer_checkpoint_goes_on_as_the_run(e2e_encoded, tmp_path):
    flags = ("--lora_dim", "4", "--lr", "0.001", "--warmup_step", "1", "--max_step", "6", "--save_interval", "3")
    assert train(e2e_encoded, tmp_path / "run", *flags) == 0
    common = ["--data", str(e2e_encoded["train"]), "--model_card", "gpt2.tiny", "--lora_dim", "4", "--batch_size", "8",
              "--random_seed", "3", "--correct_bias", "--adam_beta2", "0.999", "--lr", "0.001", "--warmup_step", "1",
              "--steps", "3"]
    assert probe.main([*common, "--trainer_checkpoint", str(tmp_path / "run" / "trainer.3.safetensors"),
                       "--output", str(tmp_path / "resumed.safetensors")]) == 0
    assert probe.main([*common, "--output", str(tmp_path / "fresh.safetensors")]) == 0
    run_losses = [event["loss"] for event in events(tmp_path / "run", "step")]
    resumed, fresh = (load_tensors(tmp_path / name)[0]["step_losses"] for name in ("resumed.safetensors",
                                                                                   "fresh.safetensors"))
    # the run's steps 4-6 (the probe takes the loss without the trainer's token rescaling: last bits differ)
    assert np.abs(resumed - run_losses[3:]).max() < 1e-5
    assert np.abs(fresh - run_losses[3:]).max() > 1e-2


def test_eval_at_start_adds_a_step_0_evaluation_and_changes_nothing_else(e2e_encoded, tmp_path, capsys):
    # with adapter dropout on, an evaluation that drew random numbers would shift every later mask
    flags = ("--lora_dim", "4", "--lora_dropout", "0.1", "--lr", "0.001", "--warmup_step", "1", "--max_step", "3",
             "--eval_interval", "3", "--save_interval", "3")
    assert train(e2e_encoded, tmp_path / "plain", *flags) == 0
    capsys.readouterr()
    assert train(e2e_encoded, tmp_path / "start", *flags, "--eval_at_start") == 0
    records = console_records(capsys.readouterr().out)
    assert [(record.index, record.step) for record in records if isinstance(record, EvalLine)] == [(0, 0), (1, 3)]
    start_events = read_metrics(tmp_path / "start" / "metrics.jsonl")
    assert [event["event"] for event in start_events[:3]] == ["start", "eval", "step"]
    evaluations = events(tmp_path / "start", "eval")
    assert evaluations[0]["step"] == 0 and evaluations[0]["valid_loss"] != evaluations[1]["valid_loss"]
    assert [event["valid_loss"] for event in evaluations[1:]] == \
        [event["valid_loss"] for event in events(tmp_path / "plain", "eval")]
    assert [event["loss"] for event in events(tmp_path / "start", "train")] == \
        [event["loss"] for event in events(tmp_path / "plain", "train")]


def test_jelly_switches_at_a_fractional_epoch_and_resets_the_adapter_moments(e2e_encoded, tmp_path, capsys):
    # 400 examples / 8 = 50 batches an epoch: 0.1 epoch is step 5
    assert train(e2e_encoded, tmp_path, "--adapter", "jelly", "--jelly_mode", "seq2par", "--switch_epoch", "0.1",
                 "--lora_dim", "4", "--lora_alpha", "32", "--lora_targets", "q,v,c_fc", "--lr", "0.001",
                 "--max_step", "8", "--save_interval", "4") == 0
    records = console_records(capsys.readouterr().out)
    adapter_lines = [record for record in records if isinstance(record, AdapterLine)]
    assert adapter_lines == [AdapterLine("jelly", "sequential", 0), AdapterLine("jelly", "parallel", 5, "sequential")]
    assert [(event["step"], event["adapter_mode"]) for event in events(tmp_path, "switch")] == [(5, "parallel")]
    assert [event["adapter_mode"] for event in events(tmp_path, "train")] == ["sequential"] * 5 + ["parallel"] * 3

    before, before_metadata = load_model_checkpoint(tmp_path / "model.4.safetensors")
    after, after_metadata = load_model_checkpoint(tmp_path / "model.8.safetensors")
    assert (before_metadata["adapter_mode"], after_metadata["adapter_mode"]) == ("sequential", "parallel")
    assert before["h.1.mlp.c_fc.lora_A.c_fc"].shape == (4, 1024)  # r x d_out while sequential
    assert after["h.1.mlp.c_fc.lora_A.c_fc"].shape == (4, 256)  # r x d_in once parallel
    assert set(load_tensors(tmp_path / "trainer.4.safetensors")[1]["optimizer_steps"].values()) == {4}
    assert set(load_tensors(tmp_path / "trainer.8.safetensors")[1]["optimizer_steps"].values()) == {3}


class SimulatedCrash(Exception):
    pass


RESUMED_RUNS = {
    "jelly": ["--adapter", "jelly", "--switch_step", "5", "--lora_dim", "4", "--lora_alpha", "32"],
    # rank allocations at steps 4, 6, 8 and the final one at 9, kept to step 12
    "adalora": ["--adapter", "adalora", "--lora_targets", "c_attn", "--init_r", "4", "--target_r", "2", "--tinit", "2",
                "--tfinal", "3", "--deltaT", "2", "--lora_alpha", "32"],
}


@pytest.mark.parametrize("run, dropout_rng", [("jelly", "framework"), ("jelly", "shared"), ("adalora", "framework")])
def test_an_interrupted_and_resumed_run_repeats_the_uninterrupted_one(e2e_encoded, tmp_path, monkeypatch, capsys,
                                                                      run, dropout_rng):
    # JELLY switching before the checkpoint and adapter dropout: resume must restore mode, moments and RNG (shared
    # masks need no RNG state: they are keyed by the step); AdaLoRA allocating ranks on both sides of it: resume
    # must restore the allocator's scores and masks
    flags = [*RESUMED_RUNS[run], "--lora_dropout", "0.1", "--lr", "0.001", "--warmup_step", "3", "--max_step", "12",
             "--save_interval", "6", "--log_interval", "4", "--eval_interval", "6", "--dropout_rng", dropout_rng]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train(e2e_encoded, whole, *flags) == 0

    original = gpt2_ft.Trainer.train_batch

    def crash_in_step_10(trainer, batch):
        if trainer.progress.step == 9:
            raise SimulatedCrash
        return original(trainer, batch)

    monkeypatch.setattr(gpt2_ft.Trainer, "train_batch", crash_in_step_10)
    with pytest.raises(SimulatedCrash):
        train(e2e_encoded, parts, *flags)
    monkeypatch.undo()
    assert [event["step"] for event in events(parts, "train")] == [4, 8]
    capsys.readouterr()
    assert train(e2e_encoded, parts, *flags, "--resume") == 0
    assert f"resuming from {parts / 'model.6.safetensors'}" in capsys.readouterr().out

    def logged(folder):
        return [(e["step"], e["epoch"], e["loss"], e["avg_loss"], e["lr"]) for e in events(folder, "train")]

    assert logged(parts) == logged(whole)

    def allocated(folder):
        return [(e["step"], e["budget"], e["ranks"]) for e in events(folder, "rank_allocation")]

    assert allocated(parts) == allocated(whole)
    assert [step for step, _, _ in allocated(whole)] == ([4, 6, 8, 9] if run == "adalora" else [])
    def evaluated(folder):
        return [(e["step"], e["valid_loss"], e["best_ppl"]) for e in events(folder, "eval")]

    assert len(evaluated(whole)) == 2 and evaluated(parts) == evaluated(whole)
    final_parts, _ = load_model_checkpoint(parts / "model.12.safetensors")
    final_whole, _ = load_model_checkpoint(whole / "model.12.safetensors")
    assert all(np.array_equal(final_parts[name], final_whole[name]) for name in final_whole)
    run = json.loads((parts / "run.json").read_text())
    assert run["resumed_from_step"] == 6 and len(run["previous_runs"]) == 1


def test_adalora_resumes_its_allocator_from_the_trainer_checkpoint(e2e_encoded, tmp_path):
    # the masks rarely change when the scores restart (masked triplets keep scoring low): check the state itself
    flags = [*RESUMED_RUNS["adalora"], "--lr", "0.001", "--max_step", "12", "--save_interval", "6"]
    assert train(e2e_encoded, tmp_path, *flags) == 0
    arrays, _ = load_tensors(tmp_path / "trainer.6.safetensors")
    for path in tmp_path.glob("*.12.*"):
        path.unlink()
    ranks = init_ranks()
    try:
        trainer = gpt2_ft.Trainer(parse_args(ft_argv(e2e_encoded, tmp_path, *flags, "--resume")), ranks)
        assert trainer.resume() == 6
    finally:
        ranks.close()
    allocator = trainer.allocator
    adapter_tensors = {name for name in trainer.model.state_dict() if ".lora_" in name}
    for kind, values in (("sensitivity", allocator.sensitivity), ("uncertainty", allocator.uncertainty)):
        assert set(values) == adapter_tensors
        for name, value in values.items():
            assert value.abs().sum() > 0 and np.array_equal(value.numpy(), arrays[f"adalora.{kind}.{name}"])
    (allocated,) = [event["ranks"] for event in events(tmp_path, "rank_allocation") if event["step"] == 6]
    assert allocator.budget.ranks() == allocated and sum(allocated.values()) < 16


def test_resume_refuses_a_work_dir_of_another_configuration(e2e_encoded, tmp_path, capsys):
    assert train(e2e_encoded, tmp_path, "--lora_dim", "4", "--max_step", "2", "--save_interval", "2") == 0
    capsys.readouterr()
    assert train(e2e_encoded, tmp_path, "--lora_dim", "8", "--max_step", "4", "--save_interval", "2", "--resume") == 1
    assert "--lora_dim 4 there, 8 here" in capsys.readouterr().err


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(e2e_encoded, tmp_path, capsys):
    # the update of step 2 runs at lr 5e29: the weights blow up and the loss of step 3 is not finite
    flags = ["--lora_dim", "4", "--lr", "1e30", "--scheduler", "constant", "--warmup_step", "2",
             "--save_interval", "1"]
    assert train(e2e_encoded, tmp_path / "blown", *flags, "--max_step", "6") == 1
    message = capsys.readouterr().err
    assert "the training loss is" in message and "at step 3" in message
    blown = tmp_path / "blown"
    assert newest_resumable_step(blown) == 2 and not (blown / "model.3.safetensors").exists()
    run = json.loads((blown / "run.json").read_text())
    assert run["status"].startswith("stopped") and run["final_step"] == 2
    assert events(blown, "end")[0]["status"] == run["status"]

    assert train(e2e_encoded, tmp_path / "reference", *flags, "--max_step", "2") == 0
    kept, _ = load_model_checkpoint(blown / "model.2.safetensors")
    reference, _ = load_model_checkpoint(tmp_path / "reference" / "model.2.safetensors")
    assert all(np.array_equal(kept[name], reference[name]) for name in reference)


def test_microsoft_lora_padding_and_full_logits_give_the_same_losses(e2e_encoded, tmp_path):
    flags = ["--lora_dim", "4", "--lr", "0.001", "--max_step", "3", "--save_interval", "3", "--seq_len", "128"]
    assert train(e2e_encoded, tmp_path / "dynamic", *flags) == 0
    assert train(e2e_encoded, tmp_path / "padded", *flags, "--pad_to_seq_len", "--full_logits") == 0
    dynamic = [event["loss"] for event in events(tmp_path / "dynamic", "train")]
    padded = [event["loss"] for event in events(tmp_path / "padded", "train")]
    assert padded == pytest.approx(dynamic, abs=1e-5)


@pytest.mark.parametrize("precision", ["--bf16", "--fp16"])
def test_autocast_trains_close_to_float32(e2e_encoded, tmp_path, precision):
    flags = ["--lora_dim", "4", "--lr", "0.01", "--max_step", "2", "--save_interval", "2", "--train_batch_size", "2"]
    assert train(e2e_encoded, tmp_path / "fp32", *flags) == 0
    assert train(e2e_encoded, tmp_path / "autocast", *flags, precision) == 0
    reference = [event["loss"] for event in events(tmp_path / "fp32", "train")]
    autocast = [event["loss"] for event in events(tmp_path / "autocast", "train")]
    assert autocast == pytest.approx(reference, abs=0.05)
    assert json.loads((tmp_path / "autocast" / "run.json").read_text())["args"][precision[2:]] is True
