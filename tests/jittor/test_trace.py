"""The layer-by-layer trace finds divergences planted in a Jittor model or optimizer built here (never in the
shipped code), charges each to the right module, and finds none in the shipped models.

The PyTorch traces (float32 and float64, NLG_pytorch/src/trace_hooks.py in the torch environment) are recorded
once per adapter kind and reused by every planted case; each Jittor trace runs here, in this process.
"""
import math
import os
import subprocess

import numpy as np
import pytest

from alignment import trace
from common_data.model.checkpoint import load_tensors
from common_data.util.paths import REPO_ROOT
from common_data.trace.start import training_start
from NLG_jittor.src import ops as jittor_ops
from NLG_jittor.src import trace_hooks
from NLG_jittor.src.model import CausalSelfAttention
from NLG_jittor.src.optimizer import AdamW, adamw_from_args


def run_torch_recorder(argv, output):
    env = {key: value for key, value in os.environ.items() if key not in ("NLG_FRAMEWORK", "VIRTUAL_ENV")}
    command = [str(REPO_ROOT / "environments" / "run"), "torch", "python",
               str(REPO_ROOT / "NLG_pytorch" / "src" / "trace_hooks.py"), *argv, "--output", str(output)]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"torch recorder failed:\n{result.stderr[-4000:]}"
    return load_tensors(output)[0]


@pytest.fixture(scope="module")
def references(trace_inputs):
    """reference(adapter): (recorder argv, torch float32 trace, torch float64 trace, layers), recorded once."""
    folder, recorder_argv, n_layer = trace_inputs
    cache = {}

    def reference(adapter):
        if adapter not in cache:
            argv = recorder_argv(adapter)
            cache[adapter] = (argv, run_torch_recorder(argv, folder / f"{adapter}_torch.safetensors"),
                              run_torch_recorder([*argv, "--float64"], folder / f"{adapter}_torch64.safetensors"),
                              n_layer)
        return cache[adapter]
    return reference


def jittor_trace(argv, plant=None, isolate=None):
    """A Jittor trace of the model (and optimizer) that `plant` changes."""
    args = trace_hooks.parse_args([*argv, "--output", "unused"])
    start = training_start(None)
    model = trace_hooks.make_model(args, start)
    trainable = trace_hooks.probe.trainable(model)
    optimizer = (plant(model, list(trainable.values()), args) if plant else None) or adamw_from_args(trainable, args)
    return trace_hooks.trace(model, optimizer, args, start, isolate)[0]


def layer_norm_eps(model, params, args):
    model.h[2].ln_1.eps = 1e-3


def exact_gelu(model, params, args):
    mlp = model.h[1].mlp
    mlp.execute = lambda x: mlp.c_proj(jittor_ops.nn.gelu(mlp.c_fc(x)))


def attention_scale_off_by_one(model, params, args):
    """Every attention divides its scores by sqrt(head_dim + 1) instead of sqrt(head_dim)."""
    shipped = jittor_ops.attention

    def off_by_one(query, key, value, mask=None):
        head_dim = query.shape[-1]
        return shipped(query * math.sqrt(head_dim / (head_dim + 1)), key, value, mask)

    for block in model.h:
        attention = block.attn

        def execute(x, past=None, mask=None, tokens=None, past_rows=None, attention=attention):
            jittor_ops.attention = off_by_one
            try:
                return CausalSelfAttention.execute(attention, x, past, mask, tokens, past_rows)
            finally:
                jittor_ops.attention = shipped

        attention.execute = execute


def lora_scale_squared_on_v(model, params, args):
    """alpha / r^2 instead of alpha / r on the v slice of every c_attn."""
    for block in model.h:
        layer = block.attn.c_attn
        shipped = layer.low_rank_update
        start, stop = layer.slices["v"]
        columns = np.ones(layer.weight.shape[1], np.float32)
        columns[start:stop] = 1.0 / layer.lora_A["v"].shape[0]
        layer.low_rank_update = lambda x, shipped=shipped, columns=columns: shipped(x) * jittor_ops.jt.array(columns)


def adamw_without_bias_correction(model, params, args):
    return AdamW(params, lr=args.lr, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epislon,
                 weight_decay=args.weight_decay, correct_bias=not args.correct_bias)


def attn_c_proj_transposed(model, params, args):
    layer = model.h[1].attn.c_proj
    layer.execute = lambda x: x @ layer.weight.t() + layer.bias


ATTENTIONS = ["h.0.attn", "h.1.attn", "h.2.attn"]
C_ATTNS = ["h.0.attn.c_attn", "h.1.attn.c_attn", "h.2.attn.c_attn"]
# plant: (pass, first module, modules over the tolerance under --isolate in that pass, and in the backward pass)
PLANTS = {
    "layer_norm_eps": (layer_norm_eps, "forward", "h.2.ln_1", ["h.2.ln_1"]),
    "exact_gelu": (exact_gelu, "forward", "h.1.mlp", ["h.1.mlp"]),
    "attention_scale": (attention_scale_off_by_one, "forward", "h.0.attn", ATTENTIONS),
    "lora_scale_v": (lora_scale_squared_on_v, "forward", "h.0.attn.c_attn", C_ATTNS),
    "adamw_bias_correction": (adamw_without_bias_correction, "update", "h.0.attn.c_attn.lora_A.q", None),
    "attn_c_proj_transposed": (attn_c_proj_transposed, "forward", "h.1.attn.c_proj", ["h.1.attn.c_proj"]),
}


def findings(arrays, torch32, torch64, n_layer):
    stats = trace.compare(arrays, torch32, torch64)
    return trace.verdict(stats, 1, n_layer, trace.trained_parameters(torch32)), stats


@pytest.mark.parametrize("adapter", ["jelly", "lora"])
def test_the_shipped_models_diverge_nowhere(adapter, references):
    argv, torch32, torch64, n_layer = references(adapter)
    arrays = jittor_trace(argv)
    assert set(arrays) == set(torch32)
    found, stats = findings(arrays, torch32, torch64, n_layer)
    assert found.findings == [], [finding.sentence() for finding in found.findings]
    assert not any(s.bit_exact for key, s in stats.items() if key.startswith("1/backward/h.1."))
    isolated = trace.compare(jittor_trace(argv, isolate=torch32), torch32, torch64)
    assert trace.own_errors(isolated, 1, n_layer, trace.trained_parameters(torch32)) == {
        "forward": [], "backward": [], "update": []}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_the_trace_names_the_planted_module_and_isolate_shows_it_alone(plant, references):
    argv, torch32, torch64, n_layer = references("lora")
    change, phase, module, isolated_modules = PLANTS[plant]
    found, _ = findings(jittor_trace(argv, change), torch32, torch64, n_layer)
    first = found.findings[0]
    assert (found.step, first.phase, first.name, first.introduced) == (1, phase, module, True), first.sentence()
    if phase == "forward":
        assert found.backward is not None and not found.backward.introduced
    isolated = trace.compare(jittor_trace(argv, change, isolate=torch32), torch32, torch64)
    own = trace.own_errors(isolated, 1, n_layer, trace.trained_parameters(torch32))
    if phase == "update":
        assert own == {"forward": [], "backward": [], "update": trace.trained_parameters(torch32)}
    else:
        assert (own["forward"], sorted(own["backward"]), own["update"]) == (isolated_modules, isolated_modules, [])
