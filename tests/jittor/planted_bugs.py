"""`python tests/jittor/planted_bugs.py BUG [gpt2_ft.py flags]`: the Jittor trainer with one bug of BUGS planted, for
the verdict's tests: small porting errors whose effect grows with the adapters, so that a short comparison from the
start misses them.

The detection limit in docs/verdicts.md was measured with it: for a PyTorch run TORCH (test_verdict_bugs.py's flags),
    python tests/jittor/planted_bugs.py lora_scale:1e-4 --config TORCH/run.json --work_dir J
    python tests/jittor/planted_bugs.py lora_scale:1e-4 --config TORCH/run.json --work_dir J/replays/from_torch.60 \
        --resume_from TORCH/trainer.60.safetensors --stop_step 80          (and so for each segment)
    python -m alignment report --torch TORCH --jittor J --envelope ENVELOPE.json
"""
import sys

from common_data.training.schedule import learning_rate
from NLG_jittor.src import adapters, gpt2_ft, optimizer


def lora_scale(epsilon):
    shipped = adapters.AdaptedConv1D.__init__

    def init(self, *args, **kwargs):
        shipped(self, *args, **kwargs)
        self.scale *= 1.0 + epsilon
    adapters.AdaptedConv1D.__init__ = init


def weight_decay_times(factor):
    shipped = optimizer.AdamW.__init__

    def init(self, params, lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.0, correct_bias=True):
        shipped(self, params, lr, betas, eps, factor * weight_decay, correct_bias)
    optimizer.AdamW.__init__ = init


def decay_to_one_step_past_the_end():
    def lr_after(self, step):
        args = self.args
        return learning_rate(step, args.lr, args.scheduler, args.warmup_step, self.max_step + 1)
    gpt2_ft.Trainer.lr_after = lr_after


BUGS = {
    "lora_scale": lambda: lora_scale(1.5e-4),  # scale = alpha / r x (1 + 1.5e-4)
    "no_weight_decay": lambda: weight_decay_times(0.0),  # --weight_decay not passed on to the optimizer
    "weight_decay_twice": lambda: weight_decay_times(2.0),  # the decoupled decay applied once more
    "decay_to_one_step_past_the_end": decay_to_one_step_past_the_end,  # linear decay to max_step + 1
}


def plant(bug):
    """Plant BUGS[bug]; 'lora_scale:EPSILON' plants the scale off by 1 + EPSILON (to measure the detection limit)."""
    name, _, epsilon = bug.partition(":")
    if epsilon:
        lora_scale(float(epsilon))
    else:
        BUGS[name]()


if __name__ == "__main__":
    plant(sys.argv[1])
    sys.exit(gpt2_ft.main(sys.argv[2:]))
