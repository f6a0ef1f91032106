"""AdamW with microsoft/LoRA's update rule (its examples/NLG/src/optimizer.py), which differs from
torch.optim.AdamW in two places: epsilon is added to sqrt(v) before the bias correction (folded into
the step size), and the decoupled weight decay shrinks the weights after the Adam update.

    m <- b1 m + (1 - b1) g          v <- b2 v + (1 - b2) g^2
    step_size = lr * sqrt(1 - b2^t) / (1 - b1^t)   (lr without --correct_bias)
    p <- p - step_size * m / (sqrt(v) + eps)
    p <- p - lr * weight_decay * p
"""
import math

import torch

from NLG_pytorch.src import ops


class AdamW(torch.optim.Optimizer):

    def __init__(self, params, lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0, correct_bias=True):
        if lr < 0.0 or eps < 0.0 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"AdamW: invalid lr {lr}, betas {betas} or eps {eps}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      correct_bias=correct_bias))
        self.state = {}  # keyed by id(param), as in the Jittor twin

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param, grad in ops.gradients(group):
                state = self.state.setdefault(id(param), {})
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = ops.constant_like(param)
                    state["exp_avg_sq"] = ops.constant_like(param)
                state["step"] += 1
                step_size = group["lr"]
                if group["correct_bias"]:
                    step_size *= math.sqrt(1.0 - beta2 ** state["step"]) / (1.0 - beta1 ** state["step"])
                ops.adam_step(param, state["exp_avg"], state["exp_avg_sq"], grad, beta1, beta2, step_size,
                              group["eps"], group["lr"] * group["weight_decay"])

    def reset_state(self, params):
        """Forget the moments and step count of `params` (JELLY's switch to parallel)."""
        for param in params:
            self.state.pop(id(param), None)

    def state_arrays(self, named_params):
        """The moments as float32 numpy arrays ('exp_avg.NAME', 'exp_avg_sq.NAME') and {NAME: step count}."""
        arrays, steps = {}, {}
        for name, param in named_params.items():
            state = self.state.get(id(param))
            if state:
                arrays[f"exp_avg.{name}"] = ops.to_numpy(state["exp_avg"])
                arrays[f"exp_avg_sq.{name}"] = ops.to_numpy(state["exp_avg_sq"])
                steps[name] = state["step"]
        return arrays, steps

    def load_state_arrays(self, named_params, arrays, steps):
        """Restore what state_arrays() returned; parameters it does not list start afresh."""
        self.state.clear()
        for name, step in steps.items():
            param = named_params[name]
            self.state[id(param)] = {
                "step": step,
                "exp_avg": ops.constant_like(param, arrays[f"exp_avg.{name}"]),
                "exp_avg_sq": ops.constant_like(param, arrays[f"exp_avg_sq.{name}"]),
            }

    def set_lr(self, lr):
        """The schedule's rate, times each group's lr_ratio (LoRA+)."""
        for group in self.param_groups:
            group["lr"] = lr * group.get("lr_ratio", 1.0)


def is_loraplus_fast(name, param):
    """LoRA+'s faster group, as peft's: the B matrices and every vector (e.g. DoRA's magnitudes)."""
    return ".lora_B." in name or len(param.shape) == 1


def adamw_from_args(named_params, args):
    """microsoft/LoRA's AdamW over the parameters {name: parameter}; with --loraplus_lr_ratio, LoRA+'s two groups
    as peft's create_loraplus_optimizer forms them: B matrices and vectors train at ratio x lr."""
    params = list(named_params.values())
    if args.loraplus_lr_ratio is not None:
        fast = [is_loraplus_fast(name, param) for name, param in named_params.items()]
        groups = [{"params": [p for p, f in zip(params, fast) if not f]},
                  {"params": [p for p, f in zip(params, fast) if f], "lr_ratio": args.loraplus_lr_ratio}]
        params = [group for group in groups if group["params"]]
    optimizer = AdamW(params, lr=args.lr, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epislon,
                      weight_decay=args.weight_decay, correct_bias=args.correct_bias)
    optimizer.set_lr(args.lr)
    return optimizer
