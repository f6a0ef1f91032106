// The LM head's token loss on the CPU for logits [rows, V], targets [rows], weights [rows]: per_token [rows] each
// row's weight * ((1 - ls) * (lse - logit[target]) + ls * (lse - mean logit)); with gradient set, grad [rows, V] the
// gradient of their sum, weight * (softmax - (1 - ls) * onehot - ls / V). grad may be the logits' memory: a row's
// logits are read before its gradient is written. The rows are shared among the OpenMP threads and each is read
// once from memory: its maximum, then exp(logit - max) written into its gradient row and summed, then that row
// scaled while it is still in cache. The sums run in float over BLOCK entries at a time (vectorized) and add the
// blocks in double, so a row's result does not depend on the number of threads.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>

static void token_loss(const float* logits, const int* targets, const float* weights, int rows, int vocab,
                       float smooth, bool gradient, float* per_token, float* grad) {
  constexpr int BLOCK = 256;
  const float floor = smooth / vocab;
  #pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float* logit = logits + (size_t)r * vocab;
    float* row_grad = grad + (size_t)r * vocab;
    const int target = targets[r];
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
          row_grad[v] = e;
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
    const float weight = weights[r], log_normalizer = peak + (float)log(exp_total);
    const float nll = log_normalizer - target_logit, spread = log_normalizer - (float)(total / vocab);
    per_token[r] = weight * ((1.0f - smooth) * nll + smooth * spread);
    if (!gradient) continue;
    const float share = weight / (float)exp_total, offset = floor * weight;
    #pragma omp simd
    for (int v = 0; v < vocab; v++) row_grad[v] = row_grad[v] * share - offset;
    row_grad[target] -= (1.0f - smooth) * weight;
  }
}
