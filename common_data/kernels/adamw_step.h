// One AdamW update (microsoft/LoRA's rule, optimizer.py) of a parameter of size elements in one pass, shared among
// the OpenMP threads: p, m, v, g -> p_out, m_out, v_out (float32; an output may be its input's memory). The
// hyperparameters are floats, 1 - beta among them (rest1, rest2), rounded once by the caller. -Ofast takes the
// square root from an approximate reciprocal square root, which a subnormal v turns into NaN: such a v counts as 0
// (its root, below 1e-19, vanishes next to eps anyway).
#include <cfloat>
#include <cmath>
#include <cstddef>

static void adamw_step(const float* p, const float* m, const float* v, const float* g, size_t size, float beta1,
                       float beta2, float rest1, float rest2, float step_size, float eps, float decay, float* p_out,
                       float* m_out, float* v_out) {
  #pragma omp parallel for simd schedule(static)
  for (size_t e = 0; e < size; e++) {
    const float grad = g[e];
    const float moment = beta1 * m[e] + rest1 * grad;
    const float second = beta2 * v[e] + rest2 * grad * grad;
    const float root = second >= FLT_MIN ? sqrtf(second) : 0.f;
    const float updated = p[e] - step_size * (moment / (root + eps));
    p_out[e] = updated - decay * updated;
    m_out[e] = moment;
    v_out[e] = second;
  }
}
