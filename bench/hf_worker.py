"""Measure what a user would pick instead of us, Hugging Face transformers + peft, once (torch environment).

    python -m bench.hf_worker train --impl hf-peft --spec spec.json --out measurement.json

hf-peft: transformers' GPT2LMHeadModel with our config and the same initial weights (dropout 0, as ours),
peft's LoRA (r, alpha of the workload, dropout 0) on c_attn, labels -100 outside the completion, the
batches our trainer trains on, torch.optim.AdamW with the same rate, betas, epsilon and weight decay.
hf-generate: GPT2LMHeadModel.generate with the recipe's beam settings through NLG_pytorch/src/beam_bench.py's
hf_search (transformers' default early stopping), on the batches ours decodes (longest contexts first),
left-padded with an attention mask as generate expects.
"""
import numpy as np
import peft
import torch
import transformers

from bench import torch_device, workload
from common_data.decoding.beam import length_batches
from common_data.model.gpt2_config import config_for_card
from common_data.model.init_params import init_base_params
from NLG_pytorch.src.beam_bench import hf_search

IGNORE_INDEX = -100  # transformers' label for "no loss here"


def hf_model(model_card, seed, base_arrays=None):
    """GPT2LMHeadModel with our config and weights (init_base_params(config, seed) unless given), no dropout."""
    config = config_for_card(model_card)
    hf_config = transformers.GPT2Config(**config.to_hf(), resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(hf_config)
    arrays = init_base_params(config, seed) if base_arrays is None else base_arrays
    missing, unexpected = model.load_state_dict(
        {f"transformer.{name}": torch.from_numpy(array) for name, array in arrays.items()}, strict=False)
    if unexpected or set(missing) != {"lm_head.weight"}:
        raise RuntimeError(f"GPT2LMHeadModel: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    return model


def hf_labels(batch):
    """transformers' labels (it shifts them itself): the token at t + 1 where the loss mask at t is set."""
    labels = np.full_like(batch.input_ids, IGNORE_INDEX)
    labels[:, 1:] = np.where(batch.loss_mask[:, :-1] != 0, batch.targets[:, :-1], IGNORE_INDEX)
    return labels


def measure_training(spec_values):
    spec = workload.TrainSpec(**spec_values)
    device = torch_device.pick_device()
    probe = torch_device.memory_probe(device)
    torch.manual_seed(spec.seed)
    lora = peft.LoraConfig(r=spec.lora_dim, lora_alpha=spec.lora_alpha, lora_dropout=0.0,
                           target_modules=["c_attn"], fan_in_fan_out=True, task_type="CAUSAL_LM")
    model = peft.get_peft_model(hf_model(spec.model_card, spec.seed), lora).to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=spec.lr,
                                  betas=(0.9, 0.999), eps=1e-6, weight_decay=spec.weight_decay)
    examples = workload.load_train_examples(spec)

    def step(batch):
        input_ids = torch.from_numpy(batch.input_ids).to(device)
        labels = torch.from_numpy(hf_labels(batch)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.bf16):
            loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    seconds, losses = workload.run_timed(step, workload.bench_batches(spec, examples), spec.warmup_steps, probe,
                                         torch_device.synchronizer(device))
    return workload.Measurement(
        "train", "hf-peft", torch_device.describe(device), seconds, probe.peak(), probe.kind,
        workload.timed_token_counts(spec, examples), losses,
        {"padding": f"to a multiple of {spec.pad_multiple}", "logits": "every position",
         "adapter": "peft LoRA on all of c_attn (q, k, v)", "attention": model.config._attn_implementation,
         "precision": "bf16 autocast" if spec.bf16 else "fp32", "transformers": transformers.__version__,
         "peft": peft.__version__})


def measure_decoding(spec_values):
    spec = workload.DecodeSpec(**spec_values)
    device = torch_device.pick_device()
    probe = torch_device.memory_probe(device)
    config = config_for_card(spec.model_card)
    model = hf_model(spec.model_card, spec.seed, spec.model_arrays(config)).to(device).eval()

    def decode(queries):
        found = [None] * len(queries)
        # hf_search makes its input tensors on the default device
        with device, torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.bf16):
            for indices in length_batches(queries, spec.batch_size):
                for index, tokens in zip(indices, hf_search(model, [queries[i] for i in indices], spec.settings(),
                                                            early_stopping=False)):
                    found[index] = tokens
        return found

    seconds, found = workload.run_decoding(decode, workload.decode_queries(spec), spec.batch_size, probe,
                                           torch_device.synchronizer(device))
    return workload.decoding_measurement(
        "hf-generate", torch_device.describe(device), seconds, found, probe,
        {"search": "GPT2LMHeadModel.generate, num_beams, early_stopping=False (its default), left padding",
         "attention": model.config._attn_implementation, "precision": "bf16 autocast" if spec.bf16 else "fp32",
         "transformers": transformers.__version__})


MEASURES = {("train", "hf-peft"): measure_training, ("decode", "hf-generate"): measure_decoding}

if __name__ == "__main__":
    workload.worker_main(__doc__, MEASURES)
