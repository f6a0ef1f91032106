"""The float32 envelope's perturbations (alignment/replay.py): ONEDNN_MAX_CPU_ISA, MKL_CBWR=COMPATIBLE and
OPENBLAS_CORETYPE make the products of ops.matmul (oneDNN: the blocks' and the LM head's), of torch itself (the
adapters') and of numpy sum in another order, and the fallback moves every base weight by exactly one ulp."""
import os
import subprocess
import sys

import numpy as np
import pytest

from alignment import replay
from common_data.model.checkpoint import load_tensors
from common_data.model.gpt2_config import config_for_card
from common_data.model.init_params import init_base_params

# products of the tiny card's c_attn shape in ops.matmul and torch, and of its LM head's in numpy, their float32
# bytes on stdout
PRODUCTS = {
    "ops.matmul": "import torch; from NLG_pytorch.src import ops; torch.manual_seed(0); "
                  "out = ops.matmul(torch.randn(64, 256), torch.randn(256, 768)).numpy()",
    "torch": "import torch; torch.manual_seed(0); out = (torch.randn(64, 256) @ torch.randn(256, 768)).numpy()",
    "numpy": "import numpy as np; rng = np.random.default_rng(0); "
             "out = rng.standard_normal((64, 256), dtype=np.float32) @ rng.standard_normal((4096, 256), "
             "dtype=np.float32).T",
}


def product(library, environment):
    plain = {key: value for key, value in os.environ.items() if key not in replay.SUMMATION_ORDER}
    code = PRODUCTS[library] + "; import sys; sys.stdout.buffer.write(out.tobytes())"
    result = subprocess.run([sys.executable, "-c", code], env={**plain, **environment}, capture_output=True,
                            check=True)
    return np.frombuffer(result.stdout, dtype=np.float32)


@pytest.mark.parametrize("library", sorted(PRODUCTS))
def test_the_summation_order_perturbation_changes_the_last_bits_of_most_outputs_of_a_product(library):
    plain, reordered = product(library, {}), product(library, replay.SUMMATION_ORDER)
    assert np.mean(plain != reordered) > 0.5
    np.testing.assert_allclose(reordered, plain, rtol=1e-5, atol=1e-4)


def test_the_one_ulp_perturbation_moves_every_base_weight_to_a_neighbour(tmp_path):
    args = {"model_card": "gpt2.tiny", "random_seed": 3, "init_checkpoint": None}
    moved, _ = load_tensors(replay.perturbed_base(args, tmp_path / "moved.safetensors"))
    base = init_base_params(config_for_card("gpt2.tiny"), 3)
    for name, array in base.items():
        assert np.all(moved[name] != array), name
        assert np.array_equal(np.nextafter(moved[name], array), array), name
    assert 0.45 < np.mean(np.concatenate([(moved[name] > array).ravel() for name, array in base.items()])) < 0.55
