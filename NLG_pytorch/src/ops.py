"""The framework operations the model, the adapters and beam search use (PyTorch).

NLG_jittor/src/ops.py exports the same names and holds the kernels Jittor lacks; here most are torch's own
functions. On the CPU the LM head's forward product (x W^T with the [V, d] embedding) runs at about twice torch's
speed elsewhere (bench's gemm task): the logits of decoding and evaluation by oneDNN's, the one Jittor uses (the
system's libdnnl, called on torch's OpenMP threads; numpy's BLAS without it), a training step's by numpy's BLAS,
which measured as fast there. The token loss writes its gradient out: autograd through
log_softmax, gather and mean makes a zero-filled [rows, vocabulary] tensor for the gather, another for the mean and
adds them.
"""
import ctypes
import ctypes.util
import functools

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# rows per chunk of LMHeadLoss: bounds its logits buffer (1024 x 50,257 float32, 206 MB)
LM_HEAD_CHUNK = 1024


def attention(query, key, value, mask=None):
    """softmax(q k^T / sqrt(head_dim)) v over the keys where mask (bool, [L, S] or [B, 1, L, S]) is True; None:
    causal."""
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=mask is None)


def self_attention(qkv, n_head, mask=None, past=None, past_rows=None):
    """Multi-head attention of qkv [B, L, 3 W] (queries, keys and values side by side): (y [B, L, W], (k, v)), k and
    v [B, n_head, S, W / n_head] with the cached positions first. past: the cached (k, v) of the positions before,
    past_rows [B] the row of them each row continues (None: row for row); mask: as attention's."""
    batch, length, width = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    q, k, v = (x.view(batch, length, n_head, width // n_head).transpose(1, 2) for x in qkv.split(width, dim=2))
    if past is not None:
        k, v = extend_cache(past[0], k, past_rows), extend_cache(past[1], v, past_rows)
    y = attention(q, k, v, mask)
    return y.transpose(1, 2).reshape(batch, length, width), (k, v)


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


def product_transposed(rows, weight, out):
    """out = rows weight^T for contiguous CPU float32 tensors rows [m, d], weight [n, d], out [m, n]: oneDNN's product,
    or numpy's without libdnnl."""
    (m, d), n = rows.shape, weight.shape[0]
    sgemm = onednn_sgemm()
    if sgemm is None:
        np.matmul(numpy(rows), numpy(weight).T, out=numpy(out))
    elif sgemm(b"N", b"T", m, n, d, 1.0, rows.data_ptr(), d, weight.data_ptr(), d, 0.0, out.data_ptr(), n) != 0:
        raise RuntimeError(f"dnnl_sgemm failed on [{m}, {d}] x [{n}, {d}]^T")
    return out


class MatmulTransposed(torch.autograd.Function):
    """x weight^T for CPU float32 tensors x [..., d], weight [n, d] by product_transposed; the gradients g weight and
    g^T x by torch's products, which run those shapes well."""

    @staticmethod
    def forward(ctx, x, weight):
        ctx.save_for_backward(x, weight)
        rows = x.reshape(-1, x.shape[-1]).contiguous()
        out = product_transposed(rows, weight.contiguous(), x.new_empty(rows.shape[0], weight.shape[0]))
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_x = grad_out @ weight if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_weight = grad_out.reshape(-1, weight.shape[0]).t() @ x.reshape(-1, x.shape[-1])
        return grad_x, grad_weight


def matmul_transposed(x, weight):
    """x weight^T."""
    if on_cpu_float32(x, weight):
        return MatmulTransposed.apply(x, weight)
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
    (numpy's product, into one buffer) turn in place into its loss and, where a gradient is wanted, at once into the
    gradient of its logits and so of hidden (torch's product) and weight. No other [rows, vocabulary] tensor is made;
    backward scales what forward found. grad_enabled: the caller's grad mode (forward runs without)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, weights, label_smooth, grad_enabled):
        want_hidden, want_weight = (grad_enabled and wanted for wanted in ctx.needs_input_grad[:2])
        rows, vocab_size = hidden.shape[0], weight.shape[0]
        per_token = hidden.new_empty(rows)
        ctx.hidden_grad = hidden.new_empty(hidden.shape) if want_hidden else None
        ctx.weight_grad = None
        buffer = np.empty((min(LM_HEAD_CHUNK, rows), vocab_size), dtype=np.float32)
        for start in range(0, rows, LM_HEAD_CHUNK):
            chunk = slice(start, min(start + LM_HEAD_CHUNK, rows))
            count = chunk.stop - start
            logits = torch.from_numpy(np.matmul(numpy(hidden[chunk]), numpy(weight).T, out=buffer[:count]))
            shifted = logits.sub_(logits.amax(dim=1, keepdim=True))
            at_target = torch.arange(count), targets[chunk]
            target_logit = shifted[at_target]
            mean_logit = shifted.mean(dim=1) if label_smooth else None
            exponentials = shifted.exp_()
            normalizer = exponentials.sum(dim=1)
            log_normalizer = normalizer.log()
            per_token[chunk] = log_normalizer - target_logit
            if label_smooth:
                per_token[chunk] = ((1.0 - label_smooth) * per_token[chunk]
                                    + label_smooth * (log_normalizer - mean_logit))
            if not (want_hidden or want_weight):
                continue
            chunk_weights = weights[chunk]
            gradient = exponentials.mul_((chunk_weights / normalizer).unsqueeze(1))
            if label_smooth:
                gradient.sub_((label_smooth / vocab_size * chunk_weights).unsqueeze(1))
            gradient[at_target] -= (1.0 - label_smooth) * chunk_weights
            if want_hidden:
                torch.mm(gradient, weight, out=ctx.hidden_grad[chunk])
            if want_weight and ctx.weight_grad is None:
                ctx.weight_grad = gradient.t() @ hidden[chunk]
            elif want_weight:
                ctx.weight_grad.addmm_(gradient.t(), hidden[chunk])
        return (per_token * weights).sum()

    @staticmethod
    def backward(ctx, grad_sum):
        hidden_grad, weight_grad = (None if grad is None else grad * grad_sum
                                    for grad in (ctx.hidden_grad, ctx.weight_grad))
        return hidden_grad, weight_grad, None, None, None, None


def lm_head_loss(hidden, weight, targets, weights, label_smooth):
    """token_loss of the logits hidden weight^T ([rows, d] x [V, d]); on the CPU without the whole logits."""
    if on_cpu_float32(hidden, weight):
        return LMHeadLoss.apply(hidden, weight, targets, weights, label_smooth, torch.is_grad_enabled())
    return token_loss(matmul_transposed(hidden, weight), targets, weights, label_smooth)


def top_log_softmax(logits, k):
    """top_k(log_softmax(logits), k) for logits [rows, V], which it overwrites (with their log-softmax: no second
    [rows, V] tensor)."""
    return top_k(torch._log_softmax(logits, -1, False, out=logits), k)


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
    p <- p - decay p, in place; sqrt(v) + eps goes to a buffer kept for the next call."""
    exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    param.addcdiv_(exp_avg, torch.sqrt(exp_avg_sq, out=scratch_like(param)).add_(eps), value=-step_size)
    if decay > 0.0:
        param.add_(param, alpha=-decay)


SCRATCH = {}


def scratch_like(tensor):
    """A tensor of tensor's shape, dtype and device, its contents undefined, on memory that the next call reuses: a
    temporary of an embedding's size would otherwise come as fresh pages every step."""
    key = tensor.device, tensor.dtype
    if key not in SCRATCH or SCRATCH[key].numel() < tensor.numel():
        SCRATCH[key] = torch.empty(tensor.numel(), dtype=tensor.dtype, device=tensor.device)
    return SCRATCH[key][:tensor.numel()].view(tensor.shape)


no_grad = torch.no_grad
