"""Every rank's Jittor RNG state as arrays, for the trainer checkpoint (see common_data.training.resume).

Jittor cannot read its generators' state, only reseed them: at each checkpoint every rank draws a new seed
from its generator, reseeds with it and saves that seed. A resumed run reseeds with the saved one, so it
draws the numbers (dropout masks) the uninterrupted run drew after the checkpoint.
"""
import jittor as jt
import numpy as np

SEED_BOUND = 2**31 - 1  # Jittor's seed is a C int


def rng_state_arrays(ranks):
    """Reseed this rank from its own generator; every rank's new seed as int64 arrays; collective over ranks."""
    seed = int(jt.randint(0, SEED_BOUND, (1,)).item())
    jt.set_seed(seed)
    gathered = ranks.gather(np.array([seed], dtype=np.int64))
    return {f"rng.jittor.{rank}": state for rank, state in enumerate(gathered)}


def restore_rng_state(arrays, ranks):
    """Reseed this rank from rng_state_arrays(); a rank the saved run did not have keeps its seed."""
    if f"rng.jittor.{ranks.rank}" in arrays:
        jt.set_seed(int(arrays[f"rng.jittor.{ranks.rank}"][0]))
