"""model_process.py against real transformers: import-hf gives HF's logits, export-hf loads back in HF."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from common_data.model.checkpoint import checkpoint_metadata, load_tensors, save_model_checkpoint
from common_data.model.gpt2_config import AdapterConfig, GPT2Config
from NLG_pytorch.src.adapters import adapter_mode, switch_to_parallel
from NLG_pytorch.src.model import GPT2LMModel

VOCAB = 500
TOLERANCE = 1e-5


def run_model_process(*args):
    subprocess.run([sys.executable, "-m", "model_process", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def hf_model():
    """A random GPT2LMHeadModel whose every weight (biases, layer norms too) is far from its default."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=64)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def input_ids():
    return torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def imported(hf_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(folder)
    out = folder / "base.safetensors"
    run_model_process("import-hf", folder, out)
    return out


def load_ours(path, adapter=AdapterConfig()):
    arrays, metadata = load_tensors(path)
    return GPT2LMModel(GPT2Config.from_dict(metadata["config"]), adapter, base_arrays=arrays).eval()


def hf_logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids).logits


def our_logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids)[0]


def test_import_safetensors_gives_hf_logits(hf_model, imported, input_ids):
    arrays, metadata = load_tensors(imported)
    assert GPT2Config.from_dict(metadata["config"]) == GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=64,
                                                                  n_layer=2, n_head=4)
    assert not any(name.startswith("transformer.") or "lm_head" in name for name in arrays)
    diff = (our_logits(load_ours(imported), input_ids) - hf_logits(hf_model, input_ids)).abs().max().item()
    assert diff <= TOLERANCE


def test_import_pytorch_bin_gives_hf_logits(hf_model, input_ids, tmp_path):
    # transformers 5 writes only safetensors: write the old format as the hub's pytorch_model.bin has it
    hf_model.config.save_pretrained(tmp_path)
    torch.save(hf_model.state_dict(), tmp_path / "pytorch_model.bin")
    out = tmp_path / "base.safetensors"
    run_model_process("import-hf", tmp_path / "pytorch_model.bin", out)
    diff = (our_logits(load_ours(out), input_ids) - hf_logits(hf_model, input_ids)).abs().max().item()
    assert diff <= TOLERANCE


def test_import_rejects_unknown_tensor_and_unsupported_config(hf_model, tmp_path):
    hf_model.save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    hf_config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**hf_config, "activation_function": "relu"}))
    result = subprocess.run([sys.executable, "-m", "model_process", "import-hf", str(tmp_path),
                             str(tmp_path / "out.safetensors")], capture_output=True, text=True)
    assert result.returncode != 0
    assert "activation_function" in result.stderr and "config.json" in result.stderr
    assert not (tmp_path / "out.safetensors").exists()


def random_adapter(model, seed):
    """Nonzero A and B, as after training."""
    rng = np.random.default_rng(seed)
    trained = {name: rng.normal(0, 0.05, array.shape).astype(np.float32)
               for name, array in model.to_arrays(adapter_only=True).items()}
    model.load_arrays(trained, strict=False)


ADAPTERS = {
    "lora q,v": (AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32), False),
    "lora k,c_fc,mlp_proj": (AdapterConfig(adapter="lora", lora_dim=2, lora_alpha=8, targets=("k", "c_fc", "mlp_proj")),
                             False),
    "jelly sequential": (AdapterConfig(adapter="jelly", lora_dim=4, lora_alpha=32, jelly_mode="sequential",
                                       targets=("q", "v", "c_proj", "c_fc")), False),
    "jelly seq2par after switch": (AdapterConfig(adapter="jelly", lora_dim=4, lora_alpha=32, jelly_mode="seq2par",
                                                 targets=("q", "v", "c_fc")), True),
}


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_export_with_adapter_loads_in_transformers(name, imported, input_ids, tmp_path):
    adapter, switch = ADAPTERS[name]
    model = load_ours(imported, adapter)
    random_adapter(model, seed=2)
    if switch:
        switch_to_parallel(model)
    checkpoint = save_model_checkpoint(tmp_path, 10, model.to_arrays(adapter_only=True),
                                       checkpoint_metadata(model.config, adapter, adapter_mode(model), step=10))
    run_model_process("export-hf", imported, tmp_path / "hf", "--adapter", checkpoint)
    exported = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    ours = our_logits(model, input_ids)
    base = our_logits(load_ours(imported), input_ids)
    assert (ours - base).abs().max().item() > 1e-2, "the adapter should change the logits"
    assert (hf_logits(exported, input_ids) - ours).abs().max().item() <= TOLERANCE


def test_export_without_adapter_round_trips(hf_model, imported, input_ids, tmp_path):
    run_model_process("export-hf", imported, tmp_path)
    exported = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert torch.equal(hf_logits(exported, input_ids), hf_logits(hf_model, input_ids))
