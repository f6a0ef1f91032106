"""--dropout_rng shared in the PyTorch model: every dropout takes the shared generator's mask (the Jittor trainer's
agreement with it is tested in tests/jittor/test_jittor_trainer.py)."""
import numpy as np
import torch
from torch import nn

from common_data.model.gpt2_config import AdapterConfig, GPT2Config
from common_data.training.dropout_masks import module_key
from NLG_pytorch.src.dropout import SharedDropout, use_shared_masks
from NLG_pytorch.src.model import GPT2LMModel

CONFIG = GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=2, n_head=4)
ADAPTER = AdapterConfig(adapter="jelly", lora_dim=4, lora_alpha=32, lora_dropout=0.5, jelly_mode="sequential",
                        targets=("q", "v", "c_fc"))
INPUT_IDS = torch.randint(0, CONFIG.vocab_size, (3, 10), generator=torch.Generator().manual_seed(0))


def model_with_shared_masks():
    model = GPT2LMModel(CONFIG, ADAPTER, seed=0)
    rng = np.random.default_rng(1)
    model.load_arrays({name: rng.normal(0, 0.1, a.shape).astype(np.float32)
                       for name, a in model.to_arrays(adapter_only=True).items()}, strict=False)
    return model, use_shared_masks(model, seed=7, rows=[3, 4, 5])


def test_every_dropout_is_replaced_and_draws_the_generators_mask():
    model, masks = model_with_shared_masks()
    assert not [name for name, module in model.named_modules() if type(module) is nn.Dropout]
    assert sum(isinstance(module, SharedDropout) for module in model.modules()) == 4 * CONFIG.n_layer
    masks.step = 4
    dropout = model.h[1].mlp.c_fc.lora_dropout
    x = torch.randn(3, 10, 256, generator=torch.Generator().manual_seed(2))
    expected = x.numpy() * masks.scale(1, module_key("h.1.mlp.c_fc.lora_dropout")[1], (3, 10, 256), 0.5)
    np.testing.assert_array_equal(dropout(x).numpy(), expected)
    assert torch.equal(dropout.eval()(x), x)


def test_the_masks_change_with_the_step_and_repeat_with_it():
    model, masks = model_with_shared_masks()
    outputs = []
    for step in (1, 2, 1):
        masks.step = step
        with torch.no_grad():
            outputs.append(model(INPUT_IDS)[0])
    assert torch.equal(outputs[0], outputs[2]) and not torch.equal(outputs[0], outputs[1])
    with torch.no_grad():
        assert not torch.equal(model.eval()(INPUT_IDS)[0], outputs[0])
