"""Where a probe or a trace (NLG_*/src/probe.py, trace_hooks.py) starts training: afresh, its schedule over its own
--steps, or from a trainer checkpoint of gpt2_ft.py (either framework), as that run would have gone on: its adapters
(model.N beside it), optimizer moments, schedule (over the run's max_step) and batch order, over every row of --data."""
import dataclasses
from pathlib import Path

from common_data.model.checkpoint import load_tensors, model_checkpoint_path
from common_data.training.resume import Progress, trainer_checkpoint_place


@dataclasses.dataclass(frozen=True)
class Start:
    step: int = 0  # steps already made
    max_step: int | None = None  # the schedule's end; None: the probe's own --steps
    epoch: int = 1
    batches_done: int = 0
    adapter_checkpoint: Path | None = None
    optimizer_arrays: dict | None = None
    optimizer_steps: dict | None = None

    def rows(self, pairs, rows):
        """The rows to train on: the first `rows` afresh, all of them as the trainer from a checkpoint."""
        return pairs if self.adapter_checkpoint is not None else pairs[:rows]


def training_start(trainer_checkpoint):
    """The Start of a probe: afresh without a trainer checkpoint, else that checkpoint's state."""
    if trainer_checkpoint is None:
        return Start()
    folder, step = trainer_checkpoint_place(trainer_checkpoint, "--trainer_checkpoint")
    arrays, metadata = load_tensors(trainer_checkpoint)
    progress = Progress.from_dict(metadata["progress"])
    return Start(step=step, max_step=metadata["max_step"], epoch=progress.epoch, batches_done=progress.batches_done,
                 adapter_checkpoint=model_checkpoint_path(folder, step),
                 optimizer_arrays={name: array for name, array in arrays.items() if name.startswith("exp_avg")},
                 optimizer_steps=metadata["optimizer_steps"])
