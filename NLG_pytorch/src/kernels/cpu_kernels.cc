// The shared CPU kernels (common_data/kernels) as C functions, for ops.py to call through ctypes. The library needs
// libgomp.so.1, which resolves to the one torch has loaded: the kernels run on torch's OpenMP threads.
#include "adamw_step.h"
#include "cached_attention.h"
#include "token_loss.h"
#include "top_log_softmax.h"

extern "C" {

void nlg_token_loss(const float* logits, const int* targets, const float* weights, int rows, int vocab,
                    float smooth, int gradient, float* per_token, float* grad) {
  token_loss(logits, targets, weights, rows, vocab, smooth, gradient != 0, per_token, grad);
}

void nlg_top_log_softmax(const float* logits, int rows, int vocab, int k, float* best, int* columns) {
  top_log_softmax(logits, rows, vocab, k, best, columns);
}

void nlg_cached_attention(const float* qkv, const float* past_keys, const float* past_values, const int* rows,
                          const bool* mask, int mask_rows, int batch, int heads, int length, int head_dim, float* out,
                          float* keys, float* values) {
  cached_attention(qkv, past_keys, past_values, rows, mask, mask_rows, batch, heads, length, head_dim, out, keys,
                   values);
}

void nlg_adamw_step(float* p, float* m, float* v, const float* g, size_t size, float beta1, float beta2, float rest1,
                    float rest2, float step_size, float eps, float decay) {
  adamw_step(p, m, v, g, size, beta1, beta2, rest1, rest2, step_size, eps, decay, p, m, v);
}

}
