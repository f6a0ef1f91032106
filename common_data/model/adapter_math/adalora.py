"""AdaLoRA (Zhang et al. 2023) as peft's AdaLoraConfig and RankAllocator: the rank budget, numpy only.

An adapted slice adds s / (ranknum + 1e-5) P diag(Λ) Q x, in peft's tensors B = P [d_out, r], E = Λ [r, 1] and
A = Q [r, d_in]: s = lora_alpha, ranknum = init_r (the rank it starts with, which masking leaves as it is).

After each optimizer update t (1-based, the gradients still there) every entry p of A, E, B has the sensitivity
I = |p grad|, smoothed as I' <- beta1 I' + (1 - beta1) I, and the uncertainty U <- beta2 U + (1 - beta2) |I - I'|
(both in the trainers, per tensor). Triplet i scores I'U of E_i plus the means of I'U over row i of A and column i
of B. The budget, the number of triplets kept over all slices, is init_budget until tinit, then falls as a cubic to
target_budget at total_step - tfinal; every deltaT steps in between (and at total_step - tfinal) the triplets
scoring at most the (init_budget - budget)-th lowest score get E_i = 0. The mask taken at total_step - tfinal is
applied after every later update and the scores stop; in between mask steps, masked values may grow back (peft).
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AllocatorConfig:
    """peft's AdaLoraConfig fields of the allocator (init_r is the adapter's lora_dim); total_step from the run."""
    target_r: int
    tinit: int
    tfinal: int
    delta_t: int
    beta1: float
    beta2: float
    orth_reg_weight: float
    total_step: int

    def __post_init__(self):
        if not (0 < self.beta1 < 1 and 0 < self.beta2 < 1):
            raise ValueError(f"AdaLoRA: beta1 {self.beta1} and beta2 {self.beta2} must lie in (0, 1)")
        if self.orth_reg_weight < 0 or self.delta_t < 1 or self.target_r < 1:
            raise ValueError(f"AdaLoRA: need orth_reg_weight >= 0, deltaT >= 1 and target_r >= 1, got "
                             f"{self.orth_reg_weight}, {self.delta_t} and {self.target_r}")
        if self.tinit >= self.total_step - self.tfinal:
            raise ValueError(f"AdaLoRA: tinit {self.tinit} and tfinal {self.tfinal} leave no budgeting phase in "
                             f"{self.total_step} steps (need tinit < total_step - tfinal)")

    @property
    def final_step(self):
        return self.total_step - self.tfinal


class Budget:
    """The budget schedule and the masks it leads to, over `triplets` names of init_r triplets each."""

    def __init__(self, config, init_r, triplets):
        if not config.target_r < init_r:
            raise ValueError(f"AdaLoRA: target_r {config.target_r} must be below init_r (--lora_dim) {init_r}")
        self.config = config
        self.init_budget = init_r * len(triplets)
        self.target_budget = config.target_r * len(triplets)
        self.masks = {name: np.ones(init_r, dtype=bool) for name in triplets}
        self.margin = None

    def scheduled(self, step):
        """(budget, whether to mask) at `step`: peft's budget_schedule."""
        config = self.config
        if step <= config.tinit:
            return self.init_budget, False
        if step > config.final_step:
            return self.target_budget, True
        remaining = 1 - (step - config.tinit) / (config.final_step - config.tinit)
        budget = int((self.init_budget - self.target_budget) * remaining ** 3 + self.target_budget)
        return budget, step % config.delta_t == 0

    def scores_due(self, step):
        return step < self.config.final_step

    def allocation_due(self, step):
        """The budget to mask to after the update of `step`, or None."""
        if step > self.config.final_step:
            return None
        budget, mask = self.scheduled(step)
        return budget if mask or step == self.config.final_step else None

    def allocate(self, scores, budget):
        """Keep the best `budget` triplets. scores: {name: (I'U of A [r, d_in], of E [r, 1], of B [d_out, r])} in
        float32; sets and returns the masks {name: bool [r]}."""
        triplet_scores = {name: e.reshape(-1) + (a.mean(axis=1) + b.mean(axis=0))
                          for name, (a, e, b) in scores.items()}
        dropped = self.init_budget - budget
        ordered = np.sort(np.concatenate(list(triplet_scores.values())))
        threshold = ordered[dropped - 1] if dropped > 0 else -np.inf
        self.masks = {name: score > threshold for name, score in triplet_scores.items()}
        self.margin = relative_gap(ordered, dropped)
        return self.masks

    def ranks(self):
        return {name: int(mask.sum()) for name, mask in self.masks.items()}


def relative_gap(ordered, dropped):
    """(lowest kept score - highest dropped score) / highest dropped score, of ascending scores; None if nothing or
    everything is dropped. Where it is as small as the float32 noise between two runs, a run may keep the other
    triplet of the pair (a near-tie, not a difference of the methods)."""
    if not 0 < dropped < len(ordered) or ordered[dropped - 1] <= 0:
        return None
    return float((ordered[dropped] - ordered[dropped - 1]) / ordered[dropped - 1])
