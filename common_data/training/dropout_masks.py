"""Dropout masks that PyTorch and Jittor draw alike (gpt2_ft.py --dropout_rng shared).

A mask is a pure function of (seed, step, layer, tensor) and of each unit's place in the global batch, with no
generator state: both frameworks, any number of ranks and a resumed run drop the same units. Steps count
batches (micro-batches under --grad_acc), so the step is also the micro-batch's key. The generator is
counter-based, splitmix64 (Steele, Lea and Flood 2014) over a per-tensor key: unit number c of the stream
draws mix64(key + (c + 1) * GOLDEN), whose top 53 bits are a uniform number in [0, 1).
"""
import zlib

import numpy as np

WORD = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
ROW_SHIFT = 40  # a unit's counter: its row of the global batch above its flat index within the row


def mix64(z):
    """splitmix64's finaliser on a Python int (the stream keys)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & WORD
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & WORD
    return z ^ (z >> 31)


def mix64_array(z):
    """mix64 on a uint64 array, in place (uint64 products wrap modulo 2**64, as the & WORD above)."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def stream_key(seed, step, layer, tensor):
    """The 64-bit key of one dropout call: each word mixed into the last."""
    key = 0
    for word in (seed, step, layer, tensor):
        key = mix64(((key ^ (word & WORD)) + GOLDEN) & WORD)
    return key


def uniforms(key, rows, row_size):
    """Uniform numbers in [0, 1) as uint64 multiples of 2**-53, [len(rows), row_size]: unit i of global row r is
    counter (r << ROW_SHIFT) + i of the stream `key`."""
    rows = np.asarray(rows, dtype=np.uint64)
    if row_size > 1 << ROW_SHIFT or (rows >= 1 << (64 - ROW_SHIFT)).any():
        raise ValueError(f"dropout masks count up to 2**{64 - ROW_SHIFT} rows of 2**{ROW_SHIFT} units")
    counters = (rows[:, None] << np.uint64(ROW_SHIFT)) + np.arange(row_size, dtype=np.uint64)
    counters += np.uint64(1)
    counters *= np.uint64(GOLDEN)
    counters += np.uint64(key)
    return mix64_array(counters) >> np.uint64(11)


def keep_scale(key, rows, shape, p):
    """The dropout multiplier of a tensor of `shape` whose rows are `rows` of the global batch: float32, 0 where a
    unit drops (probability p), 1 / (1 - p) where it stays."""
    threshold = np.uint64(min(int(np.ceil(p * 2.0**53)), 2**53))
    keep = uniforms(key, rows, int(np.prod(shape[1:], dtype=np.int64))) >= threshold
    return np.where(keep.reshape(shape), np.float32(1.0 / (1.0 - p)), np.float32(0.0))


def module_key(name):
    """(layer, tensor) of a dropout module by its name in the model: the block index of 'h.N.' (-1 outside the
    blocks) and the CRC-32 of the rest of the name."""
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "h" and parts[1].isdigit():
        return int(parts[1]), zlib.crc32(".".join(parts[2:]).encode())
    return -1, zlib.crc32(name.encode())


class SharedMasks:
    """The masks of one rank's training batches: the trainer sets `step` before each batch; `rows` are the rows of
    the global batch that this rank holds."""

    def __init__(self, seed, rows):
        self.seed, self.rows, self.step = seed, np.asarray(rows, dtype=np.int64), 0

    def scale(self, layer, tensor, shape, p):
        if shape[0] != len(self.rows):
            raise ValueError(f"a dropout input of {shape[0]} rows in a batch of {len(self.rows)} on this rank")
        return keep_scale(stream_key(self.seed, self.step, layer, tensor), self.rows, shape, p)
