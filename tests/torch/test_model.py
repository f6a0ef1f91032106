"""GPT2LMModel: initialisation from the shared numpy code, loss on loss positions only, KV cache, loading."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from common_data.model.gpt2_config import MODEL_CARDS, AdapterConfig, GPT2Config, config_for_card
from common_data.model.init_params import init_adapter_params, init_base_params
from NLG_pytorch.src import ops
from NLG_pytorch.src.model import GPT2LMModel

CONFIG = GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
LORA = AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32)


def test_model_cards_have_gpt2_sizes():
    sizes = {name: (c.n_embd, c.n_layer, c.n_head) for name, c in MODEL_CARDS.items()}
    assert sizes["gpt2.sm"] == (768, 12, 12)
    assert sizes["gpt2.md"] == (1024, 24, 16)
    assert sizes["gpt2.lg"] == (1280, 36, 20)
    tiny = config_for_card("gpt2.tiny")
    assert 2 <= tiny.n_layer <= 4 and 128 <= tiny.n_embd <= 256 and tiny.vocab_size == 50257
    with pytest.raises(ValueError, match="gpt2.tiny"):
        config_for_card("gpt2.xl")


@pytest.mark.parametrize("init", [lambda seed: init_base_params(CONFIG, seed),
                                  lambda seed: init_adapter_params(CONFIG, LORA, seed)], ids=["base", "adapter"])
def test_same_seed_gives_identical_initial_arrays(init):
    first, second, other = init(7), init(7), init(8)
    assert first.keys() == second.keys() == other.keys()
    random_names = [name for name, array in first.items() if array.std() > 0]
    assert random_names
    for name, array in first.items():
        assert array.dtype == np.float32 and np.array_equal(array, second[name]), name
    for name in random_names:
        assert not np.array_equal(first[name], other[name]), name


def test_model_starts_from_the_numpy_init():
    model = GPT2LMModel(CONFIG, LORA, seed=3)
    expected = {**init_base_params(CONFIG, 3), **init_adapter_params(CONFIG, LORA, 3)}
    arrays = model.to_arrays()
    assert arrays.keys() == expected.keys()
    assert all(np.array_equal(arrays[name], expected[name]) for name in expected)


def test_init_follows_gpt2():
    params = init_base_params(config_for_card("gpt2.tiny"), seed=0)
    assert abs(params["wte.weight"].std() - 0.02) < 1e-3
    assert abs(params["h.0.mlp.c_proj.weight"].std() - 0.02 / np.sqrt(2 * 4)) < 1e-3
    assert np.all(params["h.1.ln_2.weight"] == 1) and np.all(params["h.1.attn.c_attn.bias"] == 0)
    adapters = init_adapter_params(config_for_card("gpt2.tiny"), LORA, seed=0)
    lora_a = adapters["h.0.attn.c_attn.lora_A.q"]
    assert lora_a.shape == (4, 256) and 0.9 / 16 < np.abs(lora_a).max() <= 1 / 16
    assert np.all(adapters["h.0.attn.c_attn.lora_B.q"] == 0)


def batch(seed=0, length=20):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, CONFIG.vocab_size, (3, length), generator=generator)
    targets = torch.randint(0, CONFIG.vocab_size, (3, length), generator=generator)
    loss_mask = torch.zeros(3, length)
    loss_mask[0, 5:15] = 1
    loss_mask[1, 2:20] = 1
    loss_mask[2, 10:12] = 1
    return input_ids, targets, loss_mask


def test_the_lm_head_product_and_its_gradients(library):
    rng = np.random.default_rng(4)
    x, weight, upstream = (rng.normal(0, 1, shape) for shape in ((3, 13, 24), (1000, 24), (3, 13, 1000)))
    x_tensor, weight_tensor = (torch.tensor(array, dtype=torch.float32, requires_grad=True) for array in (x, weight))
    out = ops.matmul_transposed(x_tensor, weight_tensor)
    out.backward(torch.tensor(upstream, dtype=torch.float32))
    assert np.abs(out.detach().numpy() - x @ weight.T).max() <= 1e-4
    assert np.abs(x_tensor.grad.numpy() - upstream @ weight).max() <= 1e-4
    assert np.abs(weight_tensor.grad.numpy() - upstream.reshape(-1, 1000).T @ x.reshape(-1, 24)).max() <= 1e-4


def test_the_blocks_product_keeps_the_precision_of_autocast():
    x, weight = torch.randn(2, 3, 8), torch.randn(8, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ops.matmul(x, weight).dtype == torch.bfloat16
    assert ops.matmul(x, weight).dtype == torch.float32


def test_the_kernels_leave_subnormal_numbers_alone():
    # a library linked with -Ofast turns on flush-to-zero in the whole process when it loads
    assert ops.cpu_kernels() is not None
    assert np.float32(1e-38) / np.float32(100) > 0


@pytest.mark.parametrize("k", [1, 10, 37])
def test_top_log_softmax_gives_the_best_log_probabilities_in_order(k, kernels, top_log_softmax_case):
    logits, best, order = top_log_softmax_case(k)
    values, columns = ops.top_log_softmax(torch.tensor(logits), k)
    assert columns.dtype == torch.int64
    assert (np.take_along_axis(logits, columns.numpy(), 1) == np.take_along_axis(logits, order, 1)).all()
    if kernels == "shared kernels":  # torch's topk orders equal logits as it likes
        assert (columns.numpy() == order).all()
    np.testing.assert_allclose(values.numpy(), best, rtol=0, atol=1e-5)


@pytest.mark.parametrize("label_smooth", [0.1, 0.0])
@pytest.mark.parametrize("adapter", ["frozen", "trained"])
def test_lm_head_loss_gradient_is_softmax_minus_the_smoothed_target(label_smooth, adapter, kernels, library,
                                                                    monkeypatch, token_loss_case):
    monkeypatch.setattr(ops, "LM_HEAD_CHUNK", 2)  # three chunks, the weight's gradient summed over them
    case = token_loss_case(label_smooth, CONFIG.vocab_size)
    gradient = 3.0 * case.logits_grad
    hidden_tensor = torch.tensor(case.hidden, requires_grad=True)
    weight_tensor = torch.tensor(case.weight, requires_grad=adapter == "trained")
    arguments = hidden_tensor, weight_tensor, torch.tensor(case.targets), torch.tensor(case.weights), label_smooth
    loss = ops.lm_head_loss(*arguments)
    # the trace asks for gradients first and then runs backward: the second pass must see the same
    (first_pass,) = torch.autograd.grad(loss * 3.0, [hidden_tensor], retain_graph=True)
    (loss * 3.0).backward()
    assert torch.equal(first_pass, hidden_tensor.grad)
    assert loss.item() == pytest.approx(case.loss, rel=1e-6)
    assert np.abs(hidden_tensor.grad.numpy() - gradient @ case.weight).max() <= 1e-5
    if adapter == "trained":
        assert np.abs(weight_tensor.grad.numpy() - gradient.T @ case.hidden).max() <= 1e-5
    with torch.no_grad():
        assert ops.lm_head_loss(*arguments).item() == loss.item()


@pytest.mark.parametrize("label_smooth", [0.1, 0.0])
def test_loss_on_loss_positions_equals_loss_from_full_logits(label_smooth):
    model = GPT2LMModel(CONFIG, LORA, seed=0)
    input_ids, targets, loss_mask = batch()
    logits, _ = model(input_ids)
    per_token = F.cross_entropy(logits.reshape(-1, CONFIG.vocab_size), targets.reshape(-1), reduction="none",
                                label_smoothing=label_smooth)
    expected = (per_token * loss_mask.reshape(-1)).sum() / (loss_mask.sum() + 0.0001)
    _, full = model(input_ids, targets=targets, loss_mask=loss_mask, label_smooth=label_smooth, full_logits=True)
    assert torch.allclose(full, expected, rtol=1e-6, atol=1e-6)
    # targets outside the loss mask are never looked at: an invalid id there must not matter
    targets = torch.where(loss_mask.bool(), targets, torch.full_like(targets, -1))
    none, loss = model(input_ids, targets=targets, loss_mask=loss_mask, label_smooth=label_smooth)
    assert none is None
    assert torch.allclose(loss, expected, rtol=1e-6, atol=1e-6)
    grad_ours = torch.autograd.grad(loss, model.wte.weight)[0]
    grad_full = torch.autograd.grad(expected, model.wte.weight)[0]
    assert torch.allclose(grad_ours, grad_full, atol=1e-7)


def test_loss_without_mask_averages_every_position():
    model = GPT2LMModel(CONFIG, LORA, seed=0)
    input_ids, targets, _ = batch()
    _, unmasked = model(input_ids, targets=targets)
    _, all_ones = model(input_ids, targets=targets, loss_mask=torch.ones(targets.shape))
    assert torch.equal(unmasked, all_ones)


def test_kv_cache_gives_the_full_forward_logits(kernels):
    model = GPT2LMModel(CONFIG, LORA, seed=0)
    input_ids, _, _ = batch(length=16)
    with torch.no_grad():
        full, _ = model(input_ids)
        logits, _, past = model(input_ids[:, :10], use_cache=True)
        pieces = [logits]
        for start, stop in ((10, 13), (13, 14), (14, 15), (15, 16)):
            logits, _, past = model(input_ids[:, start:stop], past_key_values=past, use_cache=True)
            pieces.append(logits)
    assert len(past) == CONFIG.n_layer and past[0][0].shape == (3, CONFIG.n_head, 16, 16)
    assert (torch.cat(pieces, dim=1) - full).abs().max().item() <= 1e-5


def test_past_rows_continue_the_cached_rows_they_name(kernels):
    # beam search's reorder: rows 2, 0, 0 of a three-row cache continue, one of them twice
    model = GPT2LMModel(CONFIG, LORA, seed=0)
    input_ids, _, _ = batch(length=12)
    order = torch.tensor([2, 0, 0])
    with torch.no_grad():
        _, _, past = model(input_ids[:, :10], use_cache=True)
        for start, rows in ((10, order), (11, None)):
            logits, _, past = model(input_ids[order, start:start + 1], past_key_values=past, past_rows=rows,
                                    use_cache=True)
        full, _ = model(input_ids[order])
    assert (logits[:, 0] - full[:, 11]).abs().max().item() <= 1e-5


def test_left_padded_rows_compute_as_if_alone(kernels):
    # decoding batches contexts of different lengths, left-padded: prompt, then two cached steps
    model = GPT2LMModel(CONFIG, LORA, seed=0)
    input_ids, _, _ = batch(length=12)
    padding = torch.tensor([0, 3, 7])
    padded = input_ids.clone()
    for row, count in enumerate(padding.tolist()):
        padded[row, :count] = 5
    with torch.no_grad():
        logits, _, past = model(padded[:, :10], use_cache=True, padding=padding)
        pieces = [logits]
        for start in (10, 11):
            logits, _, past = model(padded[:, start:start + 1], past_key_values=past, use_cache=True, padding=padding)
            pieces.append(logits)
        together = torch.cat(pieces, dim=1)
        for row, count in enumerate(padding.tolist()):
            alone, _ = model(input_ids[row:row + 1, count:])
            assert (together[row, count:] - alone[0]).abs().max().item() <= 1e-5
            assert torch.isfinite(together[row]).all()


def test_later_tokens_do_not_change_earlier_logits():
    model = GPT2LMModel(CONFIG, LORA, seed=0)
    input_ids, _, _ = batch(length=12)
    padded = input_ids.clone()
    padded[:, 8:] = 0
    with torch.no_grad():
        assert torch.equal(model(input_ids)[0][:, :8], model(padded)[0][:, :8])


def test_load_arrays_names_the_bad_tensor():
    model = GPT2LMModel(CONFIG, LORA, seed=0)
    arrays = model.to_arrays()
    with pytest.raises(ValueError, match="h.1.attn.c_proj.weight"):
        model.load_arrays({name: a * 2 for name, a in arrays.items()} | {"h.1.attn.c_proj.weight": np.zeros(3)})
    unchanged = model.to_arrays()
    assert all(np.array_equal(a, arrays[name]) for name, a in unchanged.items()), "a failed load changes nothing"
    with pytest.raises(KeyError, match="h.9.ln_1.weight"):
        model.load_arrays({"h.9.ln_1.weight": np.ones(64, np.float32)}, strict=False)
    with pytest.raises(KeyError, match="wte.weight"):
        model.load_arrays({name: a for name, a in arrays.items() if name != "wte.weight"})
    model.load_arrays({"wte.weight": arrays["wte.weight"] * 2}, strict=False)
    assert np.array_equal(model.to_arrays()["wte.weight"], arrays["wte.weight"] * 2)


def test_tiny_card_trains_one_step():
    model = GPT2LMModel(config_for_card("gpt2.tiny"), LORA, seed=0)
    input_ids = torch.randint(0, 50257, (2, 16), generator=torch.Generator().manual_seed(0))
    _, loss = model(input_ids, targets=input_ids, loss_mask=torch.ones(2, 16), label_smooth=0.1)
    loss.backward()
    assert np.log(50257) - 2 < loss.item() < np.log(50257) + 2
    assert model.h[3].attn.c_attn.lora_B["v"].grad.abs().sum() > 0
