"""AdamW with microsoft/LoRA's update rule, its moment reset (JELLY switch) and its checkpoint arrays."""
import math

import numpy as np
import pytest
import torch

from NLG_pytorch.src.optimizer import AdamW


def run_steps(optimizer, params, grads):
    for grad_set in grads:
        for param, grad in zip(params, grad_set):
            param.grad = grad.clone()
        optimizer.step()


def random_grads(count, shapes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(shape, generator=generator) for shape in shapes] for _ in range(count)]


def test_without_epsilon_and_decay_it_is_torch_adam():
    start = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    ours, reference = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    grads = random_grads(5, [(3, 4)])
    run_steps(AdamW([ours], lr=0.1, betas=(0.9, 0.999), eps=0.0, weight_decay=0.0, correct_bias=True), [ours], grads)
    run_steps(torch.optim.AdamW([reference], lr=0.1, betas=(0.9, 0.999), eps=0.0, weight_decay=0.0), [reference], grads)
    torch.testing.assert_close(ours, reference)


@pytest.mark.parametrize("correct_bias", [True, False])
def test_two_steps_follow_the_microsoft_lora_formula(correct_bias):
    lr, beta1, beta2, eps, decay = 0.01, 0.9, 0.98, 1e-6, 0.1
    p = np.array([0.5, -1.0, 2.0], dtype=np.float64)
    grads = random_grads(2, [(3,)], seed=2)
    param = torch.nn.Parameter(torch.tensor(p, dtype=torch.float64))
    run_steps(AdamW([param], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=decay, correct_bias=correct_bias),
              [param], [[grad.double()] for (grad,) in grads])
    m = v = np.zeros(3)
    for t, (grad,) in enumerate(grads, start=1):
        g = grad.double().numpy()
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        step_size = lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) if correct_bias else lr
        p = p - step_size * m / (np.sqrt(v) + eps)
        p = p - lr * decay * p  # decay after the Adam step, on the updated weights
    np.testing.assert_allclose(param.detach().numpy(), p, rtol=1e-12)


@pytest.mark.parametrize("correct_bias", [True, False])
def test_float32_steps_follow_the_formula_in_float64(correct_bias, kernels):
    lr, betas, eps, decay = 0.01, (0.9, 0.999), 1e-6, 0.1
    rng = np.random.default_rng(5)
    start = rng.normal(0, 1, (16, 3))
    grads = [rng.normal(0, 1, (16, 3)) * scale for scale in (1.0, 0.1, 3.0, 1e-3)]
    for grad in grads:
        # units without gradient, and gradients whose square is subnormal in float32
        grad[0], grad[5:7] = 0.0, 1e-20
    grads = [grad.astype(np.float32) for grad in grads]
    param = torch.nn.Parameter(torch.tensor(start, dtype=torch.float32))
    optimizer = AdamW([param], lr=lr, betas=betas, eps=eps, weight_decay=decay, correct_bias=correct_bias)
    run_steps(optimizer, [param], [[torch.from_numpy(grad)] for grad in grads])
    p, m, v = start, 0.0, 0.0
    for t, grad in enumerate(grads, start=1):
        m, v = betas[0] * m + (1 - betas[0]) * grad, betas[1] * v + (1 - betas[1]) * grad.astype(np.float64) ** 2
        step_size = lr * math.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t) if correct_bias else lr
        p = p - step_size * m / (np.sqrt(v) + eps)
        p = p - lr * decay * p
    assert np.abs(param.detach().numpy() - p).max() <= 1e-6
    assert optimizer.state[id(param)]["step"] == len(grads)


def test_reset_state_restarts_only_the_given_parameters():
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))]
    optimizer = AdamW(params, lr=0.1, correct_bias=True)
    run_steps(optimizer, params, random_grads(3, [(2,), (2,)]))
    optimizer.reset_state([params[0]])
    assert id(params[0]) not in optimizer.state and optimizer.state[id(params[1])]["step"] == 3

    fresh = torch.nn.Parameter(params[0].detach().clone())
    (grad,) = random_grads(1, [(2,)], seed=5)[0]
    run_steps(optimizer, params, [[grad, grad]])
    run_steps(AdamW([fresh], lr=0.1, correct_bias=True), [fresh], [[grad]])
    torch.testing.assert_close(params[0], fresh)
    assert optimizer.state[id(params[0])]["step"] == 1


def test_state_arrays_restore_the_run():
    named = {"a": torch.nn.Parameter(torch.zeros(2, 3)), "b": torch.nn.Parameter(torch.zeros(4))}
    optimizer = AdamW(list(named.values()), lr=0.05, weight_decay=0.01, correct_bias=True)
    grads = random_grads(5, [(2, 3), (4,)])
    run_steps(optimizer, list(named.values()), grads[:3])
    arrays, steps = optimizer.state_arrays(named)
    assert steps == {"a": 3, "b": 3} and arrays["exp_avg_sq.b"].dtype == np.float32

    copy = {name: torch.nn.Parameter(param.detach().clone()) for name, param in named.items()}
    restored = AdamW(list(copy.values()), lr=0.05, weight_decay=0.01, correct_bias=True)
    restored.load_state_arrays(copy, arrays, steps)
    run_steps(optimizer, list(named.values()), grads[3:])
    run_steps(restored, list(copy.values()), grads[3:])
    for name in named:
        torch.testing.assert_close(copy[name], named[name], rtol=0, atol=0)
