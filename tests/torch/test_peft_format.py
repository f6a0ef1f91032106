"""model_process.py export-peft / import-peft against Hugging Face peft on a random GPT-2 that transformers writes:
an adapter trained here, exported, loads with PeftModel.from_pretrained and gives our logits within 1e-5; an adapter
trained with peft, imported, gives peft's logits within 1e-5; export then import gives the checkpoint back bit for bit;
bad folders and bases are refused with one line."""
import json

import numpy as np
import peft
import pytest
import torch
import transformers

import model_process
from common_data.model.adapter_math.adalora import AllocatorConfig
from common_data.model.checkpoint import checkpoint_metadata, load_model_checkpoint, load_tensors, save_model_checkpoint
from common_data.model.gpt2_config import AdapterConfig, GPT2Config
from common_data.model.init_params import init_base_params
from common_data.model.checkpoint import save_tensors
from NLG_pytorch.src.adapters import RankAllocator, mark_only_adapter_as_trainable
from NLG_pytorch.src.model import GPT2LMModel

TOLERANCE = 1e-5
VOCAB = 300
HF_CONFIG = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0,
                 attn_pdrop=0.0)
STEPS = 3
# the configurations trained here and exported
OURS = {
    "lora q,v": AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32, targets=("q", "v")),
    "lora c_attn": AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=16, targets=("c_attn",)),
    "lora k,c_proj,c_fc,mlp_proj": AdapterConfig(adapter="lora", lora_dim=2, lora_alpha=8,
                                                 targets=("k", "c_proj", "c_fc", "mlp_proj")),
    "rslora q,v": AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=16, targets=("q", "v"), use_rslora=True),
    "dora c_attn,mlp_proj": AdapterConfig(adapter="dora", lora_dim=4, lora_alpha=16, targets=("c_attn", "mlp_proj")),
    "pissa q,v": AdapterConfig(adapter="pissa", lora_dim=4, lora_alpha=16, targets=("q", "v")),
    "adalora q,v,c_fc": AdapterConfig(adapter="adalora", lora_dim=4, lora_alpha=16, targets=("q", "v", "c_fc")),
}
# masks triplets at steps 1 to 3 (the budget falls to target_r per slice), so that the export has a rank pattern
ALLOCATOR = AllocatorConfig(target_r=2, tinit=0, tfinal=1, delta_t=1, beta1=0.85, beta2=0.85, orth_reg_weight=0.5,
                            total_step=STEPS + 1)
# the configurations trained with peft and imported
THEIRS = {
    "lora c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj": peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"], fan_in_fan_out=True,
        rank_pattern={"mlp.c_fc": 2}, alpha_pattern={"mlp.c_fc": 4}),
    "rslora c_attn": peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True,
                                     use_rslora=True),
    "dora c_attn,mlp.c_proj": peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "mlp.c_proj"],
                                              fan_in_fan_out=True, use_dora=True),
    "adalora c_attn,mlp.c_fc": peft.AdaLoraConfig(init_r=4, target_r=2, lora_alpha=8, fan_in_fan_out=True,
                                                  target_modules=["c_attn", "mlp.c_fc"], total_step=STEPS + 1,
                                                  tinit=0, tfinal=1, deltaT=1),
}
LARGEST_DIFFERENCES = {}


@pytest.fixture(scope="module")
def base(random_hf_gpt2):
    """(GPT2Config, checkpoint arrays, HF folder, base .safetensors) of a random GPT2LMHeadModel from transformers."""
    folder = random_hf_gpt2(HF_CONFIG)
    arrays, metadata = load_tensors(folder / "base.safetensors")
    return GPT2Config.from_dict(metadata["config"]), arrays, folder, folder / "base.safetensors"


def input_ids():
    return torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(7))


def train_ours(base, adapter_config, folder):
    """An adapter checkpoint after STEPS Adam steps of our model (AdaLoRA with its rank allocator)."""
    config, arrays, _, _ = base
    model = GPT2LMModel(config, adapter_config, seed=3, base_arrays=arrays)
    mark_only_adapter_as_trainable(model)
    params = {name: param for name, param in model.named_parameters() if param.requires_grad}
    optimizer = torch.optim.Adam(params.values(), lr=0.05)
    allocator = RankAllocator(model, ALLOCATOR) if adapter_config.adapter == "adalora" else None
    for step in range(1, STEPS + 1):
        ids = input_ids()
        model(ids, targets=ids, loss_mask=torch.ones(ids.shape))[1].backward()
        optimizer.step()
        if allocator is not None:
            allocator.update_and_allocate(step, {name: param.grad for name, param in params.items()})
        optimizer.zero_grad()
    model.eval()
    metadata = checkpoint_metadata(config, adapter_config, "parallel", step=STEPS)
    return model, save_model_checkpoint(folder, STEPS, model.to_arrays(adapter_only=True), metadata)


def peft_logits(hf_folder, adapter_folder):
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(hf_folder, attn_implementation="eager")
    model = peft.PeftModel.from_pretrained(hf_model, adapter_folder).eval()
    with torch.no_grad():
        return model(input_ids=input_ids()).logits


def our_logits(base, checkpoint):
    config, arrays, _, _ = base
    adapters, metadata = load_model_checkpoint(checkpoint)
    adapter_config = AdapterConfig.from_dict(metadata["adapter_config"])
    model = GPT2LMModel(config, adapter_config, seed=0, base_arrays=arrays).eval()
    model.load_arrays(adapters, strict=False)
    with torch.no_grad():
        return model(input_ids())[0]


def without_masked_triplets(arrays):
    """AdaLoRA's arrays with the triplets its masks zeroed (Λ = 0, or -0) +0 in A, Λ and B, as peft's folder leaves
    them."""
    arrays = dict(arrays)
    for name in [name for name in arrays if ".lora_E." in name]:
        kept = arrays[name][:, 0] != 0
        for kind, where in ((".lora_A.", kept[:, None]), (".lora_E.", kept[:, None]), (".lora_B.", kept[None, :])):
            arrays[name.replace(".lora_E.", kind)] = np.where(where, arrays[name.replace(".lora_E.", kind)], np.float32(0))
    return arrays


@pytest.mark.parametrize("method", OURS)
def test_export_loads_in_peft_and_imports_back_bit_for_bit(method, base, tmp_path):
    _, _, hf_folder, base_path = base
    model, checkpoint = train_ours(base, OURS[method], tmp_path / "run")
    with torch.no_grad():
        ours = model(input_ids())[0]
    assert model_process.main(["export-peft", str(checkpoint), str(tmp_path / "peft"), "--base_model",
                               str(hf_folder)]) == 0
    difference = (peft_logits(hf_folder, tmp_path / "peft") - ours).abs().max().item()
    LARGEST_DIFFERENCES[f"ours -> peft: {method}"] = difference
    assert difference < TOLERANCE

    assert model_process.main(["import-peft", str(tmp_path / "peft"), str(tmp_path / "back.safetensors"), "--base",
                               str(base_path)]) == 0
    original, metadata = load_model_checkpoint(checkpoint)
    back, back_metadata = load_model_checkpoint(tmp_path / "back.safetensors")
    if OURS[method].adapter == "adalora":
        assert any((a[:, 0] == 0).any() for name, a in original.items() if ".lora_E." in name), "nothing was masked"
        original = without_masked_triplets(original)
    assert back_metadata == metadata
    assert sorted(back) == sorted(original)
    for name, array in original.items():
        assert back[name].dtype == array.dtype and back[name].tobytes() == array.tobytes(), name


def train_theirs(base, peft_config, folder):
    """A peft adapter folder after STEPS Adam steps of peft's model (AdaLoRA with peft's rank allocator), and its
    logits."""
    _, _, hf_folder, _ = base
    torch.manual_seed(4)
    hf_model = transformers.GPT2LMHeadModel.from_pretrained(hf_folder, attn_implementation="eager")
    model = peft.get_peft_model(hf_model, peft_config)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for step in range(STEPS):
        ids = input_ids()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        if isinstance(peft_config, peft.AdaLoraConfig):
            model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=input_ids()).logits
    model.save_pretrained(folder)
    return logits


@pytest.mark.parametrize("method", THEIRS)
def test_peft_adapter_imports_with_peft_s_logits(method, base, tmp_path):
    _, _, _, base_path = base
    theirs = train_theirs(base, THEIRS[method], tmp_path / "peft")
    assert model_process.main(["import-peft", str(tmp_path / "peft"), str(tmp_path / "ours.safetensors"), "--base",
                               str(base_path)]) == 0
    difference = (our_logits(base, tmp_path / "ours.safetensors") - theirs).abs().max().item()
    LARGEST_DIFFERENCES[f"peft -> ours: {method}"] = difference
    assert difference < TOLERANCE


@pytest.fixture
def exported(base, tmp_path):
    _, checkpoint = train_ours(base, OURS["lora q,v"], tmp_path / "run")
    assert model_process.main(["export-peft", str(checkpoint), str(tmp_path / "peft"), "--base_model", "gpt2"]) == 0
    return tmp_path / "peft", checkpoint


def refusal(capsys, argv):
    assert model_process.main([str(arg) for arg in argv]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("model_process.py: error: "), lines
    return lines[0]


def test_unknown_key_is_refused(exported, base, tmp_path, capsys):
    folder, _ = exported
    tensors = load_tensors(folder / "adapter_model.safetensors")[0]
    tensors["base_model.model.transformer.h.0.attn.c_attn.lora_X.weight"] = np.zeros((4, 32), np.float32)
    save_tensors(folder / "adapter_model.safetensors", tensors)
    line = refusal(capsys, ["import-peft", folder, tmp_path / "out.safetensors", "--base", base[3]])
    assert "unknown tensor base_model.model.transformer.h.0.attn.c_attn.lora_X.weight" in line
    assert not (tmp_path / "out.safetensors").exists()


def test_missing_config_is_refused(exported, base, tmp_path, capsys):
    folder, _ = exported
    (folder / "adapter_config.json").unlink()
    line = refusal(capsys, ["import-peft", folder, tmp_path / "out.safetensors", "--base", base[3]])
    assert f"{folder / 'adapter_config.json'}: missing" in line


def test_mismatched_base_is_refused_both_ways(exported, base, tmp_path, capsys):
    folder, checkpoint = exported
    other = GPT2Config(vocab_size=VOCAB, n_positions=32, n_embd=16, n_layer=2, n_head=4)
    save_tensors(tmp_path / "other.safetensors", init_base_params(other, 0), {"config": other.to_dict()})
    line = refusal(capsys, ["import-peft", folder, tmp_path / "out.safetensors", "--base", tmp_path / "other.safetensors"])
    assert "do not fit --base" in line and "2 layers x 16" in line
    (tmp_path / "other_hf").mkdir()
    (tmp_path / "other_hf" / "config.json").write_text(json.dumps(other.to_hf()))
    line = refusal(capsys, ["export-peft", checkpoint, tmp_path / "again", "--base_model", tmp_path / "other_hf"])
    assert "2 layers x 32" in line and "2 layers x 16" in line
    assert not (tmp_path / "again").exists()


def test_what_peft_cannot_express_is_refused(base, tmp_path, capsys):
    _, checkpoint = train_ours(base, AdapterConfig(adapter="dora", lora_dim=2, lora_alpha=4, targets=("q", "v")),
                               tmp_path / "run")
    line = refusal(capsys, ["export-peft", checkpoint, tmp_path / "peft", "--base_model", "gpt2"])
    assert "DoRA on the q, v slices of c_attn" in line


def test_report_largest_differences():
    """Prints the largest logit difference of each method (pytest -s), for the record."""
    for name, difference in LARGEST_DIFFERENCES.items():
        print(f"{name}: {difference:.3g}")
