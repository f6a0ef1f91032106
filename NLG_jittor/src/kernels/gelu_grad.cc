// The gradient of gelu_new (kernels/gelu.cc) on the CPU: in0 x, in1 the gradient of the output -> out0 the gradient
// of x, in1 * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2 / pi) (1 + 3 * 0.044715 x^2)), t the tanh of the forward pass.
const size_t size = in0->num;
const float root = 0.7978845608028654f, cubic = 0.044715f;
#pragma omp parallel for simd schedule(static)
for (size_t e = 0; e < size; e++) {
  const float x = in0_p[e];
  const float t = tanhf(root * (x + cubic * x * x * x));
  out0_p[e] = in1_p[e] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * root * (1.0f + 3.0f * cubic * x * x));
}
