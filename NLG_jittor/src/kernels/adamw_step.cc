// One AdamW update (microsoft/LoRA's rule, optimizer.py) of a parameter in one pass over its elements, shared
// among the OpenMP threads: in0 p, in1 m, in2 v, in3 g -> out0 p, out1 m, out2 v (float32, any shape). The
// hyperparameters come in double, 1 - beta among them, and are rounded to float once, as Jittor's scalars are.
// -Ofast takes the square root from an approximate reciprocal square root, which a subnormal v turns into NaN: such
// a v counts as 0 (its root, below 1e-19, vanishes next to eps anyway).
const size_t size = in0->num;
const float beta1 = data["beta1"], beta2 = data["beta2"], rest1 = data["rest1"], rest2 = data["rest2"],
            step_size = data["step_size"], eps = data["eps"], decay = data["decay"];
#pragma omp parallel for simd schedule(static)
for (size_t e = 0; e < size; e++) {
  const float g = in3_p[e];
  const float m = beta1 * in1_p[e] + rest1 * g;
  const float v = beta2 * in2_p[e] + rest2 * g * g;
  const float root = v >= FLT_MIN ? sqrtf(v) : 0.f;
  const float p = in0_p[e] - step_size * (m / (root + eps));
  out0_p[e] = p - decay * p;
  out1_p[e] = m;
  out2_p[e] = v;
}
