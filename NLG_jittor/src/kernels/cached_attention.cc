// Attention of one new token per row over its cached keys and itself, on the CPU. in0: qkv [B, 3 W], the new
// token's query, key and value (heads of HEAD_DIM side by side); in1, in2: the cached keys and values
// [B', H, S, HEAD_DIM]; in3: rows [B], the cached row each row continues; in4: mask [M, S + 1] (M = 1 or B), which
// keys each row's query sees. out0: [B, W] the attention output, heads side by side; out1, out2: the cache with the
// new token [B, H, S + 1, HEAD_DIM]. Each (row, head) is one task of the OpenMP threads: it copies its cached row,
// appends the new key and value, then takes the softmax of q k / sqrt(HEAD_DIM) over the keys the mask shows and
// sums the values with it.
const int batch = out1_shape0, heads = out1_shape1, length = out1_shape2, width = heads * HEAD_DIM;
const size_t cached = (size_t)(length - 1) * HEAD_DIM;
const int mask_stride = in4_shape0 == 1 ? 0 : length;
const float scale = 1.0f / sqrtf((float)HEAD_DIM);
#pragma omp parallel
{
  std::vector<float> weights(length);
  #pragma omp for collapse(2) schedule(static)
  for (int b = 0; b < batch; b++) {
    for (int h = 0; h < heads; h++) {
      const float* query = in0_p + (size_t)b * 3 * width + h * HEAD_DIM;
      const size_t source = ((size_t)in3_p[b] * heads + h) * cached;
      float* keys = out1_p + ((size_t)b * heads + h) * length * HEAD_DIM;
      float* values = out2_p + ((size_t)b * heads + h) * length * HEAD_DIM;
      std::copy(in1_p + source, in1_p + source + cached, keys);
      std::copy(in2_p + source, in2_p + source + cached, values);
      std::copy(query + width, query + width + HEAD_DIM, keys + cached);
      std::copy(query + 2 * width, query + 2 * width + HEAD_DIM, values + cached);
      const bool* seen = in4_p + (size_t)b * mask_stride;
      float peak = -FLT_MAX;
      for (int j = 0; j < length; j++) {
        if (!seen[j]) continue;
        float dot = 0;
        #pragma omp simd reduction(+:dot)
        for (int d = 0; d < HEAD_DIM; d++) dot += query[d] * keys[(size_t)j * HEAD_DIM + d];
        weights[j] = dot * scale;
        peak = std::max(peak, weights[j]);
      }
      float total = 0;
      for (int j = 0; j < length; j++) {
        weights[j] = seen[j] ? expf(weights[j] - peak) : 0.0f;
        total += weights[j];
      }
      float out[HEAD_DIM] = {0};
      for (int j = 0; j < length; j++) {
        if (!seen[j]) continue;
        const float share = weights[j] / total;
        #pragma omp simd
        for (int d = 0; d < HEAD_DIM; d++) out[d] += share * values[(size_t)j * HEAD_DIM + d];
      }
      std::copy(out, out + HEAD_DIM, out0_p + (size_t)b * width + h * HEAD_DIM);
    }
  }
}
