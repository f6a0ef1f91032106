"""numpy's OpenBLAS threads sleep between products instead of spinning beside torch's (NLG_pytorch/__init__.py):
the setting must be in the environment before numpy loads, in every program that trains or decodes."""
import os
import subprocess
import sys

import pytest

REPORT = ("import importlib, os, sys; importlib.import_module(sys.argv[1]); loaded = list(sys.modules); "
          "print(loaded.index('NLG_pytorch') < loaded.index('numpy'), os.environ.get('OPENBLAS_THREAD_TIMEOUT'))")


@pytest.mark.parametrize("module", ["NLG_pytorch.src.gpt2_ft", "NLG_pytorch.src.gpt2_beam", "bench.torch_worker"])
def test_openblas_thread_timeout_precedes_numpy(module):
    environment = {name: value for name, value in os.environ.items() if name != "OPENBLAS_THREAD_TIMEOUT"}
    done = subprocess.run([sys.executable, "-c", REPORT, module], capture_output=True, text=True, env=environment,
                          check=True)
    assert done.stdout.split() == ["True", "4"]
