"""The framework operations the model, the adapters and beam search use (Jittor).

NLG_pytorch/src/ops.py exports the same names, mostly as torch's own functions. Here they hold the CPU kernels
Jittor lacks (their C sources in kernels/): causal attention both ways, a multithreaded batched matmul, gelu_new
and layer normalization both ways, and sums over the vocabulary in float64 (Jittor sums in the input's precision
one element after another); and those torch calls too, written once in common_data/kernels: the LM head's token
loss with its gradient, beam search's best log-probabilities, attention over a key/value cache and AdamW's update.
"""
import math
from pathlib import Path

import jittor as jt
import numpy as np
from jittor import nn

from common_data import kernels

KERNELS = Path(__file__).resolve().parent / "kernels"
# top_k splits rows into blocks of this many scores
TOP_K_BLOCK = 64


def kernel_source(name):
    """The C source of kernels/<name>.cc without its leading comment lines."""
    lines = (KERNELS / f"{name}.cc").read_text().splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("//"))


BATCHED_MATMUL_SRC = kernel_source("batched_matmul")
CAUSAL_ATTENTION_SRC = kernel_source("causal_attention")
CAUSAL_ATTENTION_GRAD_SRC = kernel_source("causal_attention_grad")
GELU_SRC = kernel_source("gelu")
GELU_GRAD_SRC = kernel_source("gelu_grad")
LAYER_NORM_SRC = kernel_source("layer_norm")
LAYER_NORM_GRAD_SRC = kernel_source("layer_norm_grad")
CPP_HEADERS = "#include <algorithm>\n#include <cfloat>\n#include <cmath>\n#include <vector>\n"
# written once for both frameworks (common_data/kernels), called from the ops below
TOKEN_LOSS_HEADER = kernels.header("token_loss")
TOKEN_LOSS_CALL = ('token_loss(in0_p, in1_p, in2_p, in0_shape0, in0_shape1, data["smooth"], data["gradient"], '
                   "out0_p, out1_p);")
TOP_LOG_SOFTMAX_HEADER = kernels.header("top_log_softmax")
TOP_LOG_SOFTMAX_CALL = "top_log_softmax(in0_p, in0_shape0, in0_shape1, out0_shape1, out0_p, out1_p);"
CACHED_ATTENTION_HEADER = kernels.header("cached_attention")
CACHED_ATTENTION_CALL = ("cached_attention(in0_p, in1_p, in2_p, in3_p, in4_p, in4_shape0, out1_shape0, out1_shape1, "
                         "out1_shape2, out1_shape3, out0_p, out1_p, out2_p);")
ADAMW_STEP_HEADER = kernels.header("adamw_step")
ADAMW_STEP_CALL = ('adamw_step(in0_p, in1_p, in2_p, in3_p, in0->num, data["beta1"], data["beta2"], data["rest1"], '
                   'data["rest2"], data["step_size"], data["eps"], data["decay"], out0_p, out1_p, out2_p);')


def attention_header(head_dim):
    """The attention kernels' header: head_dim is their compile-time HEAD_DIM."""
    return f"{CPP_HEADERS}constexpr int HEAD_DIM = {head_dim};"


def cpu_matmul(a, b):
    """a @ b over [..., n, m] x [..., m, k] (float32) in one multithreaded CPU kernel: Jittor's own CPU batched
    matmul is a broadcast, a multiply and a sum, compiled for one thread. A jt.code op reads its inputs
    contiguous, so a transposed operand is copied first."""
    (*lead, n, m), k = a.shape, b.shape[-1]
    out = jt.code((math.prod(lead), n, k), a.dtype, [a.reshape(-1, n, m), b.reshape(-1, m, k)],
                  cpu_src=BATCHED_MATMUL_SRC)
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


class CausalAttention(jt.Function):
    """Causal attention for query, key, value [B, H, L, D] on the CPU, one kernel each way
    (kernels/causal_attention.cc and its _grad): no [L, L] probabilities are stored, the backward pass rebuilds
    them from each query's log-sum-exp."""

    def execute(self, query, key, value):
        heads = query.shape[0] * query.shape[1]
        q, k, v = (x.reshape(heads, *x.shape[2:]) for x in (query, key, value))
        out, lse = jt.code([q.shape, (heads, q.shape[1])], [q.dtype, q.dtype], [q, k, v],
                           cpu_header=attention_header(q.shape[2]), cpu_src=CAUSAL_ATTENTION_SRC)
        self.saved = q, k, v, out, lse
        return out.reshape(query.shape)

    def grad(self, grad_out):
        q, k, v, out, lse = self.saved
        grads = jt.code([q.shape] * 3, [q.dtype] * 3, [q, k, v, out, lse, grad_out.reshape(q.shape)],
                        cpu_header=attention_header(q.shape[2]), cpu_src=CAUSAL_ATTENTION_GRAD_SRC)
        return tuple(grad.reshape(grad_out.shape) for grad in grads)


def attention(query, key, value, mask=None):
    """softmax(q k^T / sqrt(head_dim)) v over the keys where mask (bool, [L, S] or [B, 1, L, S]) is True; None:
    causal. As torch's F.scaled_dot_product_attention."""
    if mask is None and not jt.flags.use_cuda:
        return CausalAttention.apply(query, key, value)
    if mask is None:
        mask = jt.ones((query.shape[2], key.shape[2]), dtype="bool").tril()
    scores = batched_matmul(query, key, transpose_b=True) / math.sqrt(query.shape[-1])
    scores = jt.ternary(mask.broadcast(scores.shape), scores, jt.array(-math.inf).broadcast(scores.shape))
    return batched_matmul(nn.softmax(scores, dim=-1), value)


def self_attention(qkv, n_head, mask=None, past=None, past_rows=None):
    """Multi-head attention of qkv [B, L, 3 W] (queries, keys and values side by side): (y [B, L, W], (k, v)), k and
    v [B, n_head, S, W / n_head] with the cached positions first. past: the cached (k, v) of the positions before,
    past_rows [B] the row of them each row continues (None: row for row); mask: as attention's. One new token per row
    with a cache runs cached_attention on the CPU."""
    if past is not None and qkv.shape[1] == 1 and not jt.flags.use_cuda:
        return cached_attention(qkv, n_head, mask, past, past_rows)
    batch, length, width = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    q, k, v = (x.view(batch, length, n_head, width // n_head).transpose(1, 2) for x in qkv.split(width, dim=2))
    if past is not None:
        k, v = extend_cache(past[0], k, past_rows), extend_cache(past[1], v, past_rows)
    y = attention(q, k, v, mask)
    return y.transpose(1, 2).reshape(batch, length, width), (k, v)


def extend_cache(cached, new, rows=None):
    """cat([cached[rows], new], dim=2) for [B, H, L, D] tensors (rows None: row for row)."""
    return concat([cached if rows is None else take_rows(cached, rows), new], dim=2)


def cached_attention(qkv, n_head, mask, past, past_rows):
    """self_attention of one new token per row with a cache in one kernel (the shared cached_attention, in
    common_data/kernels), which also reorders the cache by past_rows and appends the new keys and values."""
    batch, width = qkv.shape[0], qkv.shape[2] // 3
    past_k, past_v = past
    rows = jt.arange(batch).int32() if past_rows is None else past_rows
    shape = (batch, n_head, past_k.shape[2] + 1, past_k.shape[3])
    y, k, v = jt.code([(batch, width), shape, shape], [qkv.dtype] * 3,
                      [qkv.reshape(batch, 3 * width), past_k, past_v, rows, mask.reshape(-1, shape[2])],
                      cpu_header=CACHED_ATTENTION_HEADER, cpu_src=CACHED_ATTENTION_CALL)
    return y.reshape(batch, 1, width), (k, v)


class Gelu(jt.Function):
    """gelu_new on the CPU, one multithreaded kernel each way (kernels/gelu.cc and its _grad)."""

    def execute(self, x):
        self.x = x
        return jt.code(x.shape, x.dtype, [x], cpu_header=CPP_HEADERS, cpu_src=GELU_SRC)

    def grad(self, grad_out):
        return jt.code(self.x.shape, self.x.dtype, [self.x, grad_out], cpu_header=CPP_HEADERS, cpu_src=GELU_GRAD_SRC)


def gelu(x):
    """GPT-2's gelu_new: the tanh approximation of GELU, as torch's F.gelu(x, approximate="tanh")."""
    if not jt.flags.use_cuda:
        return Gelu.apply(x)
    return 0.5 * x * (1.0 + jt.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


class LayerNormFunction(jt.Function):
    """Layer normalization over the last axis on the CPU, one multithreaded kernel each way (kernels/layer_norm.cc
    and its _grad)."""

    def execute(self, x, weight, bias, eps):
        rows = x.reshape(-1, x.shape[-1])
        out, mean, rstd = jt.code([rows.shape, rows.shape[:1], rows.shape[:1]], [x.dtype] * 3, [rows, weight, bias],
                                  data={"eps": eps}, cpu_header=CPP_HEADERS, cpu_src=LAYER_NORM_SRC)
        self.saved = rows, weight, mean, rstd
        return out.reshape(x.shape)

    def grad(self, grad_out):
        rows, weight, mean, rstd = self.saved
        grads = jt.code([rows.shape, weight.shape, weight.shape], [rows.dtype] * 3,
                        [rows, weight, mean, rstd, grad_out.reshape(rows.shape)], cpu_header=CPP_HEADERS,
                        cpu_src=LAYER_NORM_GRAD_SRC)
        return grads[0].reshape(grad_out.shape), grads[1], grads[2], None


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the last axis; on the CPU LayerNormFunction's kernels."""

    def execute(self, x):
        if jt.flags.use_cuda:
            return super().execute(x)
        return LayerNormFunction.apply(x, self.weight, self.bias, self.eps)


def matmul(x, weight):
    """x weight for x [..., d], weight [d, n]."""
    return x @ weight


def matmul_transposed(x, weight):
    """x weight^T; matmul_transpose lets oneDNN read weight transposed instead of copying weight.t()."""
    return nn.matmul_transpose(x, weight)


def matmul_first_transposed(a, b):
    """a^T b for a [n, m], b [n, k]: written as the broadcast and sum that Jittor maps to oneDNN's product reading a
    transposed (a.transpose() @ b copies a first)."""
    (rows, m), k = a.shape, b.shape[1]
    return (a.broadcast([rows, m, k], [2]) * b.broadcast([rows, m, k], [1])).sum(0)


def log_sum_exp(logits):
    """log sum exp over the last axis, summed in float64."""
    peak = logits.max(dim=-1, keepdims=True)
    return peak.squeeze(-1) + (logits - peak).exp().float64().sum(dim=-1).log().float32()


def log_softmax(logits):
    """log_softmax over the last axis, the normaliser summed in float64."""
    return logits - log_sum_exp(logits).unsqueeze(-1)


class WeightedTokenLoss(jt.Function):
    """sum over rows of weight * ((1 - ls) * (-log p[target]) + ls * (mean over the vocabulary of -log p)).

    -log p = logsumexp - logit, with the sums of the forward pass in float64. The gradient is written out,
    (softmax - (1 - ls) * onehot - ls / V) * weight, as one elementwise expression over the vocabulary, the one-hot
    part written into the target column afterwards: autograd through gather, exp and the float64 sums would hold
    several [rows, vocabulary] tensors at once. On the CPU, LMHeadLoss does this in one kernel.
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
        gradient = ((logits - log_normalizer.unsqueeze(1)).exp() - label_smooth / vocab_size) * scale.unsqueeze(1)
        index = jt.arange(rows).int32(), targets
        at_target = (logits[index] - log_normalizer).exp() - ((1.0 - label_smooth) + label_smooth / vocab_size)
        if rows:
            gradient[index] = at_target * scale
        return gradient, None, None, None


def token_loss(logits, targets, weights, label_smooth):
    """WeightedTokenLoss of logits [rows, V], targets [rows], weights [rows]."""
    return WeightedTokenLoss.apply(logits, targets, weights, label_smooth)


class LMHeadLoss(jt.Function):
    """token_loss(hidden weight^T, ...) on the CPU: oneDNN's product, then the shared token_loss kernel
    (common_data/kernels), which reads each row of logits once for its loss and, where a gradient is wanted, turns
    it in place into the gradient of its logits (scaled by the weights, not yet by the upstream gradient). Backward
    scales the products' operands, never a [rows, V] tensor."""

    def execute(self, hidden, weight, targets, weights, label_smooth):
        logits = matmul_transposed(hidden, weight)
        per_token, self.logits_grad = jt.code(
            inputs=[logits, targets.int32(), weights], outputs=[jt.empty(logits.shape[:1], logits.dtype), logits],
            data={"smooth": label_smooth, "gradient": int(not jt.flags.no_grad)}, cpu_header=TOKEN_LOSS_HEADER,
            cpu_src=TOKEN_LOSS_CALL)
        self.hidden, self.weight = hidden, weight
        return per_token.sum()

    def grad(self, grad_sum):
        return (self.logits_grad @ self.weight * grad_sum,
                matmul_first_transposed(self.logits_grad, self.hidden * grad_sum), None, None, None)


def lm_head_loss(hidden, weight, targets, weights, label_smooth):
    """token_loss of the logits hidden weight^T ([rows, d] x [V, d]), oneDNN's product reading weight transposed."""
    if jt.flags.use_cuda:
        return token_loss(matmul_transposed(hidden, weight), targets, weights, label_smooth)
    return LMHeadLoss.apply(hidden, weight, targets, weights, label_smooth)


def top_log_softmax(logits, k):
    """top_k(log_softmax(logits), k) for logits [rows, V]; on the CPU the shared top_log_softmax kernel
    (common_data/kernels), which never writes the log-probabilities out."""
    if jt.flags.use_cuda:
        return top_k(log_softmax(logits), k)
    return jt.code([(logits.shape[0], k)] * 2, [logits.dtype, "int32"], [logits], cpu_header=TOP_LOG_SOFTMAX_HEADER,
                   cpu_src=TOP_LOG_SOFTMAX_CALL)


def top_k(scores, k):
    """(values, indices) of the k largest scores of every row [rows, width], best first, as torch's topk.

    Jittor's topk sorts whole rows, which over a vocabulary costs more than the model. The k largest lie in
    the k blocks with the largest maxima (a block outside them has k larger scores before its best), so
    only the block maxima and then those k blocks get sorted.
    """
    rows, width = scores.shape
    blocks = -(-width // TOP_K_BLOCK)
    if blocks <= k:
        return scores.topk(k, dim=1)
    padding = blocks * TOP_K_BLOCK - width
    padded = jt.concat([scores, jt.full((rows, padding), float("-inf"))], dim=1) if padding else scores
    _, best_blocks = padded.view(rows, blocks, TOP_K_BLOCK).max(dim=2).topk(k, dim=1)
    ids = (best_blocks.unsqueeze(2) * TOP_K_BLOCK + jt.arange(TOP_K_BLOCK).int32()).view(rows, k * TOP_K_BLOCK)
    values, order = padded.gather(1, ids).topk(k, dim=1)
    return values, ids.gather(1, order)


# tensors
def positions(start, stop, like):
    """int64 positions start .. stop - 1 (like: a tensor on the device wanted; Jittor has one)."""
    return jt.arange(start, stop).int64()


def concat(tensors, dim=0):
    return jt.concat(tensors, dim=dim)


def take_rows(x, index):
    """x[index] for int64 index [n] along the first axis."""
    return x[index]


def clamp_min(x, low):
    return x.maximum(low)


def ones(shape, like):
    """Ones of shape in like's dtype."""
    return jt.ones(shape, dtype=like.dtype)


def where(condition, x, y):
    return jt.ternary(condition, x, y)


def eye(n, like):
    """The n x n identity in like's dtype."""
    return jt.init.eye(n, dtype=like.dtype)


def float32(x):
    return x.float32()


def float32_zeros(shape, like):
    """float32 zeros of shape."""
    return jt.zeros(shape, dtype="float32")


def zeros_like(x):
    return jt.zeros_like(x)


def detach(x):
    return x.stop_grad()


def sync(tensors):
    """Compute pending lazy results now: a lazy running average would grow its graph step after step."""
    jt.sync(tensors)


# to and from numpy
def to_numpy(tensor):
    """A float32 numpy copy."""
    return tensor.float32().numpy().copy()


def numpy(tensor):
    """The tensor as a numpy array, its dtype kept, computed now (this forces Jittor's lazy graph up to it)."""
    return tensor.numpy()


def from_numpy(array, device):
    """A tensor of the numpy array (device: "cpu" or "cuda"; Jittor puts it where jt.flags.use_cuda says)."""
    return jt.array(array)


def from_numpy_like(array, like):
    """A tensor of the numpy array (like: a tensor on the device wanted; Jittor has one)."""
    return jt.array(array)


def tensor_like(array, like):
    """The numpy array as a tensor in like's dtype."""
    return jt.array(np.asarray(array)).cast(like.dtype)


def constant_like(like, array=None):
    """A tensor outside the autograd graph (stop_grad) in like's dtype: zeros, or the numpy array. A Var that a
    jt.Function takes in with a gradient would be taped, and its backward pass would hand back that tape's
    variable."""
    if array is None:
        return jt.zeros_like(like).stop_grad()
    return jt.array(array).cast(like.dtype).stop_grad()


# modules and parameters: a parameter changes in place with Var.update, which keeps the Var and whether it
# trains (an assignment under jt.no_grad would freeze it)
def to_device(module, device):
    """The module (Jittor puts it where jt.flags.use_cuda says)."""
    return module


def parameter(shape):
    """A trainable tensor of zeros (a Var held by a Module is its parameter)."""
    return jt.zeros(shape)


def dropout(p):
    """A dropout module, in training mode (Jittor's Dropout starts in eval mode, a torch module in training)."""
    return nn.Dropout(p, is_train=True)


def is_training(module):
    return module.is_train


def assign(param, array):
    """param <- array (numpy), in place, keeping whether param trains (Var.update)."""
    param.update(jt.array(np.asarray(array, dtype=np.float32)))


def replace(param, value):
    """param <- value (a tensor, whose shape may differ), keeping the parameter object."""
    param.update(value)


def set_columns(weight, start, values):
    """weight[:, start:start + columns] <- values (numpy), in place."""
    columns = jt.array(values.astype(np.float32))
    weight.update(weight.setitem((slice(None), slice(start, start + values.shape[1])), columns))


def scale_in_place(param, factors):
    """param <- param * factors (numpy, broadcast), in place."""
    param.update(param * tensor_like(factors, param))


# the optimizer
def gradients(group):
    """(parameter, gradient) for the parameters of an optimizer group that have a gradient."""
    return [(param, grad) for param, grad in zip(group["params"], group.get("grads", [])) if not param.is_stop_grad()]


def set_gradients(optimizer, params, arrays):
    """Replace the gradients of params {name: parameter} by the numpy arrays {name: array}; Jittor's optimizer
    keeps the gradients that backward() gathered in its parameter groups."""
    by_id = {id(param): name for name, param in params.items()}
    for group in optimizer.param_groups:
        for param, grad in zip(group["params"], group["grads"]):
            if id(param) in by_id:
                grad.update(tensor_like(arrays[by_id[id(param)]], param))


def adam_step(param, exp_avg, exp_avg_sq, grad, beta1, beta2, step_size, eps, decay):
    """m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, p <- p - step_size m / (sqrt(v) + eps), then
    p <- p - decay p, in place; on the CPU in one multithreaded pass (the shared adamw_step kernel, in
    common_data/kernels): Jittor compiles its elementwise CPU kernels for one thread."""
    if jt.flags.use_cuda:
        exp_avg.update(exp_avg * beta1 + (1.0 - beta1) * grad)
        exp_avg_sq.update(exp_avg_sq * beta2 + (1.0 - beta2) * grad * grad)
        param.update(param - step_size * (exp_avg / (exp_avg_sq.sqrt() + eps)))
        if decay > 0.0:
            param.update(param - decay * param)
        return
    hyper = dict(beta1=beta1, beta2=beta2, rest1=1.0 - beta1, rest2=1.0 - beta2, step_size=step_size, eps=eps,
                 decay=decay)
    outputs = jt.code([param.shape] * 3, [param.dtype] * 3, [param, exp_avg, exp_avg_sq, grad],
                      data={name: float(value) for name, value in hyper.items()}, cpu_header=ADAMW_STEP_HEADER,
                      cpu_src=ADAMW_STEP_CALL)
    for state, value in zip((param, exp_avg, exp_avg_sq), outputs):
        state.update(value)


no_grad = jt.no_grad
