"""Measure our Jittor implementation once (run by python -m bench through environments/run jittor).

    environments/run jittor python -m bench.jittor_worker train --impl ours-jittor --spec spec.json --out m.json

Training runs through our Jittor trainer (NLG_jittor/src/gpt2_ft.py's Trainer.train_batch), with the flags
the torch side uses; Jittor trains in float32 only. Decoding: our Jittor batched beam search
(NLG_jittor/src/beam_search.py) on the plain GPT-2 that gpt2_beam.py decodes with.
"""
import platform
import tempfile

import jittor as jt

from bench import workload
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


def measure_training(spec_values):
    spec = workload.TrainSpec(**spec_values)
    ranks = init_ranks()
    probe = memory_probe()
    with tempfile.TemporaryDirectory() as work_dir:
        # the trainer writes into work_dir only in run(), which the bench does not call
        trainer = Trainer(parse_args(workload.trainer_flags(spec, work_dir, padded=False, bf16=False)), ranks)
    batches = workload.bench_batches(spec, trainer.train_examples)
    seconds, losses = workload.run_timed(lambda batch: trainer.train_batch(batch)[0], batches, spec.warmup_steps,
                                         probe, synchronize)
    return workload.Measurement(
        "train", "ours-jittor", describe(), seconds, probe.peak(), probe.kind,
        workload.timed_token_counts(spec, trainer.train_examples), losses,
        {"padding": f"to a multiple of {spec.pad_multiple}", "logits": "loss positions only",
         "precision": precision(spec), "jittor": jt.__version__})


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


MEASURES = {("train", "ours-jittor"): measure_training, ("decode", "ours-jittor"): measure_decoding}

if __name__ == "__main__":
    workload.worker_main(__doc__, MEASURES)
