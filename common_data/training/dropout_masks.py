"""Dropout masks that PyTorch and Jittor draw alike (gpt2_ft.py --dropout_rng shared).

A mask is a pure function of (seed, step, layer, tensor) and of each unit's place in the global batch, with no
generator state: both frameworks, any number of ranks and a resumed run drop the same units. Steps count
batches (micro-batches under --grad_acc), so the step is also the micro-batch's key. The generator is
counter-based: numpy's Philox4x64-10 (Salmon et al. 2011; its raw stream is fixed across numpy versions) keyed
by a splitmix64 hash of the four words, row r of the global batch starting at counter r << 128; unit i of a row
(its flat index there, so the padded length does not matter) drops where the i-th 32-bit word of the row's
stream, as a fraction of 2**32, is below p.
"""
import math
import zlib

import numpy as np

WORD = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix64(z):
    """splitmix64's finaliser (Steele, Lea and Flood 2014)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & WORD
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & WORD
    return z ^ (z >> 31)


def stream_key(seed, step, layer, tensor):
    """The 64-bit Philox key of one dropout call: each word mixed into the last."""
    key = 0
    for word in (seed, step, layer, tensor):
        key = mix64(((key ^ (word & WORD)) + GOLDEN) & WORD)
    return key


def row_words(key, row, count):
    """The first `count` 32-bit words of global row `row`'s stream (uint32, low word of each 64-bit draw first)."""
    raw = np.random.Philox(key=key, counter=row << 128).random_raw((count + 1) // 2)
    return raw.astype("<u8", copy=False).view("<u4")[:count]


def keep_scale(key, rows, shape, p, lengths=None):
    """The dropout multiplier of a tensor of `shape` whose rows are `rows` of the global batch: float32, 0 where a
    unit drops (probability p), 1 / (1 - p) where it stays. lengths: the tensor holds the rows' real tokens packed
    (common_data.model.packing), lengths[i] of rows[i] one after another, each dropped as in the padded tensor."""
    threshold = np.uint32(min(math.ceil(p * 2**32), 2**32 - 1))
    if lengths is None:
        counts = [math.prod(shape[1:])] * len(rows)
    else:
        counts = [int(length) * math.prod(shape[1:]) for length in lengths]
    keep = np.concatenate([row_words(key, int(row), count) >= threshold for row, count in zip(rows, counts)])
    return np.where(keep.reshape(shape), np.float32(1.0 / (1.0 - p)), np.float32(0.0))


def module_key(name):
    """(layer, tensor) of a dropout module by its name in the model: the block index of 'h.N.' (-1 outside the
    blocks) and the CRC-32 of the rest of the name."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "h" and parts[1].isdigit():
        return int(parts[1]), zlib.crc32(".".join(parts[2:]).encode())
    return -1, zlib.crc32(name.encode())


class SharedMasks:
    """The masks of one rank's training batches: the trainer sets `step` before each batch, and `lengths` (the
    rows' real tokens) while the model runs them packed; `rows` are the rows of the global batch that this rank
    holds."""

    def __init__(self, seed, rows):
        self.seed, self.rows, self.step, self.lengths = seed, np.asarray(rows, dtype=np.int64), 0, None

    def scale(self, layer, tensor, shape, p):
        expected = len(self.rows) if self.lengths is None else int(np.sum(self.lengths))
        if shape[0] != expected:
            kind = "rows" if self.lengths is None else "packed tokens"
            raise ValueError(f"a dropout input of {shape[0]} rows in a batch of {expected} {kind} on this rank")
        return keep_scale(stream_key(self.seed, self.step, layer, tensor), self.rows, shape, p, self.lengths)
