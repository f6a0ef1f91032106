"""GPT-2 language model with LoRA / JELLY adapters (Jittor).

Parameter names are the framework-neutral checkpoint names (common_data.model.checkpoint): Hugging Face GPT2Model
names without the "transformer." prefix, Conv1D weights [d_in, d_out], LM head tied to wte.
"""
import math

import jittor as jt
import numpy as np
from jittor import nn

from common_data.model.adapter_math import pissa
from common_data.model.init_params import init_base_params, start_arrays
from NLG_jittor.src.adapters import adapter_mode, adapter_state_dict, conv1d_for, is_merged


# c[b] = a[b] @ b[b] for a [N, n, m], b [N, m, k], each row of c summed over m in order (as Jittor's own CPU
# matmul sums), the rows shared among the OpenMP threads (Jittor compiles its CPU kernels with -fopenmp)
_BMM_SRC = """
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
"""


def cpu_matmul(a, b):
    """a @ b over [..., n, m] x [..., m, k] (float32) in one multithreaded CPU kernel: Jittor's own CPU batched
    matmul is a broadcast, a multiply and a sum, compiled for one thread. A jt.code op reads its inputs
    contiguous, so a transposed operand is copied first."""
    (*lead, n, m), k = a.shape, b.shape[-1]
    out = jt.code((math.prod(lead), n, k), a.dtype, [a.reshape(-1, n, m), b.reshape(-1, m, k)], cpu_src=_BMM_SRC)
    return out.reshape(*lead, n, k)


def swap_last(x):
    """x with its last two axes exchanged."""
    return x.transpose(*range(x.ndim - 2), x.ndim - 1, x.ndim - 2)


class BatchedMatmul(jt.Function):
    """a @ b over [..., n, m] x [..., m, k] on the CPU (cpu_matmul), gradients g @ b^T and a^T @ g the same way.
    With transpose_b: a @ b^T for b [..., k, m]."""

    def execute(self, a, b, transpose_b=False):
        self.saved = a, b, transpose_b
        return cpu_matmul(a, swap_last(b) if transpose_b else b)

    def grad(self, grad_out):
        a, b, transpose_b = self.saved
        if transpose_b:
            return cpu_matmul(grad_out, b), cpu_matmul(swap_last(grad_out), a)
        return cpu_matmul(grad_out, swap_last(b)), cpu_matmul(swap_last(a), grad_out)


def batched_matmul(a, b, transpose_b=False):
    if jt.flags.use_cuda:
        return a @ (b.transpose(-2, -1) if transpose_b else b)
    return BatchedMatmul.apply(a, b, transpose_b)


def scaled_dot_product_attention(query, key, value, attn_mask=None, is_causal=False):
    """softmax(q k^T / sqrt(head_dim)) v over the keys where attn_mask (bool, [L, S] or [B, 1, L, S]) is True,
    as torch's F.scaled_dot_product_attention."""
    if is_causal:
        attn_mask = jt.ones((query.shape[2], key.shape[2]), dtype="bool").tril()
    scores = batched_matmul(query, key, transpose_b=True) / math.sqrt(query.shape[-1])
    scores = jt.ternary(attn_mask.broadcast(scores.shape), scores, jt.array(-math.inf).broadcast(scores.shape))
    return batched_matmul(nn.softmax(scores, dim=-1), value)


def attention_mask(past_length, length, padding):
    """Which keys the `length` queries that follow `past_length` cached positions see: [L, S], or with left
    padding (pad count per row [B]) [B, 1, L, S].

    Query i sits at position past_length + i and sees the keys up to it; with padding only the real ones, and
    itself, so that a padded query (whose output nobody reads) still has a key to attend to.
    """
    keys = jt.arange(past_length + length).int64()
    queries = jt.arange(past_length, past_length + length).int64().unsqueeze(1)
    causal = keys <= queries
    if padding is None:
        return causal
    return causal & ((keys >= padding.view(-1, 1, 1, 1)) | (keys == queries))


def log_sum_exp(logits):
    """log sum exp over the last axis, summed in float64 (WeightedTokenLoss writes its gradient out)."""
    peak = logits.max(dim=-1, keepdims=True)
    return peak.squeeze(-1) + (logits - peak).exp().float64().sum(dim=-1).log().float32()


# WeightedTokenLoss's gradient on the CPU, (softmax - (1 - ls) * onehot - ls / V) * weight * grad for logits
# [rows, V], log normalizers [rows], weight * grad [rows], targets [rows]: the rows shared among the OpenMP
# threads, each row one vectorized loop (Jittor's kernels compile with -Ofast) and its target entry after it
_LOSS_GRAD_SRC = """
const int rows = in0_shape0, vocab = in0_shape1;
const float smooth = data["smooth"], floor = smooth / vocab;
#pragma omp parallel for schedule(static)
for (int r = 0; r < rows; r++) {
  const float* logit = in0_p + (size_t)r * vocab;
  float* grad = out0_p + (size_t)r * vocab;
  const float normalizer = in1_p[r], scale = in2_p[r];
  #pragma omp simd
  for (int v = 0; v < vocab; v++) grad[v] = (expf(logit[v] - normalizer) - floor) * scale;
  const size_t target = in3_p[r];
  grad[target] = (expf(logit[target] - normalizer) - (1.0f - smooth + floor)) * scale;
}
"""


class WeightedTokenLoss(jt.Function):
    """sum over rows of weight * ((1 - ls) * (-log p[target]) + ls * (mean over the vocabulary of -log p)).

    -log p = logsumexp - logit, with the sums of the forward pass in float64 (Jittor sums in the input's
    precision one element after another). The gradient is written out, (softmax - (1 - ls) * onehot - ls / V)
    * weight: autograd through gather, exp and the float64 sums would hold several [rows, vocabulary] tensors at
    once, 10% more peak memory in training. On the CPU it is one multithreaded kernel (_LOSS_GRAD_SRC); on a GPU
    one elementwise expression over the vocabulary, the one-hot part written into the target column afterwards.
    """

    def execute(self, logits, targets, weights, label_smooth):
        log_normalizer = log_sum_exp(logits)
        per_token = log_normalizer - logits.gather(1, targets.unsqueeze(1)).squeeze(1)
        if label_smooth:
            smooth = log_normalizer - logits.float64().mean(dim=-1).float32()
            per_token = (1.0 - label_smooth) * per_token + label_smooth * smooth
        self.saved = logits, log_normalizer, targets, weights, label_smooth
        return (per_token * weights).sum()

    def grad(self, grad_sum):
        logits, log_normalizer, targets, weights, label_smooth = self.saved
        rows, vocab_size = logits.shape
        scale = weights * grad_sum
        if not jt.flags.use_cuda:
            gradient = jt.code(logits.shape, logits.dtype, [logits, log_normalizer, scale, targets],
                               data={"smooth": label_smooth}, cpu_src=_LOSS_GRAD_SRC)
            return gradient, None, None, None
        gradient = ((logits - log_normalizer.unsqueeze(1)).exp() - label_smooth / vocab_size) * scale.unsqueeze(1)
        index = jt.arange(rows).int32(), targets
        at_target = (logits[index] - log_normalizer).exp() - ((1.0 - label_smooth) + label_smooth / vocab_size)
        if rows:
            gradient[index] = at_target * scale
        return gradient, None, None, None


def gelu_tanh(x):
    """GPT-2's gelu_new: the tanh approximation of GELU, as torch's F.gelu(x, approximate="tanh")."""
    return 0.5 * x * (1.0 + jt.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


class CausalSelfAttention(nn.Module):

    def __init__(self, config, adapter_config):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = conv1d_for(config, adapter_config, "attn.c_attn")
        self.c_proj = conv1d_for(config, adapter_config, "attn.c_proj")

    def execute(self, x, past=None, mask=None):
        """mask: which keys each query sees ([L, S] or [B, 1, L, S], see attention_mask); None: causal."""
        batch, length, width = x.shape
        q, k, v = self.c_attn(x).split(width, dim=2)
        q = q.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2)
        k = k.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2)
        v = v.view(batch, length, self.n_head, width // self.n_head).transpose(1, 2)
        if past is not None:
            k = jt.concat([past[0], k], dim=2)
            v = jt.concat([past[1], v], dim=2)
        y = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
        y = y.transpose(1, 2).view(batch, length, width)
        return self.c_proj(y), (k, v)


class MLP(nn.Module):

    def __init__(self, config, adapter_config):
        super().__init__()
        self.c_fc = conv1d_for(config, adapter_config, "mlp.c_fc")
        self.c_proj = conv1d_for(config, adapter_config, "mlp.c_proj")

    def execute(self, x):
        return self.c_proj(gelu_tanh(self.c_fc(x)))


class Block(nn.Module):

    def __init__(self, config, adapter_config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config, adapter_config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config, adapter_config)

    def execute(self, x, past=None, mask=None):
        attn_out, present = self.attn(self.ln_1(x), past, mask)
        x = x + attn_out
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT2LMModel(nn.Module):
    """GPT-2 with its LM head.

    The base weights are base_arrays (e.g. a pretrained checkpoint, in checkpoint names) or, when None,
    GPT-2's initialisation; the adapters start from common_data.model.init_params with `seed`.
    """

    def __init__(self, config, adapter, seed=0, base_arrays=None):
        super().__init__()
        self.config = config
        self.adapter = adapter
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList([Block(config, adapter) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        if base_arrays is None:
            base_arrays = init_base_params(config, seed)
        start = start_arrays(config, adapter, seed, base_arrays)
        # PiSSA's saved form holds its start (common_data/model/adapter_math/pissa.py)
        self.initial_adapters = {name: array for name, array in start.items() if ".lora_" in name}
        self.load_arrays(start)

    def execute(self, input_ids, targets=None, loss_mask=None, label_smooth=0.0, past_key_values=None,
                use_cache=False, full_logits=False, padding=None):
        """(logits [B, L, V], None) without targets, (None, loss) with them.

        past_key_values: a list of (k, v) per layer, each [B, n_head, past_length, head_dim], from an earlier
        call; with use_cache=True the result gains a third item, that list extended by input_ids.
        full_logits: compute the loss's logits at every position, as microsoft/LoRA does (same loss, more work).
        Training pads at the right, where the causal mask keeps real tokens from seeing it. Decoding pads at
        the left: padding (int [B]) counts each row's leading pad tokens, cached ones included; those get no
        attention and positions count from each row's first real token, so every row computes as if alone.
        """
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        positions = jt.arange(past_length, past_length + input_ids.shape[1]).int64()
        if padding is not None:
            positions = (positions - padding.unsqueeze(1)).maximum(0)
        mask = None
        if past_key_values is not None or padding is not None:
            mask = attention_mask(past_length, input_ids.shape[1], padding)
        x = self.wte(input_ids) + self.wpe(positions)
        presents = []
        for i, block in enumerate(self.h):
            x, present = block(x, None if past_key_values is None else past_key_values[i], mask)
            presents.append(present)
        x = self.ln_f(x)
        if targets is None:
            # x wte^T; matmul_transpose lets oneDNN read wte transposed instead of copying wte.t()
            logits, loss = nn.matmul_transpose(x, self.wte.weight), None
        else:
            logits, loss = None, self.lm_loss(x, targets, loss_mask, label_smooth, full_logits)
        return (logits, loss, presents) if use_cache else (logits, loss)

    def lm_loss(self, hidden, targets, loss_mask, label_smooth, full_logits=False):
        """Mean over loss_mask of (1 - ls) * nll + ls * (mean over the vocabulary of -log p).

        Logits are computed only where loss_mask != 0 (the loss is the same, the work is less) unless
        full_logits; the sum is divided by loss_mask.sum() + 1e-4 as microsoft/LoRA does.
        """
        if loss_mask is None:
            loss_mask = jt.ones(targets.shape, dtype=hidden.dtype)
        weights, rows, targets = loss_mask.reshape(-1), hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        total = weights.sum()
        if not full_logits:
            keep = weights != 0
            weights, rows, targets = weights[keep], rows[keep], targets[keep]
        logits = nn.matmul_transpose(rows, self.wte.weight)
        return WeightedTokenLoss.apply(logits, targets, weights, label_smooth) / (total + 0.0001)

    def load_arrays(self, arrays, strict=True):
        """Copy numpy arrays (checkpoint names) into the parameters.

        strict: the names must be exactly this model's; otherwise a subset will do. Unknown names and wrong
        shapes always stop with an error naming the tensor. PiSSA adapters may come in their saved form.
        """
        if self.adapter.adapter == "pissa":
            arrays = pissa.from_lora(arrays, self.adapter.lora_dim)
        params = dict(self.named_parameters())
        unknown = sorted(set(arrays) - set(params))
        missing = sorted(set(params) - set(arrays)) if strict else []
        if unknown or missing:
            raise KeyError(f"tensors not in this model: {unknown[:5]}; tensors missing: {missing[:5]}")
        for name, array in arrays.items():
            if tuple(array.shape) != tuple(params[name].shape):
                raise ValueError(f"tensor {name} has shape {tuple(array.shape)}, the model's is "
                                 f"{tuple(params[name].shape)} (adapter mode {adapter_mode(self)})")
        for name, array in arrays.items():
            params[name].update(jt.array(np.asarray(array, dtype=np.float32)))

    def to_arrays(self, adapter_only=False):
        """float32 numpy arrays in checkpoint names: all, or the trained ones (see adapter_state_dict; PiSSA's in
        their saved form, plain LoRA on the original base)."""
        if is_merged(self):
            raise RuntimeError("the adapters are merged into the weights: unmerge_adapters(model) first")
        tensors = adapter_state_dict(self) if adapter_only else self.state_dict()
        arrays = {name: tensor.float32().numpy().copy() for name, tensor in tensors.items()}
        if adapter_only and self.adapter.adapter == "pissa":
            return pissa.to_lora(arrays, self.initial_adapters)
        return arrays
