// c[b] = a[b] @ b[b] for a [N, n, m], b [N, m, k], each row of c summed over m in order (as Jittor's own CPU
// matmul sums), the rows shared among the OpenMP threads (Jittor compiles its CPU kernels with -fopenmp)
const int batch = in0_shape0, n = in0_shape1, m = in0_shape2, k = in1_shape2;
#pragma omp parallel for collapse(2) schedule(static)
for (int b = 0; b < batch; b++)
  for (int i = 0; i < n; i++) {
    const float* a_row = in0_p + ((size_t)b * n + i) * m;
    const float* b_mat = in1_p + (size_t)b * m * k;
    float* c_row = out0_p + ((size_t)b * n + i) * k;
    for (int j = 0; j < k; j++) c_row[j] = 0.f;
    for (int p = 0; p < m; p++) {
      const float scale = a_row[p];
      const float* b_row = b_mat + (size_t)p * k;
      #pragma omp simd
      for (int j = 0; j < k; j++) c_row[j] += scale * b_row[j];
    }
  }
