"""The framework operations the model, the adapters and beam search use (PyTorch).

NLG_jittor/src/ops.py exports the same names and holds the kernels Jittor lacks; here most are torch's own
functions. On the CPU four kernels are Jittor's, written once in common_data/kernels and called through ctypes: the
LM head's token loss with its gradient (no [rows, vocabulary] tensor beside the logits, where autograd through
log_softmax, gather and mean makes three), beam search's best log-probabilities, attention of one new token over a
key/value cache (reordering and extending the cache as it goes) and AdamW's update in one pass. The products of
the blocks' weights and of the LM head go to oneDNN's sgemm, the library Jittor uses (the system's libdnnl, on
torch's OpenMP threads), which runs those shapes faster than torch's own (bench's gemm task).
"""
import ctypes
import ctypes.util
import functools
import math
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from common_data import kernels

KERNELS = Path(__file__).resolve().parent / "kernels"

# rows per chunk of LMHeadLoss: bounds its logits buffer (1024 x 50,257 float32, 206 MB), kept between calls
LM_HEAD_CHUNK = 1024


def attention(query, key, value, mask=None):
    """softmax(q k^T / sqrt(head_dim)) v over the keys where mask (bool, [L, S] or [B, 1, L, S]) is True; None:
    causal."""
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=mask is None)


def self_attention(qkv, n_head, mask=None, past=None, past_rows=None):
    """Multi-head attention of qkv [B, L, 3 W] (queries, keys and values side by side): (y [B, L, W], (k, v)), k and
    v [B, n_head, S, W / n_head] with the cached positions first. past: the cached (k, v) of the positions before,
    past_rows [B] the row of them each row continues (None: row for row); mask: as attention's. One new token per row
    with a cache runs cached_attention on the CPU."""
    if (past is not None and mask is not None and qkv.shape[1] == 1 and on_cpu_float32(qkv, *past)
            and cpu_kernels() is not None):
        return cached_attention(qkv, n_head, mask, past, past_rows)
    batch, length, width = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    q, k, v = (x.view(batch, length, n_head, width // n_head).transpose(1, 2) for x in qkv.split(width, dim=2))
    if past is not None:
        k, v = extend_cache(past[0], k, past_rows), extend_cache(past[1], v, past_rows)
    y = attention(q, k, v, mask)
    return y.transpose(1, 2).reshape(batch, length, width), (k, v)


def cached_attention(qkv, n_head, mask, past, past_rows):
    """self_attention of one new token per row with a cache in one kernel (the shared cached_attention), which also
    reorders the cache by past_rows and appends the new keys and values."""
    batch, width = qkv.shape[0], qkv.shape[2] // 3
    past_k, past_v = (x.contiguous() for x in past)
    rows = torch.arange(batch, dtype=torch.int32) if past_rows is None else past_rows.to(torch.int32)
    shape = batch, n_head, past_k.shape[2] + 1, past_k.shape[3]
    mask = mask.reshape(-1, shape[2]).contiguous()
    qkv, rows = qkv.contiguous(), rows.contiguous()
    y, k, v = qkv.new_empty(batch, 1, width), qkv.new_empty(shape), qkv.new_empty(shape)
    cpu_kernels().nlg_cached_attention(qkv.data_ptr(), past_k.data_ptr(), past_v.data_ptr(), rows.data_ptr(),
                                       mask.data_ptr(), mask.shape[0], *shape, y.data_ptr(), k.data_ptr(), v.data_ptr())
    return y, (k, v)


def extend_cache(cached, new, rows=None):
    """cat([cached[rows], new], dim=2) for [B, H, L, D] tensors (rows None: row for row), copying each row once."""
    batch, heads, length, head_dim = new.shape
    cached_length = cached.shape[2]
    extended = new.new_empty(batch, heads, cached_length + length, head_dim)
    if rows is None:
        extended[:, :, :cached_length] = cached
    else:
        torch.index_select(cached, 0, rows, out=extended[:, :, :cached_length])
    extended[:, :, cached_length:] = new
    return extended


def gelu(x):
    """GPT-2's gelu_new: the tanh approximation of GELU."""
    return F.gelu(x, approximate="tanh")


LayerNorm = nn.LayerNorm


def on_cpu_float32(*tensors):
    return all(tensor.device.type == "cpu" and tensor.dtype == torch.float32 for tensor in tensors)


@functools.cache
def cpu_kernels():
    """The shared CPU kernels (common_data/kernels, exported by kernels/cpu_kernels.cc) loaded with ctypes, or None,
    with a warning, where they do not compile: torch's own ops run instead."""
    try:
        path = kernels.compiled_library(KERNELS / "cpu_kernels.cc")
    except (OSError, subprocess.CalledProcessError) as error:
        warnings.warn(f"the CPU kernels did not compile, torch's ops run instead: {getattr(error, 'stderr', error)}")
        return None
    library = ctypes.CDLL(str(path))
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    library.nlg_token_loss.argtypes = [pointer, pointer, pointer, integer, integer, ctypes.c_float, integer,
                                       pointer, pointer]
    library.nlg_top_log_softmax.argtypes = [pointer, integer, integer, integer, pointer, pointer]
    library.nlg_cached_attention.argtypes = [pointer] * 5 + [integer] * 5 + [pointer] * 3
    library.nlg_adamw_step.argtypes = [pointer] * 4 + [ctypes.c_size_t] + [ctypes.c_float] * 7
    for kernel in (library.nlg_token_loss, library.nlg_top_log_softmax, library.nlg_cached_attention,
                   library.nlg_adamw_step):
        kernel.restype = None
    return library


@functools.cache
def onednn_sgemm():
    """oneDNN's row-major float32 product dnnl_sgemm from the system's libdnnl (Debian's libdnnl-dev, which Jittor
    needs too), or None without it. Its OpenMP runtime is libgomp, the one torch has loaded, so it runs on torch's
    threads."""
    name = ctypes.util.find_library("dnnl")
    if name is None:
        return None
    sgemm = ctypes.CDLL(name).dnnl_sgemm
    size = ctypes.c_int64
    sgemm.argtypes = [ctypes.c_char, ctypes.c_char, size, size, size, ctypes.c_float, ctypes.c_void_p, size,
                      ctypes.c_void_p, size, ctypes.c_float, ctypes.c_void_p, size]
    sgemm.restype = ctypes.c_int
    return sgemm


def product(a, b, out, transpose_a=False, transpose_b=False, accumulate=False):
    """out = a' b' (+ out where accumulate) for contiguous CPU float32 matrices, a' = a^T where transpose_a, b' = b^T
    where transpose_b: oneDNN's product, or torch's without libdnnl."""
    sgemm = onednn_sgemm()
    if sgemm is None:
        return out.addmm_(a.t() if transpose_a else a, b.t() if transpose_b else b, beta=float(accumulate))
    (m, n), inner = out.shape, a.shape[0] if transpose_a else a.shape[1]
    operation = {False: b"N", True: b"T"}
    if sgemm(operation[transpose_a], operation[transpose_b], m, n, inner, 1.0, a.data_ptr(), a.shape[1],
             b.data_ptr(), b.shape[1], float(accumulate), out.data_ptr(), n):
        raise RuntimeError(f"dnnl_sgemm failed on {list(a.shape)} x {list(b.shape)} -> {list(out.shape)}")
    return out


class Matmul(torch.autograd.Function):
    """x weight (weight^T where transposed) for CPU float32 tensors x [..., d] and a matrix weight, and its
    gradients, by product."""

    @staticmethod
    def forward(ctx, x, weight, transposed):
        ctx.save_for_backward(x, weight)
        ctx.transposed = transposed
        rows, weight = x.reshape(-1, x.shape[-1]).contiguous(), weight.contiguous()
        width = weight.shape[0] if transposed else weight.shape[1]
        out = product(rows, weight, x.new_empty(rows.shape[0], width), transpose_b=transposed)
        return out.view(*x.shape[:-1], width)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_rows = grad_out.reshape(-1, grad_out.shape[-1]).contiguous()
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_x = product(grad_rows, weight.contiguous(), grad_rows.new_empty(grad_rows.shape[0], x.shape[-1]),
                             transpose_b=not ctx.transposed).view(x.shape)
        if ctx.needs_input_grad[1]:
            rows = x.reshape(-1, x.shape[-1]).contiguous()
            first, second = (grad_rows, rows) if ctx.transposed else (rows, grad_rows)
            grad_weight = product(first, second, grad_rows.new_empty(weight.shape), transpose_a=True)
        return grad_x, grad_weight, None


def matmul(x, weight):
    """x weight for x [..., d], weight [d, n]; under the CPU's autocast in its precision, by torch."""
    if on_cpu_float32(x, weight) and not torch.is_autocast_enabled("cpu"):
        return Matmul.apply(x, weight, False)
    return x @ weight


def matmul_transposed(x, weight):
    """x weight^T for x [..., d], weight [n, d]."""
    if on_cpu_float32(x, weight):
        return Matmul.apply(x, weight, True)
    return x @ weight.t()


def log_softmax(logits):
    """log_softmax over the last axis."""
    return torch.log_softmax(logits, dim=-1)


class WeightedTokenLoss(torch.autograd.Function):
    """sum over rows of weight * ((1 - ls) * (-log p[target]) + ls * (mean over the vocabulary of -log p)).

    The gradient is written out, (softmax - (1 - ls) * onehot - ls / V) * weight, in one [rows, vocabulary]
    tensor.
    """

    @staticmethod
    def forward(ctx, logits, targets, weights, label_smooth):
        log_probs = F.log_softmax(logits, dim=-1)
        per_token = -log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
        if label_smooth:
            per_token = (1.0 - label_smooth) * per_token - label_smooth * log_probs.mean(dim=-1)
        ctx.save_for_backward(log_probs, targets, weights)
        ctx.label_smooth = label_smooth
        return (per_token * weights).sum()

    @staticmethod
    def backward(ctx, grad_sum):
        log_probs, targets, weights = ctx.saved_tensors
        label_smooth, vocab_size = ctx.label_smooth, log_probs.shape[1]
        scale = weights * grad_sum
        gradient = log_probs.exp()
        if label_smooth:
            gradient.sub_(label_smooth / vocab_size)
        gradient.mul_(scale.unsqueeze(1))
        rows = torch.arange(len(targets), device=log_probs.device)
        gradient[rows, targets] -= (1.0 - label_smooth) * scale
        return gradient, None, None, None


def token_loss(logits, targets, weights, label_smooth):
    """WeightedTokenLoss of logits [rows, V], targets [rows], weights [rows]."""
    return WeightedTokenLoss.apply(logits, targets, weights, label_smooth)


class LMHeadLoss(torch.autograd.Function):
    """token_loss(hidden weight^T, ...) for CPU float32 tensors, LM_HEAD_CHUNK rows at a time: each chunk's logits
    (product, into one buffer kept between calls) turn in place, in the shared token_loss kernel, into its weighted
    loss and, where a gradient is wanted, into the gradient of its logits, and so of hidden and weight (product).
    No other [rows, vocabulary] tensor is made; backward scales what forward found. grad_enabled: the caller's grad
    mode (forward runs without)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, weights, label_smooth, grad_enabled):
        want_hidden, want_weight = (grad_enabled and wanted for wanted in ctx.needs_input_grad[:2])
        rows, vocab_size = hidden.shape[0], weight.shape[0]
        hidden, weight, weights = hidden.contiguous(), weight.contiguous(), weights.contiguous()
        targets = targets.to(torch.int32).contiguous()
        per_token = hidden.new_empty(rows)
        ctx.hidden_grad = hidden.new_empty(hidden.shape) if want_hidden else None
        ctx.weight_grad = weight.new_empty(weight.shape) if want_weight else None
        buffer = scratch((min(LM_HEAD_CHUNK, rows), vocab_size), hidden)
        for start in range(0, rows, LM_HEAD_CHUNK):
            chunk = slice(start, min(start + LM_HEAD_CHUNK, rows))
            count = chunk.stop - start
            logits = product(hidden[chunk], weight, buffer[:count], transpose_b=True)
            cpu_kernels().nlg_token_loss(
                logits.data_ptr(), targets[chunk].data_ptr(), weights[chunk].data_ptr(), count, vocab_size,
                label_smooth, want_hidden or want_weight, per_token[chunk].data_ptr(), logits.data_ptr())
            if want_hidden:
                product(logits, weight, ctx.hidden_grad[chunk])
            if want_weight:
                product(logits, hidden[chunk], ctx.weight_grad, transpose_a=True, accumulate=start > 0)
        return per_token.sum()

    @staticmethod
    def backward(ctx, grad_sum):
        hidden_grad, weight_grad = (None if grad is None else grad * grad_sum
                                    for grad in (ctx.hidden_grad, ctx.weight_grad))
        return hidden_grad, weight_grad, None, None, None, None


def lm_head_loss(hidden, weight, targets, weights, label_smooth):
    """token_loss of the logits hidden weight^T ([rows, d] x [V, d]); on the CPU without the whole logits."""
    if on_cpu_float32(hidden, weight) and cpu_kernels() is not None:
        return LMHeadLoss.apply(hidden, weight, targets, weights, label_smooth, torch.is_grad_enabled())
    return token_loss(matmul_transposed(hidden, weight), targets, weights, label_smooth)


def top_log_softmax(logits, k):
    """top_k(log_softmax(logits), k) for logits [rows, V]: on the CPU the shared kernel, which never writes the
    log-probabilities out; elsewhere torch's, which writes them over the logits (no second [rows, V] tensor)."""
    if not (on_cpu_float32(logits) and cpu_kernels() is not None):
        return top_k(torch._log_softmax(logits, -1, False, out=logits), k)
    logits = logits.contiguous()
    rows, vocab_size = logits.shape
    values, columns = logits.new_empty(rows, k), torch.empty(rows, k, dtype=torch.int32)
    cpu_kernels().nlg_top_log_softmax(logits.data_ptr(), rows, vocab_size, k, values.data_ptr(), columns.data_ptr())
    return values, columns.long()


def top_k(scores, k):
    """(values, indices) of the k largest scores of every row [rows, width], best first."""
    return scores.topk(k, dim=1)


# tensors
def positions(start, stop, like):
    """int64 positions start .. stop - 1 on like's device."""
    return torch.arange(start, stop, device=like.device)


def concat(tensors, dim=0):
    return torch.cat(tensors, dim=dim)


def take_rows(x, index):
    """x[index] for int64 index [n] along the first axis (index_select: its gradient adds rows up without
    index_put's accumulate)."""
    return x.index_select(0, index)


def clamp_min(x, low):
    return x.clamp(min=low)


def ones(shape, like):
    """Ones of shape in like's dtype, on its device."""
    return torch.ones(shape, dtype=like.dtype, device=like.device)


def where(condition, x, y):
    return torch.where(condition, x, y)


def eye(n, like):
    """The n x n identity in like's dtype, on its device."""
    return torch.eye(n, dtype=like.dtype, device=like.device)


def float32(x):
    return x.float()


def float32_zeros(shape, like):
    """float32 zeros of shape on like's device."""
    return torch.zeros(shape, dtype=torch.float32, device=like.device)


def zeros_like(x):
    return torch.zeros_like(x)


def detach(x):
    return x.detach()


def sync(tensors):
    """Compute pending lazy results now (Jittor's); PyTorch computes eagerly."""


# to and from numpy
def to_numpy(tensor):
    """A float32 numpy copy."""
    return tensor.detach().float().cpu().numpy().copy()


def numpy(tensor):
    """A numpy view (or copy, off the CPU) of the tensor, its dtype kept."""
    return tensor.detach().cpu().numpy()


def from_numpy(array, device):
    """A tensor of the numpy array, on device."""
    return torch.from_numpy(array).to(device)


def from_numpy_like(array, like):
    """A tensor of the numpy array, on like's device."""
    return torch.from_numpy(array).to(like.device)


def tensor_like(array, like):
    """The numpy array as a tensor in like's dtype, on its device."""
    return torch.from_numpy(np.asarray(array)).to(device=like.device, dtype=like.dtype)


def constant_like(like, array=None):
    """A tensor outside the autograd graph in like's dtype, on its device: zeros, or the numpy array."""
    if array is None:
        return torch.zeros_like(like)
    return torch.tensor(array, dtype=like.dtype, device=like.device)


# modules and parameters
def to_device(module, device):
    """The module, moved to device."""
    return module.to(device)


def parameter(shape):
    """A trainable tensor of zeros."""
    return nn.Parameter(torch.zeros(shape))


def dropout(p):
    """A dropout module, in training mode."""
    return nn.Dropout(p)


def is_training(module):
    return module.training


@torch.no_grad()
def assign(param, array):
    """param <- array (numpy), in place."""
    param.copy_(torch.tensor(np.asarray(array)))


@torch.no_grad()
def replace(param, value):
    """param <- value (a tensor, whose shape may differ), keeping the parameter object; its gradient is dropped."""
    param.data = value
    param.grad = None


@torch.no_grad()
def set_columns(weight, start, values):
    """weight[:, start:start + columns] <- values (numpy), in place."""
    weight[:, start:start + values.shape[1]] = torch.from_numpy(values.astype(np.float32))


@torch.no_grad()
def scale_in_place(param, factors):
    """param <- param * factors (numpy, broadcast), in place."""
    param.mul_(tensor_like(factors, param))


# the optimizer
def gradients(group):
    """(parameter, gradient) for the parameters of an optimizer group that have a gradient."""
    return [(param, param.grad) for param in group["params"] if param.grad is not None]


def set_gradients(optimizer, params, arrays):
    """Replace the gradients of params {name: parameter} by the numpy arrays {name: array}."""
    for name, param in params.items():
        param.grad = tensor_like(arrays[name], param)


def adam_step(param, exp_avg, exp_avg_sq, grad, beta1, beta2, step_size, eps, decay):
    """m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, p <- p - step_size m / (sqrt(v) + eps), then
    p <- p - decay p, in place; on the CPU in one multithreaded pass (the shared adamw_step kernel), elsewhere by
    torch's ops with sqrt(v) + eps in a buffer kept for the next call."""
    tensors = param, exp_avg, exp_avg_sq, grad
    if on_cpu_float32(*tensors) and all(x.is_contiguous() for x in tensors) and cpu_kernels() is not None:
        cpu_kernels().nlg_adamw_step(*(x.data_ptr() for x in tensors), param.numel(), beta1, beta2, 1.0 - beta1,
                                     1.0 - beta2, step_size, eps, decay)
        return
    exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    param.addcdiv_(exp_avg, torch.sqrt(exp_avg_sq, out=scratch(param.shape, param)).add_(eps), value=-step_size)
    if decay > 0.0:
        param.add_(param, alpha=-decay)


SCRATCH = {}


def scratch(shape, like):
    """A tensor of shape in like's dtype, on its device, its contents undefined, on memory that the next call reuses:
    a temporary of a [rows, vocabulary] or an embedding's size would otherwise come as fresh pages (page faults)
    every step."""
    key, size = (like.device, like.dtype), math.prod(shape)
    if key not in SCRATCH or SCRATCH[key].numel() < size:
        SCRATCH[key] = torch.empty(size, dtype=like.dtype, device=like.device)
    return SCRATCH[key][:size].view(shape)


no_grad = torch.no_grad
