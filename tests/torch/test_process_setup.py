"""What importing NLG_pytorch sets up for a CPU training process (NLG_pytorch/__init__.py), checked in fresh
interpreters: numpy's OpenBLAS threads sleep between products instead of spinning beside torch's."""
import os
import subprocess
import sys

import pytest

IMPORT_ORDER = ("import importlib, os, sys; importlib.import_module(sys.argv[1]); loaded = list(sys.modules); "
                "print(loaded.index('NLG_pytorch') < loaded.index('numpy'), os.environ.get('OPENBLAS_THREAD_TIMEOUT'))")


def run_python(*argv):
    environment = {name: value for name, value in os.environ.items() if name != "OPENBLAS_THREAD_TIMEOUT"}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=environment,
                          check=True).stdout.split()


@pytest.mark.parametrize("module", ["NLG_pytorch.src.gpt2_ft", "NLG_pytorch.src.gpt2_beam", "bench.torch_worker"])
def test_openblas_thread_timeout_precedes_numpy(module):
    assert run_python("-c", IMPORT_ORDER, module) == ["True", "4"]

