"""Resuming a run, framework-neutral: its progress, and the trainer.{step}.safetensors written beside each
model checkpoint (optimizer moments and every rank's RNG state as arrays; progress, optimizer step
counts and arguments as metadata).

The trainer file is written after the model file, so a step with a trainer file is complete.
"""
import dataclasses
import math
import re
from pathlib import Path

from common_data.model.checkpoint import (checkpoint_steps, load_tensors, model_checkpoint_path, save_tensors,
                                    trainer_checkpoint_path)

# Arguments a resumed run must share with the run it continues.
RESUME_KEYS = ("train_data", "train_batch_size", "seq_len", "model_card",
               "init_checkpoint", "lora_dim", "lora_alpha", "adapter", "jelly_mode", "lora_targets",
               "use_rslora", "loraplus_lr_ratio", "random_seed", "grad_acc", "label_smooth", "dropout_rng",
               "target_r", "tinit", "tfinal", "deltaT", "adalora_beta1", "adalora_beta2", "orth_reg_weight")
# The values of keys added to RESUME_KEYS later, in the checkpoints written before them.
EARLIER_DEFAULTS = {"dropout_rng": "framework", "use_rslora": False, "loraplus_lr_ratio": None, "target_r": 8,
                    "tinit": 0, "tfinal": 0, "deltaT": 1, "adalora_beta1": 0.85, "adalora_beta2": 0.85,
                    "orth_reg_weight": 0.5}


@dataclasses.dataclass
class Progress:
    """Where training stands. The interval fields hold the losses since the last console line."""
    step: int = 0
    epoch: int = 1
    batches_done: int = 0
    best_valid_ppl: float = math.inf
    interval_loss_sum: float = 0.0
    interval_batches: int = 0
    interval_tokens: float = 0.0
    interval_seconds: float = 0.0
    last_loss: float = math.nan

    def add_loss(self, loss, tokens, seconds):
        self.last_loss = loss
        self.interval_loss_sum += loss
        self.interval_batches += 1
        self.interval_tokens += tokens
        self.interval_seconds += seconds

    def reset_interval(self):
        self.interval_loss_sum, self.interval_batches, self.interval_tokens, self.interval_seconds = 0.0, 0, 0.0, 0.0

    def to_dict(self):
        return {name: (str(value) if isinstance(value, float) and not math.isfinite(value) else value)
                for name, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values):
        return cls(**{field.name: field.type(values[field.name]) for field in dataclasses.fields(cls)})


def save_trainer_state(work_dir, step, arrays, progress, optimizer_steps, args, **extra):
    """Write trainer.{step}.safetensors: arrays (optimizer moments 'exp_avg.NAME' / 'exp_avg_sq.NAME', RNG
    states 'rng.KIND.RANK', AdaLoRA's allocator 'adalora.*'), with the progress, the optimizer's step count per parameter, the arguments and
    `extra` (e.g. the loss scaler's state) as metadata."""
    metadata = {"progress": progress.to_dict(), "optimizer_steps": optimizer_steps, "args": vars(args), **extra}
    save_tensors(trainer_checkpoint_path(work_dir, step), arrays, metadata)


def newest_resumable_step(work_dir):
    """The newest step with both its model and its trainer checkpoint in work_dir, or None."""
    complete = [step for step in checkpoint_steps(work_dir) if trainer_checkpoint_path(work_dir, step).is_file()]
    return complete[-1] if complete else None


def trainer_checkpoint_place(path, flag):
    """(folder, step) of a trainer.N.safetensors file; a ValueError naming `flag` and the path otherwise."""
    path = Path(path)
    match = re.fullmatch(r"trainer\.(\d+)\.safetensors", path.name)
    if match is None or not path.is_file():
        raise ValueError(f"{flag} {path}: not a trainer.N.safetensors file")
    return path.parent, int(match.group(1))


def resume_point(args):
    """(folder, step) of the checkpoint a run continues from: --resume_from's, the newest in --work_dir with
    --resume, or None."""
    if args.resume_from:
        return trainer_checkpoint_place(args.resume_from, "--resume_from")
    if args.resume:
        step = newest_resumable_step(args.work_dir)
        return None if step is None else (args.work_dir, step)
    return None


def load_trainer_state(work_dir, step, args):
    """(arrays, metadata) of trainer.{step}.safetensors, after checking it continues a run with these args."""
    path = trainer_checkpoint_path(work_dir, step)
    arrays, metadata = load_tensors(path)
    if metadata is None or "progress" not in metadata:
        raise ValueError(f"{path}: no trainer metadata in its header")
    saved = {**EARLIER_DEFAULTS, **metadata["args"]}
    differences = [f"--{key} {_cli_form(saved.get(key))!r} there, {_cli_form(getattr(args, key))!r} here"
                   for key in RESUME_KEYS if _cli_form(saved.get(key)) != _cli_form(getattr(args, key))]
    if differences:
        raise ValueError(f"--resume: {path} comes from a different run: " + "; ".join(differences))
    if not model_checkpoint_path(work_dir, step).is_file():
        raise ValueError(f"--resume: {path} has no {model_checkpoint_path(work_dir, step).name} beside it")
    return arrays, metadata


def _cli_form(value):
    """A list-valued argument as on the command line ("q,v"); it comes back from JSON as a list."""
    return ",".join(value) if isinstance(value, (list, tuple)) else value
