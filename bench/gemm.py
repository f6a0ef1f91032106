"""The machine's float32 matrix-product limit: the products of the training step's LM head and a square one, timed
in each library at hand (numpy-only here; the workers add torch's and Jittor's).

Shapes, for R loss rows, width d and vocabulary V:
- lm_head_forward: h W^T, h [R, d], W [V, d] (the logits);
- lm_head_backward: G W, G [R, V] (the gradient of the hidden states);
- square: A B, both [2048, 2048].
A product of [m, k] x [k, n] counts 2 m k n floating-point operations. The time is the best of repeats over at least
MIN_SECONDS (and at least MIN_REPEATS), after one untimed call.
"""
import time
from dataclasses import asdict, dataclass

import numpy as np

SHAPES = ("lm_head_forward", "lm_head_backward", "square")
MIN_SECONDS = 0.5
MIN_REPEATS = 3


@dataclass(frozen=True)
class GemmSpec:
    rows: int
    n_embd: int
    vocab_size: int
    square: int = 2048
    seed: int = 0

    def operands(self, shape):
        """(left, right, right is given transposed) numpy float32 operands of a shape."""
        rng = np.random.default_rng(self.seed)
        normal = lambda *size: rng.standard_normal(size, dtype=np.float32)
        if shape == "lm_head_forward":
            return normal(self.rows, self.n_embd), normal(self.vocab_size, self.n_embd), True
        if shape == "lm_head_backward":
            return normal(self.rows, self.vocab_size), normal(self.vocab_size, self.n_embd), False
        return normal(self.square, self.square), normal(self.square, self.square), False

    def flops(self, shape):
        left, right, transposed = self.operands(shape)
        return 2 * left.shape[0] * left.shape[1] * (right.shape[0] if transposed else right.shape[1])


def best_seconds(product):
    """The best wall time of product() (which waits for its result) over repeats, after a warm-up call."""
    product()
    times = []
    while len(times) < MIN_REPEATS or sum(times) < MIN_SECONDS:
        start = time.perf_counter()
        product()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(spec_values, make_product, library):
    """counts {"gflops_<shape>"} and config for a library; make_product(left, right, transposed) returns a
    function that computes left @ right (right^T where transposed) and waits for it."""
    spec = GemmSpec(**spec_values)
    counts = {}
    for shape in SHAPES:
        seconds = best_seconds(make_product(*spec.operands(shape)))
        counts[f"gflops_{shape}"] = spec.flops(shape) / seconds / 1e9
    return counts, {**asdict(spec), "library": library}


def numpy_product(left, right, transposed):
    right = right.T if transposed else right
    return lambda: left @ right


def numpy_library():
    """'numpy <version> (<BLAS> <version>)'."""
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return f"numpy {np.__version__} ({blas.get('name', 'BLAS')} {blas.get('version', '')})".strip()
