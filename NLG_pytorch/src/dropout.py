"""--dropout_rng shared: every dropout of the model takes its mask from common_data.training.dropout_masks, so
that PyTorch and Jittor drop the same units; NLG_jittor/src/dropout.py is the mirror image."""
import torch
from torch import nn

from common_data.training.dropout_masks import SharedMasks, module_key


class SharedDropout(nn.Module):
    """Dropout with probability p whose mask comes from `masks`, keyed by this module's (layer, tensor)."""

    def __init__(self, p, masks, layer, tensor):
        super().__init__()
        self.p, self.masks, self.layer, self.tensor = p, masks, layer, tensor

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        scale = self.masks.scale(self.layer, self.tensor, tuple(x.shape), self.p)
        return x * torch.from_numpy(scale).to(device=x.device, dtype=x.dtype)


def use_shared_masks(model, seed, rows):
    """Replace every nn.Dropout of `model` by a SharedDropout; returns the SharedMasks whose step the trainer
    sets before each batch. rows: the rows of the global batch that this rank's batches hold."""
    masks = SharedMasks(seed, rows)
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout):
                layer, tensor = module_key(f"{parent_name}.{name}" if parent_name else name)
                setattr(parent, name, SharedDropout(child.p, masks, layer, tensor))
    return masks
