"""What the run records (run.json, run.beam.json) say about the framework, the device and peak memory."""
import os
import platform
import subprocess

import jittor as jt
import numpy as np

from common_data.training import runlog


def framework_versions():
    return {"name": "jittor", "jittor": jt.__version__, "cuda": cuda_version(), "numpy": np.__version__,
            "python": platform.python_version()}


def pick_device(name):
    """--device: put Jittor on the GPU ("auto": where there is one; "cuda" or "cuda:N") or the CPU; returns which."""
    use_cuda = jt.has_cuda if name == "auto" else name.startswith("cuda")
    if use_cuda and not jt.has_cuda:
        raise ValueError(f"--device {name}: Jittor finds no CUDA device")
    jt.flags.use_cuda = int(use_cuda)
    return "cuda" if use_cuda else "cpu"


def device_name(device):
    if device == "cuda":
        return f"cuda: {cuda_device_name()}"
    return f"cpu: {runlog.cpu_name()}, {cpu_threads()} threads"


def peak_memory(device, cuda_peak_bytes=None):
    """Jittor keeps no CUDA peak: a trainer samples cuda_held_bytes() and passes the largest; else what the
    allocators hold now."""
    if device == "cuda":
        return {"kind": "jittor_cuda_allocator_held",
                "bytes": cuda_held_bytes() if cuda_peak_bytes is None else cuda_peak_bytes}
    return {"kind": "rss", "bytes": runlog.peak_rss_bytes()}


def cuda_held_bytes():
    """What Jittor's CUDA allocators hold now (used + cached); 0 on the CPU."""
    if not jt.flags.use_cuda:
        return 0
    jt.sync_all(True)
    return jt.get_mem_info().total_cuda_used


def cuda_version():
    """The CUDA version Jittor compiles with (nvcc's), or None without CUDA."""
    return ".".join(map(str, jt.compiler.nvcc_version)) if jt.flags.use_cuda else None


def cpu_threads():
    """The OpenMP threads of Jittor's oneDNN matmuls: OMP_NUM_THREADS, else the cores this process may use."""
    return int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0] or len(os.sched_getaffinity(0)))


def cuda_device_name():
    """The first GPU's name as nvidia-smi reports it (Jittor has no call for it)."""
    result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                            text=True, check=False)
    names = result.stdout.splitlines()
    return names[0].strip() if result.returncode == 0 and names else "unknown GPU"
