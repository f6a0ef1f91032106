"""common_data.model.adapter_math.adalora.Budget.allocate: which triplets it keeps, and the gap it reports at the threshold."""
import numpy as np
import pytest

from common_data.model.adapter_math.adalora import AllocatorConfig, Budget

CONFIG = AllocatorConfig(target_r=1, tinit=2, tfinal=2, delta_t=1, beta1=0.85, beta2=0.85, orth_reg_weight=0.5,
                         total_step=10)


def scores(e_values):
    """Per triplet name, scores whose triplet sums are e_values (A and B contribute nothing)."""
    return {name: (np.zeros((len(values), 3), np.float32), np.asarray(values, np.float32)[:, None],
                   np.zeros((4, len(values)), np.float32)) for name, values in e_values.items()}


def test_the_lowest_scores_are_dropped_and_the_gap_to_the_next_is_reported():
    budget = Budget(CONFIG, init_r=3, triplets=["q", "v"])
    assert budget.margin is None
    masks = budget.allocate(scores({"q": [5.0, 1.0, 2.0], "v": [2.5, 4.0, 0.5]}), budget=3)
    assert {name: mask.tolist() for name, mask in masks.items()} == {"q": [True, False, False],
                                                                       "v": [True, True, False]}
    assert budget.ranks() == {"q": 1, "v": 2}
    assert budget.margin == pytest.approx((2.5 - 2.0) / 2.0)


def test_no_gap_when_nothing_is_dropped():
    budget = Budget(CONFIG, init_r=2, triplets=["q"])
    budget.allocate(scores({"q": [1.0, 2.0]}), budget=2)
    assert budget.margin is None
