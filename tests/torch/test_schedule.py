import math

import pytest

from common_data.training.runlog import TrainLine, parse_log
from common_data.training.schedule import learning_rate


def test_linear_schedule_reproduces_every_lr_of_the_seed_log(shared):
    # that run: E2E 18% sample, 947 batches a epoch, 5 epochs, warm-up 500, lr 2e-4
    records = [record for record in parse_log(shared / "fixtures/seed_run/torch_e2e_train.log")
               if isinstance(record, TrainLine)]
    assert len(records) > 40
    for record in records:
        lr = learning_rate(record.step, 2e-4, "linear", warmup_step=500, max_step=947 * 5)
        assert f"{lr:.3g}" == f"{record.lr:.3g}", record


@pytest.mark.parametrize("scheduler", ["linear", "constant"])
def test_warmup_rises_linearly_from_zero_to_the_base_rate(scheduler):
    rates = [learning_rate(step, 1e-3, scheduler, warmup_step=10, max_step=100) for step in range(11)]
    assert rates[0] == 0.0
    assert rates[10] == pytest.approx(1e-3)
    assert [b - a for a, b in zip(rates, rates[1:])] == pytest.approx([1e-4] * 10)


def test_linear_decays_to_zero_at_max_step_and_stays_there():
    rates = [learning_rate(step, 1.0, "linear", warmup_step=10, max_step=110) for step in range(10, 130)]
    assert rates[0] == 1.0
    assert rates[50] == pytest.approx(0.5)
    assert rates[100:] == [0.0] * 20


def test_constant_holds_after_warmup():
    assert {learning_rate(step, 0.5, "constant", warmup_step=3, max_step=10) for step in range(3, 50)} == {0.5}


def test_cosine_follows_half_a_cosine_over_max_step():
    # microsoft/LoRA's cosine counts the decay from step 0, not from the end of warm-up
    assert learning_rate(0, 1.0, "cosine", warmup_step=0, max_step=100) == 1.0
    assert learning_rate(5, 1.0, "cosine", warmup_step=10, max_step=100) == pytest.approx(0.5)
    assert learning_rate(10, 1.0, "cosine", warmup_step=10, max_step=100) == \
        pytest.approx((1 + math.cos(0.1 * math.pi)) / 2)
    assert learning_rate(50, 1.0, "cosine", warmup_step=10, max_step=100) == pytest.approx(0.5)
    assert learning_rate(25, 1.0, "cosine", warmup_step=0, max_step=100) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    assert learning_rate(100, 1.0, "cosine", warmup_step=0, max_step=100) == pytest.approx(0.0)
    assert learning_rate(150, 1.0, "cosine", warmup_step=0, max_step=100) == pytest.approx(0.0)


def test_unknown_scheduler_is_named():
    with pytest.raises(ValueError, match="inv_sqrt"):
        learning_rate(1, 1.0, "inv_sqrt", warmup_step=0, max_step=10)
