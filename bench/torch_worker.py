"""Measure one of our PyTorch implementations once (run by python -m bench, in the torch environment).

    python -m bench.torch_worker train --impl ours-torch --spec spec.json --out measurement.json

Training runs through our trainer (NLG_pytorch/src/gpt2_ft.py's Trainer.train_batch: forward, loss,
backward, AdamW update):
- ours-torch: batches padded to a multiple of --pad_multiple, logits only where the loss mask is set;
- padded512: microsoft/LoRA's configuration, every batch padded to seq_len (--pad_to_seq_len) and logits at
  every position, padding included, then the masked mean (--full_logits).
Decoding (ours-torch): gpt2_beam.py's model and batched beam search (NLG_pytorch/src/beam_search.py).
"""
import tempfile

import torch

from bench import torch_device, workload
from common_data.cli.ft_args import parse_args
from common_data.model.gpt2_config import config_for_card
from NLG_pytorch.src.beam_search import generate
from NLG_pytorch.src.distributed import init_ranks
from NLG_pytorch.src.gpt2_beam import decoding_model
from NLG_pytorch.src.gpt2_ft import Trainer


def measure_training(spec_values, impl):
    spec = workload.TrainSpec(**spec_values)
    padded = impl == "padded512"
    device = torch_device.pick_device()
    probe = torch_device.memory_probe(device)
    with tempfile.TemporaryDirectory() as work_dir:
        # the trainer writes into work_dir only in run(), which the bench does not call
        trainer = Trainer(parse_args(workload.trainer_flags(spec, work_dir, padded, spec.bf16)), init_ranks())
    batches = workload.bench_batches(spec, trainer.train_examples, pad_to_seq_len=padded)
    seconds, losses = workload.run_timed(lambda batch: trainer.train_batch(batch)[0], batches, spec.warmup_steps,
                                         probe, torch_device.synchronizer(device))
    return workload.Measurement(
        "train", impl, torch_device.describe(device), seconds, probe.peak(), probe.kind,
        workload.timed_token_counts(spec, trainer.train_examples), losses,
        {"padding": f"to seq_len {spec.seq_len}" if padded else f"to a multiple of {spec.pad_multiple}",
         "logits": "every position" if padded else "loss positions only",
         "precision": "bf16 autocast" if spec.bf16 else "fp32"})


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


MEASURES = {("train", "ours-torch"): lambda spec: measure_training(spec, "ours-torch"),
            ("train", "padded512"): lambda spec: measure_training(spec, "padded512"),
            ("decode", "ours-torch"): measure_decoding}

if __name__ == "__main__":
    workload.worker_main(__doc__, MEASURES)
