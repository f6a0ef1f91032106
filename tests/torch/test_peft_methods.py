"""The comparison methods against Hugging Face peft (BitFit against transformers' GPT-2 with only its biases
trainable), on a random GPT-2 that transformers writes: same targets, rank, alpha and initial adapter values
give logits within 1e-5, at initialisation and after the adapters are perturbed, and 20 AdamW steps on the
same batches give every loss within 1e-5 (AdaLoRA: with peft's rank allocator, through its budget steps, keeping the
same ranks); merged exports load in transformers within 1e-5."""
import subprocess
import sys
from argparse import Namespace

import numpy as np
import peft
from peft.optimizers import create_loraplus_optimizer
import pytest
import torch
import transformers
from torch.nn import functional as F

from common_data.model.checkpoint import checkpoint_metadata, load_tensors, save_model_checkpoint
from common_data.model.adapter_math.adalora import AllocatorConfig
from common_data.model.gpt2_config import ADAPTER_TARGETS, AdapterConfig, GPT2Config
from NLG_pytorch.src.adapters import (RankAllocator, adapter_mode, mark_only_adapter_as_trainable,
                                      orthogonal_regularisation)
from NLG_pytorch.src.model import GPT2LMModel
from NLG_pytorch.src.optimizer import AdamW, adamw_from_args

VOCAB = 300
TOLERANCE = 1e-5
STEPS = 20
LR = 2e-3
WEIGHT_DECAY = 0.01
HF_CONFIG = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0,
                 attn_pdrop=0.0)

# name: (our adapter configuration, LoRA+ ratio or None); peft gets the same settings (peft_config below)
METHODS = {
    "lora c_attn": (AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=16, targets=("c_attn",)), None),
    "lora c_attn,c_proj,c_fc,mlp_proj": (AdapterConfig(adapter="lora", lora_dim=2, lora_alpha=4,
                                                       targets=("c_attn", "c_proj", "c_fc", "mlp_proj")), None),
    "rslora": (AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=16, targets=("c_attn", "c_fc"),
                             use_rslora=True), None),
    "loraplus": (AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=16, targets=("c_attn",)), 16.0),
    "dora": (AdapterConfig(adapter="dora", lora_dim=4, lora_alpha=16, targets=("c_attn", "mlp_proj")), None),
    "pissa": (AdapterConfig(adapter="pissa", lora_dim=4, lora_alpha=16, targets=("c_attn", "c_fc")), None),
    "adalora": (AdapterConfig(adapter="adalora", lora_dim=6, lora_alpha=16, targets=("c_attn", "c_fc")), None),
}
# budget steps at 4, 8 and 12, the final mask at 15, kept to step 20
ALLOCATOR = AllocatorConfig(target_r=3, tinit=3, tfinal=5, delta_t=4, beta1=0.85, beta2=0.85, orth_reg_weight=0.5,
                            total_step=STEPS)


@pytest.fixture(scope="module")
def base(random_hf_gpt2):
    """(GPT2Config, checkpoint arrays, folder) of a random GPT2LMHeadModel written by transformers and imported."""
    folder = random_hf_gpt2(HF_CONFIG)
    arrays, metadata = load_tensors(folder / "base.safetensors")
    return GPT2Config.from_dict(metadata["config"]), arrays, folder


def batches():
    generator = torch.Generator().manual_seed(5)
    return [torch.randint(0, VOCAB, (2, 16), generator=generator) for _ in range(STEPS)]


def peft_config(adapter):
    if adapter.adapter == "adalora":
        # a causal-LM task, so that peft's forward adds the orthogonal regulariser to the loss
        return peft.AdaLoraConfig(task_type="CAUSAL_LM", init_r=adapter.lora_dim, target_r=ALLOCATOR.target_r, lora_alpha=adapter.lora_alpha,
                                  lora_dropout=0.0, fan_in_fan_out=True,
                                  target_modules=[ADAPTER_TARGETS[t][0] for t in adapter.targets], tinit=ALLOCATOR.tinit,
                                  tfinal=ALLOCATOR.tfinal, deltaT=ALLOCATOR.delta_t, beta1=ALLOCATOR.beta1,
                                  beta2=ALLOCATOR.beta2, orth_reg_weight=ALLOCATOR.orth_reg_weight,
                                  total_step=ALLOCATOR.total_step)
    return peft.LoraConfig(r=adapter.lora_dim, lora_alpha=adapter.lora_alpha, lora_dropout=0.0, fan_in_fan_out=True,
                           target_modules=[ADAPTER_TARGETS[t][0] for t in adapter.targets], use_rslora=adapter.use_rslora,
                           use_dora=adapter.adapter == "dora",
                           init_lora_weights="pissa" if adapter.adapter == "pissa" else True)


def peft_name(name, adapter):
    """Our checkpoint name of an adapter tensor -> peft's parameter name (AdaLoRA's tensors are parameters, not
    layers with a weight)."""
    prefix, kind, _ = name.rsplit(".", 2)
    kind = {"lora_magnitude": "lora_magnitude_vector"}.get(kind, kind)
    suffix = "" if adapter.adapter == "adalora" else ".weight"
    return f"base_model.model.transformer.{prefix}.{kind}.default{suffix}"


def adapted_weights(model):
    """{our name: peft's name} of the base weights of the adapted layers."""
    layers = {name.rsplit(".", 2)[0] for name, _ in model.named_parameters() if ".lora_" in name}
    return {f"{layer}.weight": f"base_model.model.transformer.{layer}.base_layer.weight" for layer in layers}


def pair(base, adapter):
    """(ours, peft's) on the same base with the same initial adapter values, in training mode (dropout is 0)."""
    config, arrays, folder = base
    ours = GPT2LMModel(config, adapter, seed=3, base_arrays=arrays)
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager")
    theirs = peft.get_peft_model(hf_model, peft_config(adapter))
    copy_adapters(ours, theirs)
    return ours, theirs


def copy_adapters(ours, theirs):
    """Our adapters into peft's, and our base weights of the adapted layers (PiSSA's residual)."""
    params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, param in ours.named_parameters():
            if ".lora_" in name:
                params[peft_name(name, ours.adapter)].copy_(param)
        ours_by_name = dict(ours.named_parameters())
        for name, their_name in adapted_weights(ours).items():
            params[their_name].copy_(ours_by_name[name])


def perturb(model, seed):
    rng = np.random.default_rng(seed)
    model.load_arrays({name: rng.normal(0, 0.2, a.shape).astype(np.float32)
                       for name, a in model.to_arrays(adapter_only=True).items()}, strict=False)


def our_logits(model, input_ids):
    return model(input_ids)[0]


def their_logits(model, input_ids):
    return model(input_ids=input_ids).logits


def lm_loss(logits, input_ids):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))


def max_diff(a, b):
    return (a - b).abs().max().item()


def optimizer_args(ratio):
    return Namespace(lr=LR, adam_beta1=0.9, adam_beta2=0.999, adam_epislon=1e-6, weight_decay=WEIGHT_DECAY,
                     correct_bias=True, loraplus_lr_ratio=ratio)


def their_optimizer(model, ratio):
    """microsoft/LoRA's AdamW as ours uses it; with a ratio, in the groups of peft's create_loraplus_optimizer."""
    kwargs = dict(betas=(0.9, 0.999), eps=1e-6, correct_bias=True)
    if ratio is None:
        return AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=WEIGHT_DECAY, **kwargs)
    return create_loraplus_optimizer(model, AdamW, lr=LR, loraplus_lr_ratio=ratio,
                                     loraplus_weight_decay=WEIGHT_DECAY, **kwargs)


def train_both(ours, theirs, ratio, their_optimizer_for=their_optimizer):
    """(our losses, theirs) over STEPS AdamW steps on the same batches."""
    mark_only_adapter_as_trainable(ours)
    our_optimizer = adamw_from_args({n: p for n, p in ours.named_parameters() if p.requires_grad},
                                    optimizer_args(ratio))
    optimizer = their_optimizer_for(theirs, ratio)
    losses = ([], [])
    for input_ids in batches():
        for model, opt, forward, record in ((ours, our_optimizer, our_logits, losses[0]),
                                            (theirs, optimizer, their_logits, losses[1])):
            loss = lm_loss(forward(model, input_ids), input_ids)
            loss.backward()
            opt.step()
            opt.zero_grad()
            record.append(loss.item())
    return np.array(losses[0]), np.array(losses[1])


@pytest.mark.parametrize("method", ["dora", "pissa"])
def test_the_start_equals_peft_s_own(method, base):
    """DoRA's magnitudes, PiSSA's B A and residual as peft computes them (in float32; singular vectors up to sign)."""
    adapter, _ = METHODS[method]
    config, arrays, folder = base
    ours = GPT2LMModel(config, adapter, seed=3, base_arrays=arrays)
    theirs = peft.get_peft_model(transformers.GPT2LMHeadModel.from_pretrained(folder), peft_config(adapter))
    params = dict(theirs.named_parameters())
    mine = dict(ours.named_parameters())
    for name in (name for name in mine if ".lora_A." in name):
        name_b = name.replace(".lora_A.", ".lora_B.")
        if method == "dora":
            name_m = name.replace(".lora_A.", ".lora_magnitude.")
            assert max_diff(mine[name_m], params[peft_name(name_m, adapter)]) <= 1e-6 * mine[name_m].abs().max()
        else:
            product = mine[name_b] @ mine[name]
            their_product = params[peft_name(name_b, adapter)] @ params[peft_name(name, adapter)]
            assert max_diff(product, their_product) <= 1e-5 * product.abs().max()
    for name, their_name in adapted_weights(ours).items():
        changed = max_diff(mine[name], torch.from_numpy(arrays[name]))
        assert (changed > 1e-3) == (method == "pissa"), "PiSSA's base is the residual, DoRA's the base"
        assert max_diff(mine[name], params[their_name]) <= 1e-5


@pytest.mark.parametrize("method", list(METHODS))
def test_logits_equal_peft_at_init_and_after_perturbing(method, base):
    adapter, _ = METHODS[method]
    ours, theirs = pair(base, adapter)
    input_ids = batches()[0]
    with torch.no_grad():
        assert max_diff(our_logits(ours, input_ids), their_logits(theirs, input_ids)) <= TOLERANCE
        perturb(ours, seed=1)
        copy_adapters(ours, theirs)
        plain = GPT2LMModel(base[0], AdapterConfig(), base_arrays=base[1])
        assert max_diff(our_logits(ours, input_ids), our_logits(plain, input_ids)) > 1e-2
        assert max_diff(our_logits(ours, input_ids), their_logits(theirs, input_ids)) <= TOLERANCE


@pytest.mark.parametrize("method", [method for method in METHODS if method != "adalora"])
def test_training_steps_equal_peft(method, base):
    adapter, ratio = METHODS[method]
    ours, theirs = pair(base, adapter)
    mine, peft_losses = train_both(ours, theirs, ratio)
    assert {n for n, p in ours.named_parameters() if p.requires_grad} == \
        {n for n, p in ours.named_parameters() if ".lora_" in n}
    assert mine[-1] < mine[0] - 0.05, "the adapters should learn the batches"
    assert np.abs(mine - peft_losses).max() <= TOLERANCE


def test_adalora_trains_and_allocates_ranks_as_peft(base):
    """Loss plus orthogonal regulariser, then after each update the allocator (peft's update_and_allocate)."""
    ours, theirs = pair(base, METHODS["adalora"][0])
    mark_only_adapter_as_trainable(ours)
    allocator = RankAllocator(ours, ALLOCATOR)
    our_optimizer = adamw_from_args({n: p for n, p in ours.named_parameters() if p.requires_grad}, optimizer_args(None))
    optimizer = their_optimizer(theirs, None)
    losses, masked = ([], []), []
    for step, input_ids in enumerate(batches(), start=1):
        loss = lm_loss(our_logits(ours, input_ids), input_ids) + ALLOCATOR.orth_reg_weight * orthogonal_regularisation(ours)
        their_loss = theirs(input_ids=input_ids, labels=input_ids).loss
        for value, opt, record in ((loss, our_optimizer, losses[0]), (their_loss, optimizer, losses[1])):
            value.backward()
            opt.step()
            record.append(value.item())
        if allocator.update_and_allocate(step, {n: p.grad for n, p in ours.named_parameters() if p.requires_grad}):
            masked.append(step)
        theirs.base_model.update_and_allocate(step)
        our_optimizer.zero_grad()
        optimizer.zero_grad()
        if step in masked:
            their_pattern = theirs.peft_config["default"].rank_pattern
            assert {name: mask.tolist() for name, mask in allocator.budget.masks.items()} == \
                {name: their_pattern[f"transformer.{name.rsplit('.', 1)[0]}.default"] for name in allocator.triplets}
    assert masked == [4, 8, 12, 15]
    ranks = allocator.budget.ranks()
    assert sum(ranks.values()) == ALLOCATOR.target_r * len(ranks) and len(set(ranks.values())) > 1
    params = dict(theirs.named_parameters())
    for name, mask in allocator.budget.masks.items():
        assert not ours.get_parameter(name)[~mask].any() and not params[peft_name(name, ours.adapter)][~mask].any()
    mine, peft_losses = np.array(losses[0]), np.array(losses[1])
    assert mine[-1] < mine[0] - 0.05
    assert np.abs(mine - peft_losses).max() <= TOLERANCE


def test_loraplus_changes_the_run(base):
    adapter, ratio = METHODS["loraplus"]
    plain, _ = train_both(*pair(base, adapter), None)
    faster, _ = train_both(*pair(base, adapter), ratio)
    assert np.abs(plain - faster).max() > 1e-3


def test_bitfit_equals_transformers_with_only_biases_trainable(base):
    config, arrays, folder = base
    ours = GPT2LMModel(config, AdapterConfig(adapter="bitfit"), base_arrays=arrays)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager")
    for name, param in theirs.named_parameters():
        param.requires_grad = name.endswith(".bias")
    mark_only_adapter_as_trainable(ours)
    trained = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trained == {n for n in arrays if n.endswith(".bias")}
    assert len(trained) == 6 * config.n_layer + 1, "c_attn, c_proj, c_fc, mlp c_proj, ln_1, ln_2 per block; ln_f"
    assert trained == {n.removeprefix("transformer.") for n, p in theirs.named_parameters() if p.requires_grad}
    mine, hf_losses = train_both(ours, theirs, None)
    assert mine[-1] < mine[0] - 0.05
    assert np.abs(mine - hf_losses).max() <= TOLERANCE
    assert set(ours.to_arrays(adapter_only=True)) == trained


@pytest.mark.parametrize("method", list(METHODS) + ["bitfit"])
def test_merged_export_loads_in_transformers(method, base, tmp_path):
    config, arrays, folder = base
    adapter = METHODS[method][0] if method in METHODS else AdapterConfig(adapter="bitfit")
    model = GPT2LMModel(config, adapter, seed=3, base_arrays=arrays).eval()
    perturb(model, seed=2)
    checkpoint = save_model_checkpoint(tmp_path, 10, model.to_arrays(adapter_only=True),
                                       checkpoint_metadata(config, adapter, adapter_mode(model), step=10))
    subprocess.run([sys.executable, "-m", "model_process", "export-hf", str(folder / "base.safetensors"),
                    str(tmp_path / "hf"), "--adapter", str(checkpoint)], check=True, capture_output=True)
    exported = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    input_ids = batches()[0]
    with torch.no_grad():
        plain = GPT2LMModel(config, AdapterConfig(), base_arrays=arrays)
        assert max_diff(our_logits(model, input_ids), our_logits(plain, input_ids)) > 1e-2
        assert max_diff(their_logits(exported, input_ids), our_logits(model, input_ids)) <= TOLERANCE
