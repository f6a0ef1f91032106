"""Learning-rate schedules as pure functions of the step (microsoft/LoRA's optimizer.py).

`learning_rate(step, ...)` is the rate after `step` scheduler steps: the update that ends step t
(counting from 1) uses learning_rate(t - 1), and the console line logged at step t shows
learning_rate(t), as microsoft/LoRA's LambdaLR-based trainer does. With warm-up the first update
therefore runs at rate 0.
"""
import math

SCHEDULERS = ("linear", "constant", "cosine")


def lr_factor(step, scheduler, warmup_step, max_step):
    """Multiplier of the base learning rate after `step` steps."""
    if scheduler == "cosine":
        # microsoft/LoRA's CosineAnnealingWarmupRestarts: the cosine runs over the whole of max_step
        if step < warmup_step:
            return step / warmup_step
        return 0.5 * (1.0 + math.cos(math.pi * min(step, max_step) / max_step))
    if step < warmup_step:
        return step / max(1, warmup_step)
    if scheduler == "constant":
        return 1.0
    if scheduler == "linear":
        return max(0.0, (max_step - step) / max(1, max_step - warmup_step))
    raise ValueError(f"unknown scheduler {scheduler!r}; choose from {', '.join(SCHEDULERS)}")


def learning_rate(step, base_lr, scheduler, warmup_step, max_step):
    return base_lr * lr_factor(step, scheduler, warmup_step, max_step)
