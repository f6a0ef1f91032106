"""Does Jittor's matmul compute float32, float16 and bfloat16 correctly on this device? (Jittor environment.)

    environments/run jittor python -m bench.jittor_precision --out precision.json

For each dtype: A @ B of two random [n, n] matrices, both already rounded to the dtype, against the float64
product of the same rounded values. The error is the largest |difference| over the largest |product|. The
product is correct when it is as accurate as torch's: float32 accumulation (error ~ sqrt(n) 2^-24), then one
rounding to the dtype (2^-mantissa at most, relative to the largest product). On this project's 2-core CPU
Jittor 1.3.11's float16 matmul misses that by ~6x (it accumulates in float16) and its bfloat16 one by ~40x.
"""
import argparse
import json
import math

import jittor as jt
import numpy as np

from common_data.util.atomic import atomic_open

MANTISSA_BITS = {"float32": 23, "float16": 10, "bfloat16": 7}
ACCUMULATION_SLACK = 4  # float32 accumulation error bound: this many sqrt(n) 2^-24


def matmul_error(dtype, size, seed):
    """max |Jittor's A @ B - float64's| / max |float64's|, the inputs rounded to dtype first."""
    generator = np.random.default_rng(seed)
    left, right = (jt.array(generator.standard_normal((size, size)).astype(np.float32)).cast(dtype)
                   for _ in range(2))
    exact = left.float64().numpy() @ right.float64().numpy()
    product = (left @ right).float64().numpy()
    return float(np.abs(product - exact).max() / np.abs(exact).max())


def check(size=256, seed=0):
    device = "cuda" if jt.flags.use_cuda else "cpu"
    results = []
    for dtype, bits in MANTISSA_BITS.items():
        bound = 2.0 ** -bits + ACCUMULATION_SLACK * math.sqrt(size) * 2.0 ** -24
        try:
            error = matmul_error(dtype, size, seed)
            results.append({"dtype": dtype, "device": device, "max_rel_error": error, "bound": bound,
                            "correct": error <= bound})
        except Exception as failure:  # a dtype this build cannot compute is a finding, not a crash
            results.append({"dtype": dtype, "device": device, "max_rel_error": None, "bound": bound,
                            "correct": False, "error": f"{type(failure).__name__}: {failure}"})
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="JSON file to write the results to")
    parser.add_argument("--size", type=int, default=256, help="matrix size n")
    args = parser.parse_args(argv)
    jt.flags.use_cuda = jt.has_cuda
    results = check(args.size)
    with atomic_open(args.out) as handle:
        json.dump({"jittor": jt.__version__, "size": args.size, "results": results}, handle, indent=1)
    for result in results:
        print(f"{result['dtype']:>9} on {result['device']}: max relative error {result['max_rel_error']}, "
              f"bound {result['bound']:.2g}: {'correct' if result['correct'] else 'WRONG'}")


if __name__ == "__main__":
    main()
