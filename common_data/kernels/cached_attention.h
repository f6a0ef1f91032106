// Attention of one new token per row over its cached keys and itself, on the CPU. qkv [batch, 3 W]: the new token's
// query, key and value (heads of head_dim side by side, W = heads * head_dim); past_keys, past_values
// [B', heads, length - 1, head_dim]: the cache; rows [batch]: the cached row each row continues; mask
// [mask_rows, length] (mask_rows 1 or batch): which keys each row's query sees. out [batch, W]: the attention
// output, heads side by side; keys, values [batch, heads, length, head_dim]: the cache with the new token. Each
// (row, head) is one task of the OpenMP threads: it copies its cached row, appends the new key and value, then takes
// the softmax of q k / sqrt(head_dim) over the keys the mask shows and sums the values with it.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <vector>

static void cached_attention(const float* qkv, const float* past_keys, const float* past_values, const int* rows,
                             const bool* mask, int mask_rows, int batch, int heads, int length, int head_dim,
                             float* out, float* keys_out, float* values_out) {
  const int width = heads * head_dim;
  const size_t cached = (size_t)(length - 1) * head_dim;
  const int mask_stride = mask_rows == 1 ? 0 : length;
  const float scale = 1.0f / sqrtf((float)head_dim);
  #pragma omp parallel
  {
    std::vector<float> weight_store(length), sum_store(head_dim);
    float* weights = weight_store.data();
    float* sum = sum_store.data();
    #pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < batch; b++) {
      for (int h = 0; h < heads; h++) {
        const float* query = qkv + (size_t)b * 3 * width + h * head_dim;
        const size_t source = ((size_t)rows[b] * heads + h) * cached;
        float* keys = keys_out + ((size_t)b * heads + h) * length * head_dim;
        float* values = values_out + ((size_t)b * heads + h) * length * head_dim;
        std::copy(past_keys + source, past_keys + source + cached, keys);
        std::copy(past_values + source, past_values + source + cached, values);
        std::copy(query + width, query + width + head_dim, keys + cached);
        std::copy(query + 2 * width, query + 2 * width + head_dim, values + cached);
        const bool* seen = mask + (size_t)b * mask_stride;
        float peak = -FLT_MAX;
        for (int j = 0; j < length; j++) {
          if (!seen[j]) continue;
          float dot = 0;
          #pragma omp simd reduction(+:dot)
          for (int d = 0; d < head_dim; d++) dot += query[d] * keys[(size_t)j * head_dim + d];
          weights[j] = dot * scale;
          peak = std::max(peak, weights[j]);
        }
        float total = 0;
        for (int j = 0; j < length; j++) {
          weights[j] = seen[j] ? expf(weights[j] - peak) : 0.0f;
          total += weights[j];
        }
        std::fill(sum, sum + head_dim, 0.0f);
        for (int j = 0; j < length; j++) {
          if (!seen[j]) continue;
          const float share = weights[j] / total;
          #pragma omp simd
          for (int d = 0; d < head_dim; d++) sum[d] += share * values[(size_t)j * head_dim + d];
        }
        std::copy(sum, sum + head_dim, out + (size_t)b * width + h * head_dim);
      }
    }
  }
}
