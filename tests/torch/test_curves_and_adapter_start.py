"""gpt2_ft.py --tensorboard: TensorBoard's own reader finds the values of metrics.jsonl in the event files; and
--adapter_checkpoint continues an adapter that went out to peft's format and came back (model_process.py)."""
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import model_process
from alignment.cli import tensorboard_line
from alignment.report import DatasetInputs
from common_data.model.checkpoint import save_tensors
from common_data.model.gpt2_config import config_for_card
from common_data.model.init_params import init_base_params
from common_data.training.runlog import read_metrics
from common_data.training.tensorboard_log.curves import TAGS
from NLG_pytorch.src import gpt2_ft


def step_losses(work_dir):
    return [event["loss"] for event in read_metrics(work_dir / "metrics.jsonl") if event["event"] == "step"]


def test_tensorboard_holds_the_values_of_metrics_jsonl(tiny_trainer_argv, tmp_path):
    work_dir = tmp_path / "run"
    assert gpt2_ft.main([*tiny_trainer_argv, "--max_step", "2", "--log_interval", "1", "--eval_interval", "1",
                         "--work_dir", str(work_dir), "--tensorboard", str(tmp_path / "tb")]) == 0
    curves = EventAccumulator(str(tmp_path / "tb"))
    curves.Reload()
    found = {tag: {event.step: event.value for event in curves.Scalars(tag)} for tag in curves.Tags()["scalars"]}
    expected = {tag: {} for fields in TAGS.values() for tag in fields.values()}
    for event in read_metrics(work_dir / "metrics.jsonl"):
        for field, tag in TAGS.get(event["event"], {}).items():
            expected[tag][event["step"]] = float(np.float32(event[field]))
    assert found == expected
    assert sorted(found["train/loss"]) == [1, 2] and found["valid/loss"] and found["memory/peak_bytes"][2] > 0
    # python -m alignment report points to them
    line = tensorboard_line([DatasetInputs("e2e", torch_run=work_dir)])
    assert line == f"training curves: tensorboard --logdir_spec e2e_torch:{tmp_path / 'tb'}"


def test_adapter_checkpoint_continues_an_adapter_back_from_peft(tiny_trainer_argv, tmp_path):
    first = tmp_path / "first"
    assert gpt2_ft.main([*tiny_trainer_argv, "--max_step", "2", "--lora_alpha", "32", "--work_dir", str(first)]) == 0
    base = tmp_path / "base.safetensors"  # the trainer's base without --init_checkpoint: drawn from --random_seed 10
    config = config_for_card("gpt2.tiny")
    save_tensors(base, init_base_params(config, 10), {"config": config.to_dict()})
    assert model_process.main(["export-peft", str(first / "model.2.safetensors"), str(tmp_path / "peft"),
                               "--base_model", "gpt2"]) == 0
    assert model_process.main(["import-peft", str(tmp_path / "peft"), str(tmp_path / "back.safetensors"),
                               "--base", str(base)]) == 0
    losses = {}
    for name, checkpoint in (("original", first / "model.2.safetensors"), ("back", tmp_path / "back.safetensors")):
        # the flags say rank 4 and alpha 128: the checkpoint's own adapter configuration replaces them
        assert gpt2_ft.main([*tiny_trainer_argv, "--max_step", "1", "--adapter_checkpoint", str(checkpoint),
                             "--work_dir", str(tmp_path / name)]) == 0
        losses[name] = step_losses(tmp_path / name)
    fresh = step_losses(first)[:1]
    assert losses["back"] == losses["original"] and losses["back"] != fresh
