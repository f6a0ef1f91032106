"""This process's place among the training processes started by torchrun (gloo on CPU, nccl on GPU).

A plain `python gpt2_ft.py` is rank 0 of 1 and opens no process group.
"""
import os
from dataclasses import dataclass

import torch
from torch import distributed


@dataclass(frozen=True)
class Ranks:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self):
        return self.rank == 0

    def all_sum(self, *values):
        """The sums over all ranks of the given numbers (float64)."""
        if self.world_size == 1:
            return [float(value) for value in values]
        tensor = torch.tensor([float(value) for value in values], dtype=torch.float64, device=self.device)
        distributed.all_reduce(tensor)
        return tensor.tolist()

    def gather(self, tensor):
        """[tensor of rank 0, tensor of rank 1, ...] on every rank; all ranks pass tensors of one shape."""
        if self.world_size == 1:
            return [tensor]
        local = tensor.to(self.device)
        gathered = [torch.empty_like(local) for _ in range(self.world_size)]
        distributed.all_gather(gathered, local)
        return [item.cpu() for item in gathered]

    def barrier(self):
        if self.world_size > 1:
            distributed.barrier()

    def close(self):
        if self.world_size > 1:
            distributed.destroy_process_group()


def init_ranks():
    """Read torchrun's environment (WORLD_SIZE, LOCAL_RANK, ...) and join the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size == 1:
        return Ranks(0, 1, device)
    distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Ranks(distributed.get_rank(), distributed.get_world_size(), device)
