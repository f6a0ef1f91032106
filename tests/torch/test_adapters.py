"""LoRA and JELLY adapters: the GUIDE's formulas, merge / unmerge, the seq2par switch, what trains."""
import numpy as np
import pytest
import torch

from common_data.model.gpt2_config import AdapterConfig, GPT2Config
from common_data.model.init_params import init_adapter_params
from common_data.model.merge import merge_adapter_arrays
from NLG_pytorch.src import ops
from NLG_pytorch.src.adapters import (adapter_mode, adapter_state_dict, mark_only_adapter_as_trainable,
                                      merge_adapters, switch_to_parallel, unmerge_adapters)
from NLG_pytorch.src.model import GPT2LMModel

CONFIG = GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
FULL = AdapterConfig(lora_dim=0)
LORA = AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32, targets=("q", "v", "c_fc"))
SEQUENTIAL = AdapterConfig(adapter="jelly", lora_dim=4, lora_alpha=32, jelly_mode="sequential",
                           targets=("q", "v", "c_fc"))
SEQ2PAR = AdapterConfig(adapter="jelly", lora_dim=4, lora_alpha=32, jelly_mode="seq2par", targets=("q", "v", "c_fc"))
INPUT_IDS = torch.randint(0, CONFIG.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))


def trained(adapter, seed=1):
    """A model whose adapters have random nonzero A and B, as after training."""
    model = GPT2LMModel(CONFIG, adapter, seed=0).eval()
    rng = np.random.default_rng(seed)
    model.load_arrays({name: rng.normal(0, 0.1, a.shape).astype(np.float32)
                       for name, a in model.to_arrays(adapter_only=True).items()}, strict=False)
    return model


def logits(model):
    with torch.no_grad():
        return model(INPUT_IDS)[0]


def max_diff(a, b):
    return (a - b).abs().max().item()


def test_fresh_lora_leaves_logits_unchanged():
    base = GPT2LMModel(CONFIG, FULL, seed=0)
    for adapter in (LORA, SEQUENTIAL):
        model = GPT2LMModel(CONFIG, adapter, seed=0)
        assert all(torch.all(p == 0) for name, p in adapter_state_dict(model).items() if ".lora_B." in name)
        assert max_diff(logits(model), logits(base)) == 0
    assert max_diff(logits(trained(LORA)), logits(base)) > 1e-2


@pytest.mark.parametrize("adapter", [LORA, SEQUENTIAL], ids=["parallel", "sequential"])
def test_layer_follows_the_guide_formula(adapter):
    model = trained(adapter)
    layer = model.h[0].attn.c_attn
    x = torch.randn(2, 5, CONFIG.n_embd, generator=torch.Generator().manual_seed(3))
    weight, bias, n, scale = layer.weight.detach(), layer.bias.detach(), CONFIG.n_embd, adapter.scale
    expected = x @ weight + bias
    for target, columns in (("q", slice(0, n)), ("v", slice(2 * n, 3 * n))):
        lora_a, lora_b = layer.lora_A[target].detach(), layer.lora_B[target].detach()
        w_slice = weight[:, columns].T  # W_s, d_out x d_in
        adapter_input = (x @ w_slice.T) if adapter.initial_mode == "sequential" else x
        expected[..., columns] += scale * (lora_b @ (lora_a @ adapter_input.unsqueeze(-1))).squeeze(-1)
    with torch.no_grad():
        assert max_diff(layer(x), expected) <= 1e-5
        # the layer's base product is ops.matmul's
        assert torch.equal(layer(x)[..., n:2 * n], (ops.matmul(x, weight) + bias)[..., n:2 * n]), "k has no adapter"


@pytest.mark.parametrize("adapter", [LORA, SEQUENTIAL], ids=["parallel", "sequential"])
def test_merge_and_unmerge(adapter):
    model = trained(adapter)
    unmerged, weights = logits(model), model.to_arrays()
    merge_adapters(model)
    assert model.h[0].attn.c_attn.merged
    assert max_diff(logits(model), unmerged) <= 1e-5
    merged_weight = model.h[1].mlp.c_fc.weight.detach().numpy().copy()
    assert not np.allclose(merged_weight, weights["h.1.mlp.c_fc.weight"], atol=1e-3)
    unmerge_adapters(model)
    assert max_diff(logits(model), unmerged) <= 1e-5
    restored = model.to_arrays()
    assert all(np.allclose(restored[name], weights[name], atol=1e-5) for name in weights)


@pytest.mark.parametrize("adapter", [LORA, SEQUENTIAL], ids=["parallel", "sequential"])
def test_numpy_merge_matches_the_model_merge(adapter):
    model = trained(adapter)
    arrays = model.to_arrays()
    base = {name: a for name, a in arrays.items() if ".lora_" not in name}
    adapters = model.to_arrays(adapter_only=True)
    merged = merge_adapter_arrays(base, adapters, CONFIG, adapter, adapter_mode(model))
    merge_adapters(model)
    for name, param in model.named_parameters():
        if ".lora_" not in name:
            assert np.allclose(merged[name], param.detach().numpy(), atol=1e-6), name
    with pytest.raises(ValueError, match="h.1.mlp.c_fc.lora_A.c_fc"):
        merge_adapter_arrays(base, {**adapters, "h.1.mlp.c_fc.lora_A.c_fc": np.zeros((4, 7), np.float32)},
                             CONFIG, adapter, adapter_mode(model))


def test_seq2par_switch_keeps_logits_and_hands_back_adapter_parameters():
    model = trained(SEQ2PAR)
    before = logits(model)
    assert adapter_mode(model) == "sequential"
    fc_a = model.h[0].mlp.c_fc.lora_A["c_fc"]
    assert fc_a.shape == (4, 4 * CONFIG.n_embd)
    reset = switch_to_parallel(model)
    assert adapter_mode(model) == "parallel"
    assert max_diff(logits(model), before) <= 1e-5
    assert fc_a.shape == (4, CONFIG.n_embd), "A <- A W turns r x d_out into r x d_in, in the same Parameter"
    adapter_params = [p for name, p in model.named_parameters() if ".lora_" in name]
    assert {id(p) for p in reset} == {id(p) for p in adapter_params}
    with pytest.raises(RuntimeError, match="sequential"):
        switch_to_parallel(model)


def test_switched_adapter_keeps_training():
    model = trained(SEQ2PAR)
    mark_only_adapter_as_trainable(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model(INPUT_IDS, targets=INPUT_IDS)[1].backward()
    optimizer.step()
    for param in switch_to_parallel(model):
        optimizer.state.pop(param, None)
    optimizer.zero_grad()
    model(INPUT_IDS, targets=INPUT_IDS)[1].backward()
    optimizer.step()
    assert model.h[0].mlp.c_fc.lora_A["c_fc"].grad.shape == (4, CONFIG.n_embd)


def trainable(model):
    mark_only_adapter_as_trainable(model)
    return {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}


def test_jelly_and_lora_train_the_same_number_of_parameters_on_square_layers():
    square = dict(lora_dim=4, lora_alpha=32, targets=("q", "v", "c_proj"))
    lora = trainable(GPT2LMModel(CONFIG, AdapterConfig(adapter="lora", **square)))
    jelly = trainable(GPT2LMModel(CONFIG, AdapterConfig(adapter="jelly", jelly_mode="sequential", **square)))
    assert lora == jelly
    assert sum(lora.values()) == CONFIG.n_layer * 3 * 2 * 4 * CONFIG.n_embd
    assert set(lora) == set(init_adapter_params(CONFIG, AdapterConfig(adapter="lora", **square), seed=0))
    # c_fc is not square: sequential A sees its 4 * n_embd outputs
    assert sum(trainable(GPT2LMModel(CONFIG, SEQUENTIAL)).values()) > sum(trainable(GPT2LMModel(CONFIG, LORA)).values())


def test_full_fine_tuning_trains_everything():
    model = GPT2LMModel(CONFIG, FULL)
    assert adapter_mode(model) == "full"
    assert sum(trainable(model).values()) == sum(p.numel() for p in model.parameters())
    assert adapter_state_dict(model).keys() == model.state_dict().keys()


def test_only_adapters_get_gradients():
    model = trained(LORA)
    names = set(trainable(model))
    model(INPUT_IDS, targets=INPUT_IDS)[1].backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == names and names == set(adapter_state_dict(model))


def test_dropout_acts_on_the_adapter_input_only():
    adapter = AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32, lora_dropout=0.5)
    fresh = GPT2LMModel(CONFIG, adapter, seed=0).train()
    with torch.no_grad():
        assert torch.equal(fresh(INPUT_IDS)[0], fresh.eval()(INPUT_IDS)[0]), "B = 0: dropout has nothing to drop"
    model = trained(adapter).train()
    with torch.no_grad():
        assert max_diff(model(INPUT_IDS)[0], model(INPUT_IDS)[0]) > 0
        model.eval()
        assert torch.equal(model(INPUT_IDS)[0], model(INPUT_IDS)[0])


def test_adapter_checkpoint_round_trip_restores_logits():
    model = trained(SEQ2PAR)
    switch_to_parallel(model)
    saved = model.to_arrays(adapter_only=True)
    restored = GPT2LMModel(CONFIG, SEQ2PAR, seed=0).eval()
    with pytest.raises(ValueError, match="adapter mode sequential"):
        restored.load_arrays(saved, strict=False)
    switch_to_parallel(restored)
    restored.load_arrays(saved, strict=False)
    assert torch.equal(logits(restored), logits(model))
