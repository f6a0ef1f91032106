// token_loss's gradient on the CPU, (softmax - (1 - ls) * onehot - ls / V) * weight * grad for logits
// [rows, V], log normalizers [rows], weight * grad [rows], targets [rows]: the rows shared among the OpenMP
// threads, each row one vectorized loop (Jittor's kernels compile with -Ofast) and its target entry after it
const int rows = in0_shape0, vocab = in0_shape1;
const float smooth = data["smooth"], floor = smooth / vocab;
#pragma omp parallel for schedule(static)
for (int r = 0; r < rows; r++) {
  const float* logit = in0_p + (size_t)r * vocab;
  float* grad = out0_p + (size_t)r * vocab;
  const float normalizer = in1_p[r], scale = in2_p[r];
  #pragma omp simd
  for (int v = 0; v < vocab; v++) grad[v] = (expf(logit[v] - normalizer) - floor) * scale;
  const size_t target = in3_p[r];
  grad[target] = (expf(logit[target] - normalizer) - (1.0f - smooth + floor)) * scale;
}
