"""The framework-neutral side of resuming: progress round trip, the newest complete checkpoint, the run check."""
import argparse
import math

import numpy as np
import pytest

from common_data.model.checkpoint import save_model_checkpoint
from common_data.cli.ft_args import build_parser
from common_data.training.resume import Progress, load_trainer_state, newest_resumable_step, save_trainer_state


def test_progress_survives_its_json_form_with_infinite_and_nan_fields():
    progress = Progress(step=7, epoch=2, batches_done=3)
    progress.add_loss(2.5, tokens=40.0, seconds=0.25)
    restored = Progress.from_dict(progress.to_dict())
    assert restored == progress
    fresh = Progress.from_dict(Progress().to_dict())
    assert fresh.best_valid_ppl == math.inf and math.isnan(fresh.last_loss)


def args(**changes):
    """gpt2_ft.py's arguments: its defaults (every flag, those added later included), then these values."""
    values = vars(build_parser().parse_args(["--train_data", "t.jsonl", "--valid_data", "v.jsonl"]))
    values.update(train_batch_size=8, seq_len=512, model_card="gpt2.tiny", init_checkpoint=None, lora_dim=4,
                  lora_alpha=32, adapter="lora", jelly_mode="seq2par", lora_targets=("q", "v"), random_seed=1,
                  grad_acc=1, label_smooth=0.1, dropout_rng="framework", use_rslora=False, loraplus_lr_ratio=None,
                  lr=2e-4)
    return argparse.Namespace(**{**values, **changes})


def write_step(folder, step, trainer=True):
    save_model_checkpoint(folder, step, {"w": np.zeros(2, np.float32)}, {"step": step})
    if trainer:
        save_trainer_state(folder, step, {"exp_avg.w": np.ones(2, np.float32)}, Progress(step=step), {"w": step},
                           args(), scaler={})


def test_the_newest_step_with_a_trainer_file_is_resumed(tmp_path):
    assert newest_resumable_step(tmp_path) is None
    write_step(tmp_path, 5)
    write_step(tmp_path, 10)
    write_step(tmp_path, 15, trainer=False)  # a run killed between the two files
    assert newest_resumable_step(tmp_path) == 10
    arrays, metadata = load_trainer_state(tmp_path, 10, args(lr=1e-3, seq_len=512))
    assert metadata["optimizer_steps"] == {"w": 10} and Progress.from_dict(metadata["progress"]).step == 10
    assert np.array_equal(arrays["exp_avg.w"], np.ones(2))


def test_resuming_with_other_settings_names_them(tmp_path):
    write_step(tmp_path, 5)
    with pytest.raises(ValueError, match="--seq_len 512 there, 256 here; --lora_targets 'q,v' there, 'q,k' here"):
        load_trainer_state(tmp_path, 5, args(seq_len=256, lora_targets=("q", "k")))
    with pytest.raises(ValueError, match="--use_rslora False there, True here"):
        load_trainer_state(tmp_path, 5, args(use_rslora=True))


def test_a_checkpoint_from_before_dropout_rng_continues_with_the_frameworks_masks(tmp_path):
    older = vars(args())
    del older["dropout_rng"]
    save_model_checkpoint(tmp_path, 5, {"w": np.zeros(2, np.float32)}, {"step": 5})
    save_trainer_state(tmp_path, 5, {}, Progress(step=5), {}, argparse.Namespace(**older))
    assert load_trainer_state(tmp_path, 5, args())[1]["progress"]["step"] == 5
    with pytest.raises(ValueError, match="--dropout_rng 'framework' there, 'shared' here"):
        load_trainer_state(tmp_path, 5, args(dropout_rng="shared"))
