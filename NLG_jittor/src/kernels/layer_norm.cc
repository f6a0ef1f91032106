// Layer normalization on the CPU over the last axis of x [rows, C] (float32): out0 = (x - mean) * rstd * weight +
// bias, out1 each row's mean, out2 its 1 / sqrt(variance + eps), the variance the mean of (x - mean)^2 (torch's two
// passes). The rows are shared among the OpenMP threads, each row in one thread.
const int rows = in0_shape0, width = in0_shape1;
const float eps = data["eps"];
#pragma omp parallel for schedule(static)
for (int r = 0; r < rows; r++) {
  const float* x = in0_p + (size_t)r * width;
  float* y = out0_p + (size_t)r * width;
  float total = 0;
  #pragma omp simd reduction(+:total)
  for (int c = 0; c < width; c++) total += x[c];
  const float mean = total / width;
  float squares = 0;
  #pragma omp simd reduction(+:squares)
  for (int c = 0; c < width; c++) squares += (x[c] - mean) * (x[c] - mean);
  const float rstd = 1.0f / sqrtf(squares / width + eps);
  #pragma omp simd
  for (int c = 0; c < width; c++) y[c] = (x[c] - mean) * rstd * in1_p[c] + in2_p[c];
  out1_p[r] = mean;
  out2_p[r] = rstd;
}
