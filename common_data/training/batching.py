"""Training and evaluation batches as numpy arrays, identical for the PyTorch and the Jittor trainer.

One example follows microsoft/LoRA's FT_Dataset: tokens = context + completion cut to seq_len;
input = tokens, targets = tokens shifted left by one, loss mask 1 exactly where the target is a
completion token that lies inside the cut (the last input position never counts). Padding is 0
(input, target) and 0.0 (mask).

A batch is padded to its longest row rounded up to a multiple of `pad_multiple` and capped at
seq_len, so only seq_len / pad_multiple shapes occur; `pad_to_seq_len` pads every batch to seq_len
as microsoft/LoRA does. Training order per epoch comes from np.random.default_rng([seed, epoch]);
a last, partial batch is filled with rows drawn from the same generator (as FT_Dataset fills it),
so every training batch has batch_size rows. A global batch is split across ranks in contiguous
blocks, all ranks padded alike.
"""
import math
from dataclasses import dataclass

import numpy as np

from common_data.util.errors import DataFormatError
from common_data.util.jsonl import read_jsonl


@dataclass(frozen=True)
class BatchConfig:
    batch_size: int
    seq_len: int = 512
    pad_multiple: int = 32
    pad_to_seq_len: bool = False


@dataclass(frozen=True)
class Example:
    input_ids: list
    targets: list
    loss_mask: list


@dataclass(frozen=True)
class Batch:
    input_ids: np.ndarray  # int64 [B, L]
    targets: np.ndarray  # int64 [B, L]
    loss_mask: np.ndarray  # float32 [B, L]
    lengths: np.ndarray  # int64 [B]: the real tokens of each row, the padding after them

    @property
    def width(self):
        return self.input_ids.shape[1]


def load_encoded(path):
    """[(context ids, completion ids)] from an encoded JSONL file."""
    pairs = []
    for number, row in enumerate(read_jsonl(path, required_keys=("context", "completion")), start=1):
        ids = (row["context"], row["completion"])
        if not all(isinstance(part, list) and part and all(type(i) is int for i in part) for part in ids):
            raise DataFormatError(path, f"line {number}", "context and completion must be non-empty lists of token ids")
        pairs.append(ids)
    return pairs


def make_example(context, completion, seq_len):
    full = context + completion
    tokens = full[:seq_len]
    targets = (full[1:] + [0])[:len(tokens)]
    loss_mask = [0.0] * (len(context) - 1) + [1.0] * (len(tokens) - len(context))
    return Example(tokens, targets, (loss_mask + [0.0] * len(tokens))[:len(tokens)])


def make_examples(pairs, seq_len):
    return [make_example(context, completion, seq_len) for context, completion in pairs]


def padded_length(examples, config):
    if config.pad_to_seq_len:
        return config.seq_len
    longest = max(len(example.input_ids) for example in examples)
    return min(config.seq_len, math.ceil(longest / config.pad_multiple) * config.pad_multiple)


def collate(examples, length):
    """Stack examples into a Batch of width `length`, padding with 0 / 0.0."""
    batch = Batch(np.zeros((len(examples), length), np.int64), np.zeros((len(examples), length), np.int64),
                  np.zeros((len(examples), length), np.float32),
                  np.array([len(example.input_ids) for example in examples], dtype=np.int64))
    for row, example in enumerate(examples):
        size = len(example.input_ids)
        batch.input_ids[row, :size] = example.input_ids
        batch.targets[row, :size] = example.targets
        batch.loss_mask[row, :size] = example.loss_mask
    return batch


def rank_rows(rows, rank, world_size):
    """The contiguous block of `rows` that belongs to `rank` of `world_size`."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    return np.array_split(np.asarray(rows), world_size)[rank]


def num_train_batches(num_examples, batch_size):
    return math.ceil(num_examples / batch_size)


def epoch_order(num_examples, batch_size, seed, epoch):
    """Example indices of one epoch, shape [num_batches, batch_size]; the same for every framework."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(num_examples)
    fill = num_train_batches(num_examples, batch_size) * batch_size - num_examples
    return np.concatenate([order, rng.integers(0, num_examples, fill)]).reshape(-1, batch_size)


def train_batches(examples, config, seed, epoch, start_batch=0, rank=0, world_size=1):
    """This rank's part of each training batch of an epoch, from batch `start_batch` on (for resuming)."""
    if config.batch_size % world_size:
        raise ValueError(f"batch size {config.batch_size} does not split over {world_size} ranks")
    for indices in epoch_order(len(examples), config.batch_size, seed, epoch)[start_batch:]:
        chosen = [examples[i] for i in indices]
        yield collate([chosen[i] for i in rank_rows(range(len(chosen)), rank, world_size)],
                      padded_length(chosen, config))


def eval_batches(examples, config, rank=0, world_size=1):
    """Batches in file order (the last may be smaller); with ranks, each gets a contiguous block."""
    for start in range(0, len(examples), config.batch_size):
        chosen = examples[start:start + config.batch_size]
        yield collate([chosen[i] for i in rank_rows(range(len(chosen)), rank, world_size)],
                      padded_length(chosen, config))
