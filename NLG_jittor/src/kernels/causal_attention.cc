// Causal attention on the CPU for q, k, v [N, L, HEAD_DIM] (N = batch x heads; HEAD_DIM a compile-time constant, so
// that a row of the output stays in registers): out0 = softmax(q k^T / sqrt(HEAD_DIM)) v over the keys up to each
// query, out1 = each query's log-sum-exp of its scaled scores (the backward pass rebuilds the probabilities from
// it). The query rows are shared among the OpenMP threads; each keeps one row of scores.
const int heads = in0_shape0, length = in0_shape1;
const float scale = 1.0f / sqrtf((float)HEAD_DIM);
#pragma omp parallel
{
  std::vector<float> scores(length);
  #pragma omp for collapse(2) schedule(static)
  for (int n = 0; n < heads; n++)
    for (int i = 0; i < length; i++) {
      const float* q = in0_p + ((size_t)n * length + i) * HEAD_DIM;
      const float* keys = in1_p + (size_t)n * length * HEAD_DIM;
      const float* values = in2_p + (size_t)n * length * HEAD_DIM;
      float peak = -INFINITY;
      for (int j = 0; j <= i; j++) {
        const float* k = keys + (size_t)j * HEAD_DIM;
        float dot = 0.f;
        #pragma omp simd reduction(+:dot)
        for (int d = 0; d < HEAD_DIM; d++) dot += q[d] * k[d];
        scores[j] = dot * scale;
        peak = std::max(peak, scores[j]);
      }
      float total = 0.f, row[HEAD_DIM] = {};
      for (int j = 0; j <= i; j++) {
        const float weight = expf(scores[j] - peak);
        total += weight;
        const float* v = values + (size_t)j * HEAD_DIM;
        #pragma omp simd
        for (int d = 0; d < HEAD_DIM; d++) row[d] += weight * v[d];
      }
      float* out = out0_p + ((size_t)n * length + i) * HEAD_DIM;
      const float inverse = 1.0f / total;
      #pragma omp simd
      for (int d = 0; d < HEAD_DIM; d++) out[d] = row[d] * inverse;
      out1_p[(size_t)n * length + i] = peak + logf(total);
    }
}
