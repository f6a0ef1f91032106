"""The Jittor GPT2LMModel, its adapters and AdamW on their own: initial weights, the GUIDE's formulas, merge,
the seq2par switch, the KV cache, the loss, what trains, the update rule, resuming and memory across steps."""
import math

import jittor as jt
import numpy as np
import pytest

from common_data.model.gpt2_config import AdapterConfig, GPT2Config
from common_data.model.plan import base_param_shapes
from common_data.model.init_params import init_adapter_params, init_base_params
from common_data.model.merge import merge_adapter_arrays
from common_data.model.packing import pack
from NLG_jittor.src.adapters import (adapter_mode, adapter_state_dict, mark_only_adapter_as_trainable, merge_adapters,
                                     switch_to_parallel, unmerge_adapters)
from NLG_jittor.src.dropout import use_shared_masks
from NLG_jittor.src.model import GPT2LMModel
from NLG_jittor.src import ops
from NLG_jittor.src.optimizer import AdamW

CONFIG = GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
FULL = AdapterConfig(lora_dim=0)
LORA = AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32, targets=("q", "v", "c_fc"))
SEQUENTIAL = AdapterConfig(adapter="jelly", lora_dim=4, lora_alpha=32, jelly_mode="sequential",
                           targets=("q", "v", "c_fc"))
SEQ2PAR = AdapterConfig(adapter="jelly", lora_dim=4, lora_alpha=32, jelly_mode="seq2par", targets=("q", "v", "c_fc"))
RNG = np.random.default_rng(0)
INPUT_IDS = RNG.integers(0, CONFIG.vocab_size, (3, 16))
TARGETS = RNG.integers(0, CONFIG.vocab_size, (3, 16))
LOSS_MASK = np.zeros((3, 16), np.float32)
LOSS_MASK[0, 5:15] = 1
LOSS_MASK[1, 2:16] = 1
LOSS_MASK[2, 10:12] = 1


def trained(adapter, seed=1):
    """A model whose adapters have random nonzero A and B, as after training."""
    model = GPT2LMModel(CONFIG, adapter, seed=0)
    rng = np.random.default_rng(seed)
    model.load_arrays({name: rng.normal(0, 0.1, a.shape).astype(np.float32)
                       for name, a in model.to_arrays(adapter_only=True).items()}, strict=False)
    return model


def logits(model, input_ids=INPUT_IDS):
    with jt.no_grad():
        return model(jt.array(input_ids))[0].numpy()


def max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max())


@pytest.mark.parametrize("adapter", [LORA, SEQUENTIAL], ids=["lora", "sequential"])
def test_model_holds_the_numpy_init(adapter):
    model = GPT2LMModel(CONFIG, adapter, seed=3)
    expected = {**init_base_params(CONFIG, 3), **init_adapter_params(CONFIG, adapter, 3)}
    arrays = model.to_arrays()
    assert arrays.keys() == expected.keys()
    assert set(base_param_shapes(CONFIG)) < arrays.keys()
    for name, array in expected.items():
        assert arrays[name].dtype == np.float32 and np.array_equal(arrays[name], array), name
    assert not np.array_equal(GPT2LMModel(CONFIG, adapter, seed=4).to_arrays()["h.0.attn.c_attn.weight"],
                              arrays["h.0.attn.c_attn.weight"])


def test_fresh_adapters_leave_logits_unchanged():
    base = logits(GPT2LMModel(CONFIG, FULL, seed=0))
    for adapter in (LORA, SEQUENTIAL):
        model = GPT2LMModel(CONFIG, adapter, seed=0)
        assert all(np.all(a == 0) for name, a in model.to_arrays(adapter_only=True).items() if ".lora_B." in name)
        assert max_diff(logits(model), base) == 0
    assert max_diff(logits(trained(LORA)), base) > 1e-2


@pytest.mark.parametrize("adapter", [LORA, SEQUENTIAL], ids=["parallel", "sequential"])
def test_layer_follows_the_guide_formula(adapter):
    model = trained(adapter)
    layer = model.h[0].attn.c_attn
    x = np.random.default_rng(3).standard_normal((2, 5, CONFIG.n_embd)).astype(np.float32)
    weight, bias, n = layer.weight.numpy().astype(np.float64), layer.bias.numpy(), CONFIG.n_embd
    expected = x @ weight + bias
    for target, columns in (("q", slice(0, n)), ("v", slice(2 * n, 3 * n))):
        lora_a, lora_b = layer.lora_A[target].numpy(), layer.lora_B[target].numpy()
        w_slice = weight[:, columns].T  # W_s, d_out x d_in
        adapter_input = x @ w_slice.T if adapter.initial_mode == "sequential" else x
        expected[..., columns] += adapter.scale * adapter_input @ lora_a.T @ lora_b.T
    out = layer(jt.array(x)).numpy()
    assert max_diff(out, expected) <= 1e-5
    assert max_diff(out[..., n:2 * n], (x @ weight + bias)[..., n:2 * n]) <= 1e-5, "k has no adapter"


@pytest.mark.parametrize("adapter", [LORA, SEQUENTIAL], ids=["parallel", "sequential"])
def test_merge_and_unmerge(adapter):
    model = trained(adapter)
    unmerged, weights = logits(model), model.to_arrays()
    merge_adapters(model)
    assert model.h[0].attn.c_attn.merged
    assert max_diff(logits(model), unmerged) <= 1e-5
    with pytest.raises(RuntimeError, match="unmerge"):
        model.to_arrays()
    base = {name: a for name, a in weights.items() if ".lora_" not in name}
    adapters = {name: a for name, a in weights.items() if ".lora_" in name}
    expected = merge_adapter_arrays(base, adapters, CONFIG, adapter, adapter_mode(model))
    for name, param in model.named_parameters():
        if ".lora_" not in name:
            assert max_diff(param.numpy(), expected[name]) <= 1e-6, name
    unmerge_adapters(model)
    assert max_diff(logits(model), unmerged) <= 1e-5
    restored = model.to_arrays()
    assert all(max_diff(restored[name], weights[name]) <= 1e-5 for name in weights)


def test_seq2par_switch_keeps_logits_and_the_parameter_objects():
    model = trained(SEQ2PAR)
    before = logits(model)
    fc_a = model.h[0].mlp.c_fc.lora_A["c_fc"]
    assert adapter_mode(model) == "sequential" and fc_a.shape == [4, 4 * CONFIG.n_embd]
    reset = switch_to_parallel(model)
    assert adapter_mode(model) == "parallel"
    assert max_diff(logits(model), before) <= 1e-5
    assert model.h[0].mlp.c_fc.lora_A["c_fc"] is fc_a and fc_a.shape == [4, CONFIG.n_embd]
    assert {id(p) for p in reset} == {id(p) for name, p in model.named_parameters() if ".lora_" in name}
    with pytest.raises(RuntimeError, match="sequential"):
        switch_to_parallel(model)


def loss_of(model, input_ids=INPUT_IDS, targets=TARGETS, loss_mask=LOSS_MASK, label_smooth=0.1, full_logits=False):
    return model(jt.array(input_ids), targets=jt.array(targets), loss_mask=jt.array(loss_mask),
                 label_smooth=label_smooth, full_logits=full_logits)[1]


def test_switched_adapter_keeps_training():
    model = trained(SEQ2PAR)
    mark_only_adapter_as_trainable(model)
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    optimizer.step(loss_of(model))
    fc_a = model.h[0].mlp.c_fc.lora_A["c_fc"]
    optimizer.reset_state(switch_to_parallel(model))
    assert fc_a.requires_grad and id(fc_a) not in optimizer.state
    before = fc_a.numpy()
    optimizer.step(loss_of(model))
    assert optimizer.state[id(fc_a)]["step"] == 1
    assert optimizer.state[id(fc_a)]["exp_avg"].shape == [4, CONFIG.n_embd]
    assert max_diff(fc_a.numpy(), before) > 0


def test_kv_cache_gives_the_full_forward_logits():
    model = trained(LORA)
    full = logits(model)
    with jt.no_grad():
        step_logits, _, past = model(jt.array(INPUT_IDS[:, :10]), use_cache=True)
        pieces = [step_logits.numpy()]
        for start, stop in ((10, 13), (13, 14), (14, 15), (15, 16)):
            step_logits, _, past = model(jt.array(INPUT_IDS[:, start:stop]), past_key_values=past, use_cache=True)
            pieces.append(step_logits.numpy())
    assert len(past) == CONFIG.n_layer and past[0][0].shape == [3, CONFIG.n_head, 16, 16]
    assert max_diff(np.concatenate(pieces, axis=1), full) <= 1e-5


def test_past_rows_continue_the_cached_rows_they_name():
    # beam search's reorder: rows 2, 0, 0 of a three-row cache continue, one of them twice
    model = trained(LORA)
    order = np.array([2, 0, 0])
    with jt.no_grad():
        _, _, past = model(jt.array(INPUT_IDS[:, :10]), use_cache=True)
        for start, rows in ((10, jt.array(order)), (11, None)):
            step_logits, _, past = model(jt.array(INPUT_IDS[order, start:start + 1]), past_key_values=past,
                                         past_rows=rows, use_cache=True)
    assert max_diff(step_logits.numpy()[:, 0], logits(model, INPUT_IDS[order, :12])[:, 11]) <= 1e-5


def test_left_padded_rows_compute_as_if_alone():
    # decoding batches contexts of different lengths, left-padded: prompt, then two cached steps
    model = trained(LORA)
    padding = np.array([0, 3, 7])
    padded = INPUT_IDS[:, :12].copy()
    for row, count in enumerate(padding):
        padded[row, :count] = 5
    with jt.no_grad():
        step_logits, _, past = model(jt.array(padded[:, :10]), use_cache=True, padding=jt.array(padding))
        pieces = [step_logits.numpy()]
        for start in (10, 11):
            step_logits, _, past = model(jt.array(padded[:, start:start + 1]), past_key_values=past, use_cache=True,
                                         padding=jt.array(padding))
            pieces.append(step_logits.numpy())
    together = np.concatenate(pieces, axis=1)
    for row, count in enumerate(padding):
        assert max_diff(together[row, count:], logits(model, INPUT_IDS[row:row + 1, count:12])[0]) <= 1e-5
        assert np.isfinite(together[row]).all()


def test_later_tokens_do_not_change_earlier_logits():
    model = trained(LORA)
    padded = INPUT_IDS.copy()
    padded[:, 8:] = 0
    assert max_diff(logits(model, padded)[:, :8], logits(model)[:, :8]) == 0


@pytest.mark.parametrize("label_smooth", [0.1, 0.0])
def test_loss_on_loss_positions_equals_loss_from_full_logits(label_smooth):
    model = trained(LORA)
    full = logits(model).astype(np.float64)
    log_probs = full - np.log(np.exp(full - full.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - full.max(-1, keepdims=True)
    nll = -np.take_along_axis(log_probs, TARGETS[..., None], -1)[..., 0]
    per_token = (1 - label_smooth) * nll - label_smooth * log_probs.mean(-1)
    expected = (per_token * LOSS_MASK).sum() / (LOSS_MASK.sum() + 0.0001)
    assert abs(loss_of(model, label_smooth=label_smooth, full_logits=True).item() - expected) <= 1e-5
    # targets outside the loss mask are never looked at: an invalid id there must not matter
    targets = np.where(LOSS_MASK > 0, TARGETS, -1)
    loss = loss_of(model, targets=targets, label_smooth=label_smooth)
    assert abs(loss.item() - expected) <= 1e-5
    unmasked = model(jt.array(INPUT_IDS), targets=jt.array(TARGETS))[1].item()
    assert unmasked == loss_of(model, loss_mask=np.ones(TARGETS.shape, np.float32), label_smooth=0.0).item()


def test_a_packed_batch_gives_the_loss_and_gradients_of_its_padded_rows():
    """The trainer runs right-padded rows packed (common_data.model.packing), dropout masks shared: the same masks,
    loss and gradients."""
    model = trained(AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32, lora_dropout=0.5,
                                  targets=("q", "v", "c_fc")))
    masks = use_shared_masks(model, seed=7, rows=[0, 1, 2])
    masks.step = 3
    lengths = np.array([15, 16, 12])  # the loss mask lies inside
    params = [param for param in model.parameters() if not param.is_stop_grad()]
    results = []
    for packing in (None, pack(lengths, 16)):
        masks.lengths = None if packing is None else lengths
        loss = model(jt.array(INPUT_IDS), targets=jt.array(TARGETS), loss_mask=jt.array(LOSS_MASK),
                     label_smooth=0.1, packing=packing)[1]
        results.append((loss.item(), [grad.numpy() for grad in jt.grad(loss, params)]))
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    assert abs(packed_loss - padded_loss) <= 1e-6
    for padded_grad, packed_grad in zip(padded_grads, packed_grads):
        np.testing.assert_allclose(packed_grad, padded_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("length, head_dim", [(7, 16), (33, 64)])
def test_the_causal_attention_kernels_give_the_masked_softmax_and_its_gradients(length, head_dim):
    rng = np.random.default_rng(length)
    query, key, value, weights = (jt.array(rng.normal(0, 1, (2, 3, length, head_dim)).astype(np.float32))
                                  for _ in range(4))
    causal = jt.ones((length, length), dtype="bool").tril()
    results = []
    for mask in (None, causal):
        out = ops.attention(query, key, value, mask)
        results.append([out.numpy()] + [grad.numpy() for grad in jt.grad((out * weights).sum(), [query, key, value])])
    for kernel, masked in zip(*results):
        assert max_diff(kernel, masked) <= 1e-5


def test_the_gelu_kernels_give_gelu_new_and_its_gradient():
    x = np.random.default_rng(5).normal(0, 3, (37, 129)).astype(np.float32)
    weights = np.random.default_rng(6).normal(0, 1, x.shape).astype(np.float32)
    x_var = jt.array(x)
    out = ops.gelu(x_var)
    (grad,) = jt.grad((out * jt.array(weights)).sum(), [x_var])
    exact = x.astype(np.float64)
    inner = np.sqrt(2 / np.pi) * (exact + 0.044715 * exact ** 3)
    slope = 0.5 * (1 + np.tanh(inner)) + 0.5 * exact * (1 - np.tanh(inner) ** 2) * np.sqrt(2 / np.pi) * (
        1 + 3 * 0.044715 * exact ** 2)
    assert max_diff(out.numpy(), 0.5 * exact * (1 + np.tanh(inner))) <= 1e-5
    assert max_diff(grad.numpy(), weights * slope) <= 1e-5


def test_the_layer_norm_kernels_give_layer_norm_and_its_gradients():
    rng = np.random.default_rng(7)
    x, upstream = rng.normal(1, 2, (3, 45, 64)), rng.normal(0, 1, (3, 45, 64))
    layer = ops.LayerNorm(64, eps=1e-5)
    layer.weight.assign(jt.array(rng.normal(1, 0.1, 64).astype(np.float32)))
    layer.bias.assign(jt.array(rng.normal(0, 0.1, 64).astype(np.float32)))
    x_var = jt.array(x.astype(np.float32))
    out = layer(x_var)
    x_grad, weight_grad, bias_grad = jt.grad((out * jt.array(upstream.astype(np.float32))).sum(),
                                             [x_var, layer.weight, layer.bias])
    weight = layer.weight.numpy().astype(np.float64)
    rstd = 1 / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    normalized = (x - x.mean(-1, keepdims=True)) * rstd
    scaled = upstream * weight
    exact_x_grad = rstd * (scaled - scaled.mean(-1, keepdims=True)
                           - normalized * (scaled * normalized).mean(-1, keepdims=True))
    assert max_diff(out.numpy(), normalized * weight + layer.bias.numpy()) <= 1e-5
    assert max_diff(x_grad.numpy(), exact_x_grad) <= 1e-5
    assert max_diff(weight_grad.numpy(), (upstream * normalized).sum((0, 1))) <= 1e-4
    assert max_diff(bias_grad.numpy(), upstream.sum((0, 1))) <= 1e-4


@pytest.mark.parametrize("k", [1, 10, 37])
def test_the_top_log_softmax_kernel_gives_the_best_log_probabilities_in_order(k, top_log_softmax_case):
    logits, best, order = top_log_softmax_case(k)
    values, columns = ops.top_log_softmax(jt.array(logits), k)
    assert (columns.numpy() == order).all()
    np.testing.assert_allclose(values.numpy(), best, rtol=0, atol=1e-5)


def loss_from_logits(hidden, weight, targets, weights, label_smooth):
    return ops.token_loss(ops.matmul_transposed(hidden, weight), targets, weights, label_smooth)


@pytest.mark.parametrize("label_smooth", [0.1, 0.0])
@pytest.mark.parametrize("loss_of", [loss_from_logits, ops.LMHeadLoss.apply], ids=["token_loss", "LMHeadLoss"])
def test_loss_gradient_is_softmax_minus_the_smoothed_target(loss_of, label_smooth, token_loss_case):
    case = token_loss_case(label_smooth, CONFIG.vocab_size)
    gradient = 3.0 * case.logits_grad
    arguments = (jt.array(case.hidden), jt.array(case.weight), jt.array(case.targets), jt.array(case.weights),
                 label_smooth)
    loss = loss_of(*arguments)
    hidden_grad, weight_grad = jt.grad(loss * 3.0, arguments[:2])
    assert loss.item() == pytest.approx(case.loss, rel=1e-6)
    assert max_diff(hidden_grad.numpy(), gradient @ case.weight) <= 1e-5
    assert max_diff(weight_grad.numpy(), gradient.T @ case.hidden) <= 1e-5
    with jt.no_grad():
        assert loss_of(*arguments).item() == loss.item()


@pytest.mark.parametrize("adapter", [LORA, FULL], ids=["adapters", "full"])
def test_only_the_trainable_tensors_change(adapter):
    model = trained(adapter) if adapter.lora_dim else GPT2LMModel(CONFIG, adapter)
    mark_only_adapter_as_trainable(model)
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert names == set(adapter_state_dict(model))
    assert names == ({n for n in model.to_arrays() if ".lora_" in n} if adapter.lora_dim else set(model.to_arrays()))
    before = model.to_arrays()
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    optimizer.backward(loss_of(model))
    optimizer.step()
    after = model.to_arrays()
    assert {name for name in before if not np.array_equal(before[name], after[name])} == names


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


def reference_adamw(param, grads, lr, betas, eps, weight_decay, correct_bias):
    """microsoft/LoRA's AdamW in float64, one step per gradient."""
    m, v = np.zeros_like(param), np.zeros_like(param)
    for t, grad in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * grad
        v = betas[1] * v + (1 - betas[1]) * grad ** 2
        step_size = lr * math.sqrt(1 - betas[1] ** t) / (1 - betas[0] ** t) if correct_bias else lr
        param = param - step_size * m / (np.sqrt(v) + eps)
        param = param - lr * weight_decay * param
    return param


@pytest.mark.parametrize("correct_bias", [True, False])
def test_adamw_follows_microsoft_lora_update_rule(correct_bias):
    rng = np.random.default_rng(5)
    start = rng.normal(0, 1, (16, 3))
    grads = [rng.normal(0, 1, (16, 3)) * scale for scale in (1.0, 0.1, 3.0, 1e-3)]
    for grad in grads:
        # units without gradient, and gradients whose square is subnormal in float32
        grad[0], grad[5:7] = 0.0, 1e-20
    param = jt.array(start.astype(np.float32))
    hyper = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.1, correct_bias=correct_bias)
    optimizer = AdamW([param], **hyper)
    for grad in grads:
        # the gradient of sum(param * g) is g
        optimizer.step((param * jt.array(grad.astype(np.float32))).sum())
    expected = reference_adamw(start, [g.astype(np.float32) for g in grads], **hyper)
    assert max_diff(param.numpy(), expected) <= 1e-6
    assert optimizer.state[id(param)]["step"] == len(grads)


def test_clip_grad_norm_scales_as_torch_clip_grad_norm():
    rng = np.random.default_rng(6)
    grads = [rng.normal(0, 1, (4, 5)), rng.normal(0, 1, (7,))]
    params = [jt.zeros(g.shape) for g in grads]
    optimizer = AdamW(params, lr=0.0)
    norm = math.sqrt(sum((g ** 2).sum() for g in grads))
    optimizer.backward(sum((p * jt.array(g.astype(np.float32))).sum() for p, g in zip(params, grads)))
    optimizer.clip_grad_norm(norm / 4)
    clipped = [g.numpy() for g in optimizer.param_groups[0]["grads"]]
    for got, grad in zip(clipped, grads):
        assert max_diff(got, grad * (norm / 4) / (norm + 1e-6)) <= 1e-6


def test_optimizer_state_arrays_resume_the_same_run():
    def run(model, optimizer, steps):
        for step in range(steps):
            optimizer.set_lr(1e-3 * (step + 1))
            optimizer.step(loss_of(model, label_smooth=0.1))

    def fresh():
        model = trained(LORA)
        mark_only_adapter_as_trainable(model)
        params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        return model, params, AdamW(list(params.values()), lr=1e-3, weight_decay=0.01)

    model, params, optimizer = fresh()
    run(model, optimizer, 3)
    arrays, steps = optimizer.state_arrays(params)
    saved = model.to_arrays(adapter_only=True)
    assert steps == {name: 3 for name in params} and set(arrays) == {f"{kind}.{name}" for name in params
                                                                      for kind in ("exp_avg", "exp_avg_sq")}
    run(model, optimizer, 2)
    resumed, resumed_params, resumed_optimizer = fresh()
    resumed.load_arrays(saved, strict=False)
    resumed_optimizer.load_state_arrays(resumed_params, arrays, steps)
    run(resumed, resumed_optimizer, 2)
    finished, continued = model.to_arrays(adapter_only=True), resumed.to_arrays(adapter_only=True)
    assert all(max_diff(continued[name], finished[name]) <= 1e-7 for name in finished)
    assert any(max_diff(saved[name], finished[name]) > 1e-4 for name in finished)


def test_training_steps_keep_no_graph_alive():
    model = trained(LORA)
    mark_only_adapter_as_trainable(model)
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def lived_after(steps):
        for _ in range(steps):
            loss = loss_of(model)
            optimizer.step(loss)
            loss.item()
        del loss
        jt.sync_all()
        jt.gc()
        return jt.liveness_info()

    warm = lived_after(2)
    later = lived_after(3)
    assert later["lived_ops"] == 0, "an operation (a graph) outlives the steps"
    assert later["lived_vars"] == warm["lived_vars"], "tensors pile up from step to step"
