"""What importing NLG_pytorch sets up for a CPU process (NLG_pytorch/__init__.py), checked in fresh interpreters:
numpy's OpenBLAS threads and torch's OpenMP threads stop spinning soon after their work, before the other's."""
import os
import subprocess
import sys

import pytest

SETTINGS = ("OPENBLAS_THREAD_TIMEOUT", "GOMP_SPINCOUNT")
IMPORT_ORDER = ("import importlib, os, sys; importlib.import_module(sys.argv[1]); loaded = list(sys.modules); "
                "print(loaded.index('NLG_pytorch') < min(loaded.index('numpy'), loaded.index('torch')), "
                "*(os.environ.get(name) for name in sys.argv[2:]))")


def run_python(*argv):
    environment = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=environment,
                          check=True).stdout.split()


@pytest.mark.parametrize("module", ["NLG_pytorch.src.gpt2_ft", "NLG_pytorch.src.gpt2_beam", "bench.torch_worker"])
def test_thread_settings_precede_numpy_and_torch(module):
    assert run_python("-c", IMPORT_ORDER, module, *SETTINGS) == ["True", "4", "10000"]

