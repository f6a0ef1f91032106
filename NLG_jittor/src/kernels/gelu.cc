// GPT-2's gelu_new on the CPU, 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))), for x of any shape (float32):
// one vectorized pass shared among the OpenMP threads (Jittor's own elementwise kernels run on one thread).
const size_t size = in0->num;
const float root = 0.7978845608028654f, cubic = 0.044715f;
#pragma omp parallel for simd schedule(static)
for (size_t e = 0; e < size; e++) {
  const float x = in0_p[e];
  out0_p[e] = 0.5f * x * (1.0f + tanhf(root * (x + cubic * x * x * x)));
}
