// The k largest log-probabilities of every row of logits [rows, V] on the CPU, best first: best [rows, k] their
// values, logit - (max + log sum exp(logit - max)), column [rows, k] their columns, the lower column first among
// equal logits. The rows are shared among the OpenMP threads and each is read twice, the second time from cache.
// First its k best, kept in order by insertion: a CHUNK of logits is looked at one by one only when its maximum
// beats the k-th best so far, which after the first few chunks is rare. The best is the row's maximum; then the sum
// of exponentials, in float over CHUNK * 16 entries at a time (vectorized) with the blocks added in double.
// -inf (a banned token) ranks last; a row needs k logits.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>

static void top_log_softmax(const float* logits, int rows, int vocab, int k, float* best_values, int* best_columns) {
  constexpr int CHUNK = 16;
  #pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    const float* logit = logits + (size_t)r * vocab;
    float* best = best_values + (size_t)r * k;
    int* column = best_columns + (size_t)r * k;
    int kept = 0;
    for (int start = 0; start < vocab; start += CHUNK) {
      const int stop = std::min(start + CHUNK, vocab);
      float chunk_max = -FLT_MAX;
      #pragma omp simd reduction(max:chunk_max)
      for (int v = start; v < stop; v++) chunk_max = std::max(chunk_max, logit[v]);
      if (kept == k && !(chunk_max > best[k - 1])) continue;
      for (int v = start; v < stop; v++) {
        const float x = logit[v];
        if (kept == k && !(x > best[k - 1])) continue;
        int place = kept < k ? kept++ : k - 1;
        for (; place > 0 && x > best[place - 1]; place--) {
          best[place] = best[place - 1];
          column[place] = column[place - 1];
        }
        best[place] = x;
        column[place] = v;
      }
    }
    const float peak = best[0];
    double total = 0;
    for (int start = 0; start < vocab; start += CHUNK * 16) {
      const int stop = std::min(start + CHUNK * 16, vocab);
      float block_total = 0;
      #pragma omp simd reduction(+:block_total)
      for (int v = start; v < stop; v++) block_total += expf(logit[v] - peak);
      total += block_total;
    }
    const float log_normalizer = peak + (float)log(total);
    for (int j = 0; j < k; j++) best[j] -= log_normalizer;
  }
}
