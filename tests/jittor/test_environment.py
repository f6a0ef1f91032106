"""The Jittor environment: Jittor with oneDNN, and no torch anywhere."""
import importlib.util
import os

import pytest


def test_torch_is_not_installed():
    assert importlib.util.find_spec("torch") is None
    with pytest.raises(ImportError):
        import torch  # noqa: F401


def test_jittor_matmul_runs_through_onednn():
    import numpy as np
    import jittor as jt
    from jittor import compile_extern

    if os.environ.get("use_mkl") == "0":
        pytest.skip("oneDNN is not available on this machine (use_mkl=0)")
    assert compile_extern.mkl_ops is not None
    a = np.random.default_rng(0).standard_normal((64, 32)).astype("float32")
    b = np.random.default_rng(1).standard_normal((32, 16)).astype("float32")
    np.testing.assert_allclose(jt.matmul(jt.array(a), jt.array(b)).numpy(), a @ b, rtol=1e-5, atol=1e-5)
