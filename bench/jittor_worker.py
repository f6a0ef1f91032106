"""Measure our Jittor implementation once (run by python -m bench through environments/run jittor).

    environments/run jittor python -m bench.jittor_worker train --impl ours-jittor --spec spec.json --out m.json

Training runs through our Jittor trainer (NLG_jittor/src/gpt2_ft.py's Trainer.train_batch), with the flags
the torch side uses; Jittor trains in float32 only. Decoding: our Jittor batched beam search
(NLG_jittor/src/beam_search.py) on the plain GPT-2 that gpt2_beam.py decodes with.
"""
import platform
import tempfile
from collections import defaultdict

import jittor as jt
import numpy as np
from jittor import nn

from bench import gemm, jittor_profile, workload
from common_data.cli.ft_args import parse_args
from common_data.model.gpt2_config import AdapterConfig, config_for_card
from NLG_jittor.src.beam_search import generate
from NLG_jittor.src.distributed import init_ranks
from NLG_jittor.src.gpt2_ft import Trainer
from NLG_jittor.src.model import GPT2LMModel


class CudaProbe:
    """Peak GPU memory held by Jittor's allocator (used + cached), sampled after every step."""
    kind = "cuda: peak memory reserved by the framework's allocator"

    def __init__(self):
        self.highest = 0

    def sample(self):
        self.highest = max(self.highest, jt.get_mem_info().total_cuda_used)

    def peak(self):
        return self.highest


def describe():
    return "cuda" if jt.flags.use_cuda else f"cpu: {platform.processor() or platform.machine()}"


def memory_probe():
    return CudaProbe() if jt.flags.use_cuda else workload.RssProbe()


def synchronize():
    jt.sync_all(True)


def precision(spec):
    return "fp32 (bf16 asked for: Jittor trains and decodes in float32 here)" if spec.bf16 else "fp32"


def jittor_kind(name):
    """The kind of work of a profiled Jittor op (workload's kinds), None for the rest: oneDNN's products (the LM
    head's are taken out in workload.step_breakdown), the causal attention kernels, and under a mask attention's
    batched-matmul kernel and 4-D fused ops ([B, H, L, S])."""
    if name.startswith("mkl_matmul"):
        return workload.BLOCK_MATMULS
    if name.startswith("code") and ("HEAD_DIM" in name or "batch" in name) or "DIM=4" in name:
        return workload.ATTENTION
    return None


def profile_kinds(run):
    """{kind: seconds} of run() by Jittor's profiler (op time)."""
    kinds = defaultdict(float)
    for name, _, seconds in jittor_profile.profiled_ops(run):
        kind = jittor_kind(name)
        if kind:
            kinds[kind] += seconds
    return kinds


def lm_head_run(trainer):
    """workload.step_breakdown's lm_head for the trainer's model."""
    rng = np.random.default_rng(0)
    weight = trainer.model.wte.weight

    def run(batch):
        targets, rows = workload.loss_rows(batch)
        hidden = jt.array(rng.standard_normal((rows, trainer.config.n_embd), dtype=np.float32))
        loss = trainer.model.lm_loss(hidden, jt.array(targets), jt.ones(rows), trainer.args.label_smooth)
        jt.sync(jt.grad(loss, [hidden] + [weight] * weight.requires_grad))
    return run


def measure_training(spec_values, impl):
    spec = workload.TrainSpec(**spec_values)
    ranks = init_ranks()
    probe = memory_probe()
    with tempfile.TemporaryDirectory() as work_dir:
        # the trainer writes into work_dir only in run(), which the bench does not call
        trainer = Trainer(parse_args(workload.trainer_flags(spec, work_dir, padded=False, bf16=False)), ranks)
    batches = workload.bench_batches(spec, trainer.train_examples)
    step = lambda batch: trainer.train_batch(batch)[0]
    seconds, losses = workload.run_timed(step, batches, spec.warmup_steps, probe, synchronize)
    counts = workload.timed_token_counts(spec, trainer.train_examples)
    counts["flops"] = sum(workload.step_flops(trainer.config, batch, full_finetune=spec.lora_dim == 0)
                          for batch in batches[spec.warmup_steps:])
    counts["breakdown"] = workload.step_breakdown(step, lm_head_run(trainer),
                                                  batches[spec.warmup_steps:][:workload.PROFILED_STEPS], synchronize,
                                                  profile_kinds)
    return workload.Measurement(
        "train", impl, describe(), seconds, probe.peak(), probe.kind, counts, losses,
        {"padding": f"to a multiple of {spec.pad_multiple}", "logits": "loss positions only",
         "precision": precision(spec), "jittor": jt.__version__, "adapter": workload.adapter_name(spec)})


def measure_decoding(spec_values):
    spec = workload.DecodeSpec(**spec_values)
    jt.flags.use_cuda = jt.has_cuda
    device = "cuda" if jt.has_cuda else "cpu"
    probe = memory_probe()
    config = config_for_card(spec.model_card)
    model = GPT2LMModel(config, AdapterConfig(), base_arrays=spec.model_arrays(config)).eval()
    seconds, found = workload.run_decoding(
        lambda queries: generate(model, queries, spec.settings(), spec.batch_size, device, progress=False),
        workload.decode_queries(spec), spec.batch_size, probe, synchronize)
    return workload.decoding_measurement(
        "ours-jittor", describe(), seconds, found, probe,
        {"search": "batched, key/value cache, microsoft/LoRA's semantics", "precision": precision(spec),
         "jittor": jt.__version__})


def onednn_product(left, right, transposed):
    """gemm.measure's make_product for Jittor's CPU product (oneDNN)."""
    left, right = jt.array(left), jt.array(right)
    product = nn.matmul_transpose if transposed else nn.matmul
    return lambda: product(left, right).sync()


def measure_gemm(spec_values):
    counts, config = gemm.measure(spec_values, onednn_product, f"oneDNN of Jittor {jt.__version__}")
    return workload.Measurement("gemm", "jittor-onednn", describe(), 0.0, None, "", counts, [], config)


MEASURES = {("train", "ours-jittor"): lambda spec: measure_training(spec, "ours-jittor"),
            ("decode", "ours-jittor"): measure_decoding, ("gemm", "jittor-onednn"): measure_gemm}

if __name__ == "__main__":
    workload.worker_main(__doc__, MEASURES)
