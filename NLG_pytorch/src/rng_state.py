"""Every rank's torch RNG states as arrays, for the trainer checkpoint (see common_data.training.resume)."""
import numpy as np
import torch


def rng_state_arrays(ranks):
    """Every rank's torch RNG states (CPU, and CUDA on a GPU) as uint8 arrays; collective over ranks."""
    states = {"torch": torch.get_rng_state()}
    if ranks.device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(ranks.device)
    return {f"rng.{kind}.{rank}": gathered.numpy()
            for kind, state in states.items() for rank, gathered in enumerate(ranks.gather(state))}


def restore_rng_state(arrays, ranks):
    """Set this rank's RNG states from rng_state_arrays(); a rank the saved run did not have keeps its seed."""
    if f"rng.torch.{ranks.rank}" in arrays:
        torch.set_rng_state(torch.from_numpy(np.array(arrays[f"rng.torch.{ranks.rank}"])))
    if ranks.device.type == "cuda" and f"rng.cuda.{ranks.rank}" in arrays:
        torch.cuda.set_rng_state(torch.from_numpy(np.array(arrays[f"rng.cuda.{ranks.rank}"])), ranks.device)
