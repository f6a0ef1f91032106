"""Adapters of the Jittor model in peft's format, both ways (model_process.py export-peft / import-peft in the Jittor
environment, peft itself in the torch environment's process, tests/jittor/peft_side.py): a Jittor adapter exported
gives the Jittor model's logits within 1e-5 in PeftModel.from_pretrained, and a peft adapter imported gives peft's
logits within 1e-5 in the Jittor model."""
import subprocess

import jittor as jt
import numpy as np

import model_process
from common_data.model.checkpoint import checkpoint_metadata, load_model_checkpoint, save_model_checkpoint, save_tensors
from common_data.model.gpt2_config import AdapterConfig, GPT2Config
from common_data.model.init_params import init_base_params
from common_data.util.paths import REPO_ROOT
from NLG_jittor.src.model import GPT2LMModel

TOLERANCE = 1e-5
CONFIG = GPT2Config(vocab_size=300, n_positions=32, n_embd=32, n_layer=2, n_head=4)
EXPORTED = {
    "lora_q_v_c_fc": AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32, targets=("q", "v", "c_fc")),
    "dora_c_attn": AdapterConfig(adapter="dora", lora_dim=4, lora_alpha=16, targets=("c_attn",)),
}
IDS = np.random.default_rng(0).integers(0, CONFIG.vocab_size, (2, 16))


def jittor_logits(model):
    with jt.no_grad():
        return model.eval()(jt.array(IDS))[0].numpy()


def test_jittor_adapters_in_peft_both_ways(tmp_path):
    base = init_base_params(CONFIG, 1)
    save_tensors(tmp_path / "base.safetensors", base, {"config": CONFIG.to_dict()})
    assert model_process.main(["export-hf", str(tmp_path / "base.safetensors"), str(tmp_path / "hf")]) == 0
    np.save(tmp_path / "ids.npy", IDS)
    ours = {}
    for name, adapter in EXPORTED.items():
        model = GPT2LMModel(CONFIG, adapter, seed=0, base_arrays=base)
        rng = np.random.default_rng(1)  # nonzero A and B, as after training
        model.load_arrays({key: rng.normal(0, 0.1, a.shape).astype(np.float32) + (a if "magnitude" in key else 0)
                           for key, a in model.to_arrays(adapter_only=True).items()}, strict=False)
        ours[name] = jittor_logits(model)
        checkpoint = save_model_checkpoint(tmp_path / name, 1, model.to_arrays(adapter_only=True),
                                           checkpoint_metadata(CONFIG, adapter, "parallel", step=1))
        assert model_process.main(["export-peft", str(checkpoint), str(tmp_path / "exports" / name),
                                   "--base_model", str(tmp_path / "hf")]) == 0
    subprocess.run([str(REPO_ROOT / "environments" / "run"), "torch", "python", str(REPO_ROOT / "tests" / "jittor" /
                    "peft_side.py"), str(tmp_path / "hf"), str(tmp_path)], cwd=REPO_ROOT, check=True,
                   capture_output=True)
    for name in EXPORTED:
        difference = np.abs(np.load(tmp_path / "exports" / f"{name}.npy") - ours[name]).max()
        print(f"Jittor -> peft: {name}: {difference:.3g}")
        assert difference < TOLERANCE

    assert model_process.main(["import-peft", str(tmp_path / "made"), str(tmp_path / "made.safetensors"), "--base",
                               str(tmp_path / "base.safetensors")]) == 0
    arrays, metadata = load_model_checkpoint(tmp_path / "made.safetensors")
    model = GPT2LMModel(CONFIG, AdapterConfig.from_dict(metadata["adapter_config"]), seed=0, base_arrays=base)
    model.load_arrays(arrays, strict=False)
    difference = np.abs(jittor_logits(model) - np.load(tmp_path / "made.npy")).max()
    print(f"peft -> Jittor: rslora c_attn,mlp.c_fc: {difference:.3g}")
    assert difference < TOLERANCE
