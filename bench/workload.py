"""What the benchmark measures, the same for every implementation (numpy only: both environments import it).

Training: every implementation starts from the same random GPT-2 weights (common_data.model.init_params with
`seed`), adds LoRA (r=4, dropout 0) and trains on the same E2E batches: the first batches of the trainer's
first epoch (common_data.training.batching). `warmup_steps` untimed steps come first, then `steps` timed ones.
Throughput counts real tokens only, never padding: all tokens of each example, and its completion tokens
(those that carry the loss).

Decoding: beam search (the recipe's settings, microsoft/LoRA's semantics for ours) from the first distinct
E2E test contexts, with random weights that decode like a trained model's (common_data.model.synthetic_model:
peaked distributions, hypotheses ending at varied lengths), in batches of batch_size contexts, longest first.

A worker measures one implementation once and writes a Measurement as JSON; bench/__main__.py starts the
workers repeat by repeat and bench/report.py turns their measurements into records.
"""
import argparse
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common_data.training import batching
from common_data.util.atomic import atomic_open
from common_data.decoding.beam import BeamSettings, query_tokens, unique_queries
from common_data.model.synthetic_model import peaked_arrays

TRAIN_EPOCH = 1  # the trainer counts epochs from 1; the batch order depends on it
PROFILED_STEPS = 2  # timed batches run again for the breakdown (step_breakdown)


@dataclass(frozen=True)
class TrainSpec:
    train_data: str
    valid_data: str
    model_card: str = "gpt2.tiny"
    batch_size: int = 8
    seq_len: int = 512
    pad_multiple: int = 32
    warmup_steps: int = 3
    steps: int = 10
    lora_dim: int = 4
    lora_alpha: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.01
    seed: int = 10
    bf16: bool = False

    @property
    def total_steps(self):
        return self.warmup_steps + self.steps


@dataclass(frozen=True)
class DecodeSpec:
    test_data: str
    model_card: str = "gpt2.tiny"
    contexts: int = 48
    batch_size: int = 16
    beam: int = 10
    eval_len: int = 64
    seq_len: int = 512
    length_penalty: float = 0.8
    no_repeat_ngram_size: int = 4
    seed: int = 10
    bf16: bool = False

    def model_arrays(self, config):
        """Random weights that decode like a trained model's (common_data.model.synthetic_model), with outputs about
        as long as E2E's references (the records keep the mean: mean_generated_tokens)."""
        return peaked_arrays(config, self.seed, eos_ramp=1.0, eos_weight=10.0, eos_start=42)

    def settings(self):
        return BeamSettings(beam=self.beam, eval_len=self.eval_len, length_penalty=self.length_penalty,
                            no_repeat_ngram_size=self.no_repeat_ngram_size)


@dataclass
class Measurement:
    """One run of one implementation: what it did in `seconds` (timed part only) and its peak memory."""
    task: str
    impl: str
    device: str
    seconds: float
    peak_memory_bytes: int
    memory_kind: str
    counts: dict = field(default_factory=dict)
    losses: list = field(default_factory=list)
    config: dict = field(default_factory=dict)


def write_json(path, value):
    with atomic_open(path) as handle:
        json.dump(value, handle, indent=1)


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def adapter_name(spec):
    return f"LoRA r={spec.lora_dim}" if spec.lora_dim else "none: full fine-tuning"


def trainer_flags(spec, work_dir, padded, bf16):
    """gpt2_ft.py's command line (both frameworks) for the workload: the recipe's optimizer at a constant rate."""
    flags = ["--train_data", spec.train_data, "--valid_data", spec.valid_data, "--model_card", spec.model_card,
             "--train_batch_size", str(spec.batch_size), "--seq_len", str(spec.seq_len),
             "--pad_multiple", str(spec.pad_multiple), "--lora_dim", str(spec.lora_dim),
             "--lora_alpha", str(spec.lora_alpha), "--lr", str(spec.lr), "--weight_decay", str(spec.weight_decay),
             "--correct_bias", "--adam_beta2", "0.999", "--scheduler", "constant",
             "--max_step", str(spec.total_steps), "--random_seed", str(spec.seed), "--work_dir", work_dir]
    return flags + ["--pad_to_seq_len", "--full_logits"] * padded + ["--bf16"] * bf16


def load_train_examples(spec):
    return batching.make_examples(batching.load_encoded(spec.train_data), spec.seq_len)


def bench_batches(spec, examples, pad_to_seq_len=False):
    """The warm-up batches, then the timed ones: the first total_steps batches of the trainer's first epoch."""
    available = batching.num_train_batches(len(examples), spec.batch_size)
    if spec.total_steps > available:
        raise ValueError(f"{spec.train_data}: {spec.total_steps} steps need more than its {available} batches "
                         f"of {spec.batch_size}")
    config = batching.BatchConfig(spec.batch_size, spec.seq_len, spec.pad_multiple, pad_to_seq_len)
    return list(itertools.islice(batching.train_batches(examples, config, spec.seed, TRAIN_EPOCH), spec.total_steps))


def timed_token_counts(spec, examples):
    """{"tokens", "completion_tokens"} of the timed batches, padding excluded."""
    order = batching.epoch_order(len(examples), spec.batch_size, spec.seed, TRAIN_EPOCH)
    chosen = [examples[i] for i in order[spec.warmup_steps:spec.total_steps].reshape(-1)]
    return {"tokens": sum(len(example.input_ids) for example in chosen),
            "completion_tokens": int(sum(sum(example.loss_mask) for example in chosen))}


def step_flops(config, batch, full_logits=False, full_finetune=False):
    """Floating-point operations of the matrix products of one training step on batch, each [m, k] x [k, n] counted
    2 m k n: the blocks' weights (24 T d^2 per layer forward for the T tokens they run on: the real ones, which the
    trainer packs, or with full_logits every padded position, as microsoft/LoRA), attention's scores and mixing on
    the padded rows (4 B L^2 d per layer), the LM head (2 R d V for its R loss rows; every position with
    full_logits); the backward pass as many again for the inputs' gradients, and once more for the weights' with
    full fine-tuning. LoRA's rank-r products are left out (under 1% at r = 4)."""
    rows, length = batch.input_ids.shape
    d = config.n_embd
    tokens = rows * length if full_logits else int(batch.lengths.sum())
    loss_rows = rows * length if full_logits else int(np.count_nonzero(batch.loss_mask))
    blocks = 24 * tokens * d * d * config.n_layer
    attention = 4 * rows * length * length * d * config.n_layer
    head = 2 * loss_rows * d * config.vocab_size
    return 2 * (blocks + attention + head) + (blocks + head) * full_finetune


def decode_queries(spec):
    """The first spec.contexts distinct prompts of the test file, cut as microsoft/LoRA's gpt2_beam.py cuts them."""
    contexts = [context for context, _ in batching.load_encoded(spec.test_data)]
    queries, _ = unique_queries([query_tokens(context, spec.seq_len, spec.eval_len) for context in contexts])
    if len(queries) < spec.contexts:
        raise ValueError(f"{spec.test_data}: {len(queries)} distinct contexts, fewer than the {spec.contexts} "
                         "asked for")
    return queries[:spec.contexts]


def process_memory_kib(field_name):
    """A field of /proc/self/status in KiB (VmRSS: resident now, VmHWM: peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(f"/proc/self/status has no {field_name}")


class RssProbe:
    """Peak resident memory of this process above what it held when the probe was made (after the imports)."""
    kind = "cpu: peak RSS above the RSS after imports"

    def __init__(self):
        self.baseline = process_memory_kib("VmRSS") * 1024

    def sample(self):
        """Nothing to do: the kernel keeps the peak (VmHWM)."""

    def peak(self):
        return process_memory_kib("VmHWM") * 1024 - self.baseline


# the kinds of work of a training step's breakdown (step_breakdown)
LM_HEAD, BLOCK_MATMULS, ATTENTION, REST = ("LM head + loss", "matmuls of the blocks", "attention",
                                           "the rest: elementwise, optimizer, framework")


def step_breakdown(step, lm_head, batches, synchronize, profile):
    """Seconds per training step by kind of work.

    The LM head and the loss: lm_head(batch) runs the model's lm_loss forward and backward on random hidden states
    of the batch's loss rows, timed alone. The matmuls (kind BLOCK_MATMULS) and attention: profile(run) -> {kind:
    seconds} of run() by the framework's profiler, over the steps less over those LM-head runs. The rest: the
    steps' wall time less all of these.
    """

    def timed(work):
        synchronize()
        start = time.perf_counter()
        for batch in batches:
            work(batch)
        synchronize()
        return time.perf_counter() - start

    step_seconds, lm_head_seconds = timed(step), timed(lm_head)
    in_steps, in_lm_head = profile(lambda: timed(step)), profile(lambda: timed(lm_head))
    kinds = {LM_HEAD: lm_head_seconds}
    kinds.update({kind: max(0.0, seconds - in_lm_head.get(kind, 0.0)) for kind, seconds in in_steps.items()})
    kinds[REST] = max(0.0, step_seconds - sum(kinds.values()))
    return {kind: seconds / len(batches) for kind, seconds in kinds.items()}


def loss_rows(batch):
    """(the targets of the batch's loss rows, their count)."""
    keep = batch.loss_mask != 0
    return batch.targets[keep], int(np.count_nonzero(keep))


def run_timed(step, batches, warmup_steps, probe, synchronize):
    """(seconds of the steps after warm-up, the loss of every step). step(batch) returns the loss as a float."""
    losses = [step(batch) for batch in batches[:warmup_steps]]
    synchronize()
    start = time.perf_counter()
    for batch in batches[warmup_steps:]:
        losses.append(step(batch))
        probe.sample()
    synchronize()
    return time.perf_counter() - start, losses


def run_decoding(decode, queries, warmup_queries, probe, synchronize):
    """(seconds, best hypotheses) of decode(queries), after an untimed decode of the first warmup_queries."""
    decode(queries[:warmup_queries])
    synchronize()
    start = time.perf_counter()
    found = decode(queries)
    synchronize()
    probe.sample()
    return time.perf_counter() - start, found


def decoding_measurement(impl, device, seconds, found, probe, config):
    counts = {"sentences": len(found), "generated_tokens": sum(map(len, found))}
    return Measurement("decode", impl, device, seconds, probe.peak(), probe.kind, counts, [], config)


def worker_main(description, measures, argv=None):
    """Command line of a worker: TASK --impl IMPL --spec SPEC.json --out MEASUREMENT.json.

    measures maps (task, impl) to a function of the spec (a dict) that returns a Measurement.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("task", choices=sorted({task for task, _ in measures}), help="what to measure")
    parser.add_argument("--impl", required=True, choices=sorted({impl for _, impl in measures}),
                        help="which implementation")
    parser.add_argument("--spec", required=True, help="JSON file with the workload (written by python -m bench)")
    parser.add_argument("--out", required=True, help="JSON file to write the measurement to")
    args = parser.parse_args(argv)
    if (args.task, args.impl) not in measures:
        parser.error(f"this worker has no {args.task} measurement for {args.impl}")
    write_json(args.out, asdict(measures[args.task, args.impl](read_json(args.spec))))
