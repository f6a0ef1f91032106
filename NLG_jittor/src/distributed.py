"""This process's place among the training processes started by mpirun (Jittor's MPI ops; CUDA where present).

A plain `python gpt2_ft.py` is rank 0 of 1 and sends no messages.
"""
from dataclasses import dataclass

import jittor as jt
import numpy as np
from jittor import compile_extern


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    device: str

    @property
    def is_main(self):
        return self.rank == 0

    def all_sum(self, *values):
        """The sums over all ranks of the given numbers (float64)."""
        if self.world_size == 1:
            return [float(value) for value in values]
        array = jt.array(np.array([float(value) for value in values], dtype=np.float64))
        return array.mpi_all_reduce("add").numpy().tolist()

    def gather(self, array):
        """[array of rank 0, array of rank 1, ...] on every rank; all ranks pass numpy arrays of one shape.

        They travel as float64 (jt.array would narrow int64 to int32): exact for integers below 2**53.
        """
        if self.world_size == 1:
            return [array]
        # each rank fills its own row; the sum over ranks is every rank's array
        rows = np.zeros((self.world_size, *array.shape), dtype=np.float64)
        rows[self.rank] = array
        return list(jt.array(rows).mpi_all_reduce("add").numpy().astype(array.dtype))

    def barrier(self):
        if self.world_size > 1:
            compile_extern.mpi.mpi_barrier()

    def close(self):
        jt.sync_all(True)


def init_ranks():
    """Read mpirun's ranks (jt.rank, jt.world_size) and put Jittor on CUDA where there is a GPU."""
    jt.flags.use_cuda = jt.has_cuda
    device = "cuda" if jt.flags.use_cuda else "cpu"
    if not jt.in_mpi:
        return Ranks(0, 1, device)
    return Ranks(jt.rank, jt.world_size, device)
