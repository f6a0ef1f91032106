"""What the run records (run.json, run.beam.json) say about the framework, the device and peak memory."""
import platform

import numpy as np
import torch

from common_data.training import runlog


def framework_versions():
    return {"name": "torch", "torch": torch.__version__, "cuda": torch.version.cuda, "numpy": np.__version__,
            "python": platform.python_version()}


def pick_device(name):
    """The torch.device of --device: "auto" (a GPU where there is one), "cpu", "cuda" or "cuda:N"."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device):
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {runlog.cpu_name()}, {torch.get_num_threads()} threads"


def peak_memory(device):
    if device.type == "cuda":
        return {"kind": "cuda_max_allocated", "bytes": torch.cuda.max_memory_allocated(device)}
    return {"kind": "rss", "bytes": runlog.peak_rss_bytes()}
