"""Measure one of our PyTorch implementations once (run by python -m bench, in the torch environment).

    python -m bench.torch_worker train --impl ours-torch --spec spec.json --out measurement.json

Training runs through our trainer (NLG_pytorch/src/gpt2_ft.py's Trainer.train_batch: forward, loss,
backward, AdamW update):
- ours-torch: batches padded to a multiple of --pad_multiple, logits only where the loss mask is set;
- padded512: microsoft/LoRA's configuration, every batch padded to seq_len (--pad_to_seq_len) and logits at
  every position, padding included, then the masked mean (--full_logits).
Decoding (ours-torch): gpt2_beam.py's model and batched beam search (NLG_pytorch/src/beam_search.py).
"""
import NLG_pytorch  # noqa: F401  (first: it sets numpy's OpenBLAS thread timeout, read when numpy loads)

import tempfile
from collections import defaultdict

import numpy as np
import torch

from bench import gemm, torch_device, workload
from common_data.cli.ft_args import parse_args
from common_data.model.gpt2_config import config_for_card
from NLG_pytorch.src.beam_search import generate
from NLG_pytorch.src.distributed import init_ranks
from NLG_pytorch.src.gpt2_beam import decoding_model
from NLG_pytorch.src.gpt2_ft import Trainer


def torch_kind(name):
    """The kind of work of a profiler event (workload's kinds), None for those that hold others or fall in the rest."""
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "Matmul", "MatmulBackward"):
        return workload.BLOCK_MATMULS
    if "scaled_dot_product" in name or "flash_attention" in name:
        return workload.ATTENTION
    return None


def profile_kinds(run):
    """{kind: seconds} of run() by torch's profiler (the self time of its ops)."""
    with torch.profiler.profile() as profile:
        run()
    kinds = defaultdict(float)
    for event in profile.key_averages():
        kind = torch_kind(event.key)
        if kind:
            kinds[kind] += event.self_cpu_time_total / 1e6
    return kinds


def lm_head_run(trainer):
    """workload.step_breakdown's lm_head for the trainer's model."""
    generator = torch.Generator().manual_seed(0)

    def run(batch):
        targets, rows = workload.loss_rows(batch)
        hidden = torch.randn(rows, trainer.config.n_embd, generator=generator, requires_grad=True)
        trainer.model.lm_loss(hidden, torch.from_numpy(targets), torch.ones(rows), trainer.args.label_smooth).backward()
    return run


def measure_training(spec_values, impl):
    spec = workload.TrainSpec(**spec_values)
    padded = impl == "padded512"
    device = torch_device.pick_device()
    probe = torch_device.memory_probe(device)
    with tempfile.TemporaryDirectory() as work_dir:
        # the trainer writes into work_dir only in run(), which the bench does not call
        trainer = Trainer(parse_args(workload.trainer_flags(spec, work_dir, padded, spec.bf16)), init_ranks())
    batches = workload.bench_batches(spec, trainer.train_examples, pad_to_seq_len=padded)
    step = lambda batch: trainer.train_batch(batch)[0]
    synchronize = torch_device.synchronizer(device)
    seconds, losses = workload.run_timed(step, batches, spec.warmup_steps, probe, synchronize)
    counts = workload.timed_token_counts(spec, trainer.train_examples)
    counts["flops"] = sum(workload.step_flops(trainer.config, batch, padded, spec.lora_dim == 0)
                          for batch in batches[spec.warmup_steps:])
    counts["breakdown"] = workload.step_breakdown(step, lm_head_run(trainer),
                                                  batches[spec.warmup_steps:][:workload.PROFILED_STEPS], synchronize,
                                                  profile_kinds)
    return workload.Measurement(
        "train", impl, torch_device.describe(device), seconds, probe.peak(), probe.kind, counts, losses,
        {"padding": f"to seq_len {spec.seq_len}" if padded else f"to a multiple of {spec.pad_multiple}",
         "logits": "every position" if padded else "loss positions only",
         "precision": "bf16 autocast" if spec.bf16 else "fp32", "adapter": workload.adapter_name(spec)})


def measure_decoding(spec_values):
    spec = workload.DecodeSpec(**spec_values)
    device = torch_device.pick_device()
    probe = torch_device.memory_probe(device)
    config = config_for_card(spec.model_card)
    model = decoding_model(config, spec.model_arrays(config), device)

    def decode(queries):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.bf16):
            return generate(model, queries, spec.settings(), spec.batch_size, device, progress=False)

    seconds, found = workload.run_decoding(decode, workload.decode_queries(spec), spec.batch_size, probe,
                                           torch_device.synchronizer(device))
    return workload.decoding_measurement(
        "ours-torch", torch_device.describe(device), seconds, found, probe,
        {"search": "batched, key/value cache, microsoft/LoRA's semantics",
         "precision": "bf16 autocast" if spec.bf16 else "fp32"})


def torch_product(device):
    """gemm.measure's make_product for torch's own product on device."""
    synchronize = torch_device.synchronizer(device)

    def make(left, right, transposed):
        left, right = torch.from_numpy(left).to(device), torch.from_numpy(right).to(device)
        right = right.t() if transposed else right
        return lambda: (left @ right, synchronize())
    return make


def onednn_product(left, right, transposed):
    """gemm.measure's make_product for the oneDNN that torch carries (mkldnn_linear: left W^T, W prepacked)."""
    weight = torch.from_numpy(right if transposed else np.ascontiguousarray(right.T)).to_mkldnn()
    left = torch.from_numpy(left).to_mkldnn()
    return lambda: torch._C._nn.mkldnn_linear(left, weight)


def measure_gemm(spec_values, impl):
    device = torch_device.pick_device() if impl == "torch" else torch.device("cpu")
    make_product, library = {
        "torch": (torch_product(device), f"torch {torch.__version__} ({device.type})"),
        "torch-onednn": (onednn_product, f"oneDNN of torch {torch.__version__}"),
        "numpy-openblas": (gemm.numpy_product, gemm.numpy_library()),
    }[impl]
    counts, config = gemm.measure(spec_values, make_product, library)
    return workload.Measurement("gemm", impl, torch_device.describe(device), 0.0, None, "", counts, [], config)


MEASURES = {("train", "ours-torch"): lambda spec: measure_training(spec, "ours-torch"),
            ("train", "padded512"): lambda spec: measure_training(spec, "padded512"),
            ("decode", "ours-torch"): measure_decoding,
            **{("gemm", impl): lambda spec, impl=impl: measure_gemm(spec, impl)
               for impl in ("torch", "torch-onednn", "numpy-openblas")}}

if __name__ == "__main__":
    workload.worker_main(__doc__, MEASURES)
