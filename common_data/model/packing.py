"""The real tokens of a right-padded batch laid out one after another, for both frameworks.

Everything in a GPT-2 block but attention acts on each token alone, so it can run on the packed tokens [N, d]
instead of the padded rows [B, L, d] and skip the padding's work; attention gets its rows back, padded with
zero vectors that no real query sees (the causal mask keeps each query to the positions before it).
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Packing:
    places: np.ndarray  # int64 [N]: row * length + position of every real token, row after row
    slots: np.ndarray  # int64 [rows * length]: each place's index among the packed tokens, N for padding
    rows: int
    length: int


def pack(lengths, length):
    """The Packing of rows whose first lengths[r] of `length` places hold real tokens."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) == 0 or lengths.min() < 1 or lengths.max() > length:
        raise ValueError(f"row lengths {lengths.tolist()} must lie in 1..{length}")
    real = np.arange(length) < lengths[:, None]
    places = np.flatnonzero(real)
    slots = np.full(real.size, len(places), dtype=np.int64)
    slots[places] = np.arange(len(places))
    return Packing(places.astype(np.int64), slots, len(lengths), length)
