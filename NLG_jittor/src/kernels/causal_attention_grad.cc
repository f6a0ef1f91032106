// The gradients of causal_attention.cc for q, k, v, out [N, L, HEAD_DIM], its log-sum-exps [N, L] and the gradient
// of out: out0 = dq, out1 = dk, out2 = dv. With p = exp(s - lse) for the scaled score s of query i and key j <= i
// and ds = p (dout_i . v_j - dout_i . out_i) / sqrt(HEAD_DIM):
//   dq_i = sum over j <= i of ds k_j,   dk_j = sum over i >= j of ds q_i,   dv_j = sum over i >= j of p dout_i.
// Each thread takes whole heads and keeps their p and ds ([L, L], lower triangle), so that every row of a
// gradient sums in registers and is written once.
const int heads = in0_shape0, length = in0_shape1;
const float scale = 1.0f / sqrtf((float)HEAD_DIM);
#pragma omp parallel
{
  std::vector<float> probs((size_t)length * length), dscores((size_t)length * length);
  #pragma omp for schedule(static)
  for (int n = 0; n < heads; n++) {
    const size_t base = (size_t)n * length * HEAD_DIM;
    const float *queries = in0_p + base, *keys = in1_p + base, *values = in2_p + base, *outs = in3_p + base;
    const float *lse = in4_p + (size_t)n * length, *grads = in5_p + base;
    for (int i = 0; i < length; i++) {
      const float *q = queries + (size_t)i * HEAD_DIM, *g = grads + (size_t)i * HEAD_DIM;
      const float *o = outs + (size_t)i * HEAD_DIM;
      float carried = 0.f, row[HEAD_DIM] = {};
      #pragma omp simd reduction(+:carried)
      for (int d = 0; d < HEAD_DIM; d++) carried += g[d] * o[d];
      for (int j = 0; j <= i; j++) {
        const float *k = keys + (size_t)j * HEAD_DIM, *v = values + (size_t)j * HEAD_DIM;
        float score = 0.f, along = 0.f;
        #pragma omp simd reduction(+:score, along)
        for (int d = 0; d < HEAD_DIM; d++) {
          score += q[d] * k[d];
          along += g[d] * v[d];
        }
        const float p = expf(score * scale - lse[i]), ds = p * (along - carried) * scale;
        probs[(size_t)i * length + j] = p;
        dscores[(size_t)i * length + j] = ds;
        #pragma omp simd
        for (int d = 0; d < HEAD_DIM; d++) row[d] += ds * k[d];
      }
      float* dq = out0_p + base + (size_t)i * HEAD_DIM;
      #pragma omp simd
      for (int d = 0; d < HEAD_DIM; d++) dq[d] = row[d];
    }
    for (int j = 0; j < length; j++) {
      float key_row[HEAD_DIM] = {}, value_row[HEAD_DIM] = {};
      for (int i = j; i < length; i++) {
        const float *q = queries + (size_t)i * HEAD_DIM, *g = grads + (size_t)i * HEAD_DIM;
        const float p = probs[(size_t)i * length + j], ds = dscores[(size_t)i * length + j];
        #pragma omp simd
        for (int d = 0; d < HEAD_DIM; d++) {
          key_row[d] += ds * q[d];
          value_row[d] += p * g[d];
        }
      }
      float *dk = out1_p + base + (size_t)j * HEAD_DIM, *dv = out2_p + base + (size_t)j * HEAD_DIM;
      #pragma omp simd
      for (int d = 0; d < HEAD_DIM; d++) {
        dk[d] = key_row[d];
        dv[d] = value_row[d];
      }
    }
  }
}
