"""--dropout_rng shared in the PyTorch model: every dropout takes the shared generator's mask (the Jittor trainer's
agreement with it is tested in tests/jittor/test_jittor_trainer.py)."""
import numpy as np
import torch
from torch import nn

from common_data.model.gpt2_config import AdapterConfig, GPT2Config
from common_data.model.packing import pack
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


def test_a_packed_batch_drops_the_units_of_its_padded_rows_and_gives_their_loss_and_gradients():
    """The trainer runs right-padded rows packed (common_data.model.packing): the same masks, loss and gradients."""
    model, masks = model_with_shared_masks()
    masks.step = 3
    lengths = np.array([10, 4, 7])
    loss_mask = torch.from_numpy((np.arange(10) < lengths[:, None] - 1).astype(np.float32))
    results = []
    for packing in (None, pack(lengths, 10)):
        masks.lengths = None if packing is None else lengths
        model.zero_grad()
        loss = model(INPUT_IDS, targets=INPUT_IDS.roll(-1, 1), loss_mask=loss_mask, packing=packing)[1]
        loss.backward()
        results.append((loss.item(), {name: param.grad.clone() for name, param in model.named_parameters()
                                      if param.grad is not None}))
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    assert abs(packed_loss - padded_loss) <= 1e-6
    assert packed_grads.keys() == padded_grads.keys() and padded_grads
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
