// The gradients of layer_norm (kernels/layer_norm.cc) on the CPU: in0 x [rows, C], in1 weight, in2 mean, in3 rstd,
// in4 the gradient g of the output -> out0 the gradient of x, rstd * (g w - mean(g w) - xhat mean(g w xhat)) with
// xhat = (x - mean) rstd, out1 of weight (sum over rows of g xhat), out2 of bias (sum of g). The rows are split into
// blocks of BLOCK rows, each block's sums kept apart and added in block order, so that the result does not depend
// on the number of threads.
constexpr int BLOCK = 32;
const int rows = in0_shape0, width = in0_shape1, blocks = (rows + BLOCK - 1) / BLOCK;
std::vector<float> weight_sums((size_t)blocks * width, 0.0f), bias_sums((size_t)blocks * width, 0.0f);
#pragma omp parallel for schedule(static)
for (int block = 0; block < blocks; block++) {
  float* weight_sum = weight_sums.data() + (size_t)block * width;
  float* bias_sum = bias_sums.data() + (size_t)block * width;
  for (int r = block * BLOCK; r < std::min(rows, (block + 1) * BLOCK); r++) {
    const float* x = in0_p + (size_t)r * width;
    const float* g = in4_p + (size_t)r * width;
    float* dx = out0_p + (size_t)r * width;
    const float mean = in2_p[r], rstd = in3_p[r];
    float gw_total = 0, gw_xhat_total = 0;
    #pragma omp simd reduction(+:gw_total, gw_xhat_total)
    for (int c = 0; c < width; c++) {
      const float xhat = (x[c] - mean) * rstd, gw = g[c] * in1_p[c];
      gw_total += gw;
      gw_xhat_total += gw * xhat;
      weight_sum[c] += g[c] * xhat;
      bias_sum[c] += g[c];
    }
    const float gw_mean = gw_total / width, gw_xhat_mean = gw_xhat_total / width;
    #pragma omp simd
    for (int c = 0; c < width; c++) dx[c] = rstd * (g[c] * in1_p[c] - gw_mean - (x[c] - mean) * rstd * gw_xhat_mean);
  }
}
for (int c = 0; c < width; c++) {
  float weight_total = 0, bias_total = 0;
  for (int block = 0; block < blocks; block++) {
    weight_total += weight_sums[(size_t)block * width + c];
    bias_total += bias_sums[(size_t)block * width + c];
  }
  out1_p[c] = weight_total;
  out2_p[c] = bias_total;
}
