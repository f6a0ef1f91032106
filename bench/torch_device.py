"""The device a PyTorch worker runs on, how to wait for it and how to read its peak memory."""
import os
import platform

import torch

from bench.workload import RssProbe


def pick_device():
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def describe(device):
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def synchronizer(device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


class CudaProbe:
    """Peak GPU memory held by torch's caching allocator (reserved, the counterpart of Jittor's figure)."""
    kind = "cuda: peak memory reserved by the framework's allocator"

    def sample(self):
        """Nothing to do: torch keeps the peak."""

    def peak(self):
        return torch.cuda.max_memory_reserved()


def memory_probe(device):
    return CudaProbe() if device.type == "cuda" else RssProbe()
