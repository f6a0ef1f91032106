// The LM head's token loss on the CPU for logits [rows, V], targets [rows], weights [rows]: out0 [rows] each row's
// weight * ((1 - ls) * (lse - logit[target]) + ls * (lse - mean logit)); with "gradient" set, out1 [rows, V] the
// gradient of their sum, weight * (softmax - (1 - ls) * onehot - ls / V). out1 may share the logits' memory: a row's
// logits are read before its gradient is written. The rows are shared among the OpenMP threads and each is read
// once from memory: its maximum, then exp(logit - max) written into its gradient row and summed, then that row
// scaled while it is still in cache. The sums run in float over BLOCK entries at a time (vectorized) and add the
// blocks in double.
constexpr int BLOCK = 256;
const int rows = in0_shape0, vocab = in0_shape1;
const float smooth = data["smooth"], floor = smooth / vocab;
const bool gradient = data["gradient"];
#pragma omp parallel for schedule(static)
for (int r = 0; r < rows; r++) {
  const float* logit = in0_p + (size_t)r * vocab;
  float* grad = out1_p + (size_t)r * vocab;
  const int target = in1_p[r];
  const float target_logit = logit[target];
  float peak = -FLT_MAX;
  #pragma omp simd reduction(max:peak)
  for (int v = 0; v < vocab; v++) peak = std::max(peak, logit[v]);
  double exp_total = 0, total = 0;
  for (int start = 0; start < vocab; start += BLOCK) {
    const int stop = std::min(start + BLOCK, vocab);
    float block_exp = 0, block_total = 0;
    if (gradient) {
      #pragma omp simd reduction(+:block_exp, block_total)
      for (int v = start; v < stop; v++) {
        const float x = logit[v], e = expf(x - peak);
        block_exp += e;
        block_total += x;
        grad[v] = e;
      }
    } else {
      #pragma omp simd reduction(+:block_exp, block_total)
      for (int v = start; v < stop; v++) {
        block_exp += expf(logit[v] - peak);
        block_total += logit[v];
      }
    }
    exp_total += block_exp;
    total += block_total;
  }
  const float weight = in2_p[r], log_normalizer = peak + (float)log(exp_total);
  const float nll = log_normalizer - target_logit, spread = log_normalizer - (float)(total / vocab);
  out0_p[r] = weight * ((1.0f - smooth) * nll + smooth * spread);
  if (!gradient) continue;
  const float share = weight / (float)exp_total, offset = floor * weight;
  #pragma omp simd
  for (int v = 0; v < vocab; v++) grad[v] = grad[v] * share - offset;
  grad[target] -= (1.0f - smooth) * weight;
}
