"""Which metrics.jsonl events become which TensorBoard scalars: the same tags from both trainers.

    train/loss           each step's training loss ('step' events)
    train/lr             the learning rate at each log line ('train')
    train/tokens_per_s   loss tokens per second of training over the log interval ('train')
    memory/peak_bytes    the process's peak memory so far ('train': CUDA's peak, else peak RSS)
    valid/loss           the validation loss ('eval'), and valid/ppl its perplexity
"""
import math

from common_data.training.tensorboard_log.event_file import EventFileWriter

TAGS = {
    "step": {"loss": "train/loss"},
    "train": {"lr": "train/lr", "tokens_per_s": "train/tokens_per_s", "peak_memory_bytes": "memory/peak_bytes"},
    "eval": {"valid_loss": "valid/loss", "valid_ppl": "valid/ppl"},
}


class TrainingCurves:
    """Writes the scalars of the events a trainer records (its metrics.jsonl events) into --tensorboard DIR."""

    def __init__(self, logdir):
        self.writer = EventFileWriter(logdir)

    def record(self, event, **fields):
        for field, tag in TAGS.get(event, {}).items():
            value = fields.get(field)
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(tag, value, fields["step"])

    def close(self):
        self.writer.close()
