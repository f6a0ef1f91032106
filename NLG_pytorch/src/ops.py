"""The framework operations the model, the adapters and beam search use (PyTorch).

NLG_jittor/src/ops.py exports the same names and holds the kernels Jittor lacks; here most are torch's own
functions. The token loss writes its gradient out: autograd through log_softmax, gather and mean makes a
zero-filled [rows, vocabulary] tensor for the gather, another for the mean and adds them.
"""
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def attention(query, key, value, mask=None):
    """softmax(q k^T / sqrt(head_dim)) v over the keys where mask (bool, [L, S] or [B, 1, L, S]) is True; None:
    causal."""
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=mask is None)


def gelu(x):
    """GPT-2's gelu_new: the tanh approximation of GELU."""
    return F.gelu(x, approximate="tanh")


def matmul_transposed(x, weight):
    """x weight^T."""
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


def top_k(scores, k):
    """(values, indices) of the k largest scores of every row [rows, width], best first."""
    return scores.topk(k, dim=1)


# tensors
def positions(start, stop, like):
    """int64 positions start .. stop - 1 on like's device."""
    return torch.arange(start, stop, device=like.device)


def concat(tensors, dim=0):
    return torch.cat(tensors, dim=dim)


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


def adam_moments(exp_avg, exp_avg_sq, grad, beta1, beta2):
    """m <- b1 m + (1 - b1) g and v <- b2 v + (1 - b2) g^2, in place."""
    exp_avg.mul_(beta1).add_(grad, alpha=1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)


def adam_update(param, exp_avg, exp_avg_sq, step_size, eps, decay):
    """p <- p - step_size m / (sqrt(v) + eps), then p <- p - decay p, in place."""
    param.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(eps), value=-step_size)
    if decay > 0.0:
        param.add_(param, alpha=-decay)


no_grad = torch.no_grad
