"""What importing NLG_pytorch sets up for a CPU training process (NLG_pytorch/__init__.py), checked in fresh
interpreters: numpy's OpenBLAS threads sleep between products instead of spinning beside torch's, and large
allocations come from glibc's heap instead of a fresh mmap each time."""
import os
import subprocess
import sys

import pytest

IMPORT_ORDER = ("import importlib, os, sys; importlib.import_module(sys.argv[1]); loaded = list(sys.modules); "
                "print(loaded.index('NLG_pytorch') < loaded.index('numpy'), os.environ.get('OPENBLAS_THREAD_TIMEOUT'))")

# how many more blocks glibc has mmapped (mallinfo2's hblks) while a 64 MB tensor is alive
MMAPPED_BLOCKS = """
import ctypes, sys
if sys.argv[1] == "yes":
    import NLG_pytorch
import torch

class MallocInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallocInfo
before = libc.mallinfo2().hblks
tensor = torch.ones(16 * 2**20)
print(libc.mallinfo2().hblks - before)
"""


def run_python(*argv):
    environment = {name: value for name, value in os.environ.items() if name != "OPENBLAS_THREAD_TIMEOUT"}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=environment,
                          check=True).stdout.split()


@pytest.mark.parametrize("module", ["NLG_pytorch.src.gpt2_ft", "NLG_pytorch.src.gpt2_beam", "bench.torch_worker"])
def test_openblas_thread_timeout_precedes_numpy(module):
    assert run_python("-c", IMPORT_ORDER, module) == ["True", "4"]


def test_large_tensors_come_from_the_heap():
    assert run_python("-c", MMAPPED_BLOCKS, "no") == ["1"]
    assert run_python("-c", MMAPPED_BLOCKS, "yes") == ["0"]
