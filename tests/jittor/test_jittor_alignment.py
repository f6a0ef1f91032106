"""The Jittor model against the PyTorch one, number by number.

Both probes (NLG_pytorch/src/probe.py in the torch environment, NLG_jittor/src/probe.py here) run on the same
base weights (the seed's), the same adapter checkpoint and the same rows; they exchange only files.
"""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from common_data.model.checkpoint import load_tensors, save_tensors
from common_data.model.gpt2_config import AdapterConfig, config_for_card
from common_data.model.plan import base_param_shapes
from common_data.model.init_params import init_adapter_params
from common_data.util.paths import REPO_ROOT
from NLG_jittor.src import probe

CARD = "gpt2.tiny"
STEPS = 20
SWITCH_STEP = 10
COMMON = ["--model_card", CARD, "--rows", "8", "--batch_size", "4", "--seq_len", "64", "--random_seed", "3",
          "--label_smooth", "0.1", "--steps", str(STEPS), "--lr", "0.002", "--correct_bias", "--adam_beta2", "0.999",
          "--warmup_step", "3", "--weight_decay", "0.01", "--clip", "1.0"]
RUNS = {
    "lora": (AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32),
             ["--adapter", "lora", "--lora_dim", "4", "--lora_alpha", "32"]),
    "seq2par": (AdapterConfig(adapter="jelly", lora_dim=4, lora_alpha=32, jelly_mode="seq2par",
                              targets=("q", "v", "c_fc")),
                ["--adapter", "jelly", "--jelly_mode", "seq2par", "--lora_dim", "4", "--lora_alpha", "32",
                 "--lora_targets", "q,v,c_fc", "--switch_step", str(SWITCH_STEP)]),
    "c_attn rslora loraplus": (AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32, targets=("c_attn", "mlp_proj"),
                                             use_rslora=True),
                               # rsLoRA's scale 16 and B's 4x lr at lr 0.002 amplify float32 noise within 20 steps
                               # (the losses part 3e-2 by step 20 from 3e-6 at step 6): a quarter of the lr
                               ["--adapter", "lora", "--lora_dim", "4", "--lora_alpha", "32", "--lora_targets",
                                "c_attn,mlp_proj", "--use_rslora", "--loraplus_lr_ratio", "4", "--lr", "0.0005"]),
    "bitfit": (AdapterConfig(adapter="bitfit"), ["--adapter", "bitfit"]),
    "dora": (AdapterConfig(adapter="dora", lora_dim=4, lora_alpha=32, targets=("c_attn", "mlp_proj")),
             ["--adapter", "dora", "--lora_dim", "4", "--lora_alpha", "32", "--lora_targets", "c_attn,mlp_proj"]),
    "pissa": (AdapterConfig(adapter="pissa", lora_dim=4, lora_alpha=32, targets=("q", "v", "c_fc")),
              ["--adapter", "pissa", "--lora_dim", "4", "--lora_alpha", "32", "--lora_targets", "q,v,c_fc"]),
    "adalora": (AdapterConfig(adapter="adalora", lora_dim=4, lora_alpha=32, targets=("c_attn", "c_fc")),
                ["--adapter", "adalora", "--lora_dim", "4", "--lora_alpha", "32", "--lora_targets", "c_attn,c_fc"]),
}


def write_rows(path, count=8, seed=0):
    """Encoded examples of random token ids, as common_data's encoder writes them."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(count):
            context = rng.integers(0, 50257, rng.integers(5, 20)).tolist()
            completion = rng.integers(0, 50257, rng.integers(5, 30)).tolist()
            handle.write(json.dumps({"context": context, "completion": completion}) + "\n")


def write_random_adapters(path, adapter_config, seed=7):
    """Adapters with nonzero A and B (fresh ones have B = 0, which leaves A without gradient)."""
    rng = np.random.default_rng(seed)
    shapes = init_adapter_params(config_for_card(CARD), adapter_config, seed=0)
    save_tensors(path, {name: rng.normal(0, 0.05, a.shape).astype(np.float32) for name, a in shapes.items()})


def run_torch_probe(argv):
    """NLG_pytorch/src/probe.py in the torch environment, as a separate process."""
    env = {key: value for key, value in os.environ.items() if key not in ("NLG_FRAMEWORK", "VIRTUAL_ENV")}
    command = [str(REPO_ROOT / "environments" / "run"), "torch", "python",
               str(REPO_ROOT / "NLG_pytorch" / "src" / "probe.py"), *argv]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"torch probe failed:\n{result.stderr[-4000:]}"


@pytest.fixture(scope="module", params=sorted(RUNS))
def probes(request, tmp_path_factory):
    """(torch outputs, jittor outputs, their metadata, run name) of one adapter configuration."""
    adapter_config, adapter_argv = RUNS[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    write_rows(folder / "rows.jsonl")
    write_random_adapters(folder / "adapters.safetensors", adapter_config)
    argv = [*COMMON, *adapter_argv, "--data", str(folder / "rows.jsonl"),
            "--adapter_checkpoint", str(folder / "adapters.safetensors")]
    run_torch_probe([*argv, "--output", str(folder / "torch.safetensors")])
    assert probe.main([*argv, "--output", str(folder / "jittor.safetensors")]) == 0
    torch_outputs, torch_metadata = load_tensors(folder / "torch.safetensors")
    jittor_outputs, jittor_metadata = load_tensors(folder / "jittor.safetensors")
    assert (torch_metadata["framework"], jittor_metadata["framework"]) == ("torch", "jittor")
    return torch_outputs, jittor_outputs, (torch_metadata, jittor_metadata), request.param


def max_diff(a, b):
    return float(np.abs(a.astype(np.float64) - b).max())


def test_logits_and_loss_match_torch(probes):
    torch_outputs, jittor_outputs, _, _ = probes
    assert jittor_outputs["logits"].shape == torch_outputs["logits"].shape
    assert jittor_outputs["logits"].shape[-1] == config_for_card(CARD).vocab_size
    assert max_diff(jittor_outputs["logits"], torch_outputs["logits"]) <= 1e-5
    assert max_diff(jittor_outputs["loss"], torch_outputs["loss"]) <= 1e-5


def test_adapter_gradients_match_torch(probes):
    torch_outputs, jittor_outputs, _, run = probes
    names = sorted(name for name in torch_outputs if name.startswith("grad."))
    assert names == sorted(name for name in jittor_outputs if name.startswith("grad."))
    adapter_config = RUNS[run][0]
    tensors = [*base_param_shapes(config_for_card(CARD)), *init_adapter_params(config_for_card(CARD), adapter_config, 0)]
    assert names == sorted(f"grad.{name}" for name in tensors if adapter_config.trains(name))
    for name in names:
        scale = np.abs(torch_outputs[name]).max()
        assert scale > 0, f"{name}: no gradient, nothing compared"
        # float32 sums over the batch in another order: up to ~2e-5 of the largest gradient (c_attn's B under
        # rsLoRA's scale 16: 9.3e-7 of 0.045); a wrong formula is off by far more than 5e-5
        assert max_diff(jittor_outputs[name], torch_outputs[name]) <= 5e-5 * scale, name


def test_every_training_loss_matches_torch(probes):
    torch_outputs, jittor_outputs, _, _ = probes
    torch_losses, jittor_losses = torch_outputs["step_losses"], jittor_outputs["step_losses"]
    assert torch_losses.shape == jittor_losses.shape == (STEPS,)
    assert torch_losses[-1] < torch_losses[0] - 0.1, "the steps should train the adapters"
    assert max_diff(jittor_losses, torch_losses) <= 1e-4
    for name in (name for name in torch_outputs if name.startswith("trained.")):
        assert jittor_outputs[name].shape == torch_outputs[name].shape, name
        assert max_diff(jittor_outputs[name], torch_outputs[name]) <= 1e-4 * np.abs(torch_outputs[name]).max(), name


def test_seq2par_switch_keeps_the_logits_in_both_frameworks(probes):
    torch_outputs, jittor_outputs, metadata, run = probes
    if run != "seq2par":
        assert "switch.logits_before" not in jittor_outputs
        return
    for outputs in (torch_outputs, jittor_outputs):
        assert max_diff(outputs["switch.logits_after"], outputs["switch.logits_before"]) <= 1e-5
    # after SWITCH_STEP updates the weights differ by what the training steps let drift (see the losses)
    assert max_diff(jittor_outputs["switch.logits_after"], torch_outputs["switch.logits_after"]) <= 1e-4
    assert [m["adapter_mode"] for m in metadata] == ["parallel", "parallel"]
    assert jittor_outputs["trained.h.0.mlp.c_fc.lora_A.c_fc"].shape == (4, config_for_card(CARD).n_embd)


def test_the_jittor_probe_ran_without_torch(probes):
    assert "torch" not in sys.modules and importlib.util.find_spec("torch") is None
