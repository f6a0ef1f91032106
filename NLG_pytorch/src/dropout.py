"""--dropout_rng shared: every dropout of the model takes its mask from common_data.training.dropout_masks, so
that PyTorch and Jittor drop the same units (NLG_pytorch and NLG_jittor hold mirror images of this file)."""
from torch import nn

from NLG_pytorch.src import ops

from common_data.training.dropout_masks import SharedMasks, module_key


class SharedDropout(nn.Module):
    """Dropout with probability p whose mask comes from `masks`, keyed by this module's (layer, tensor)."""

    def __init__(self, p, masks, layer, tensor):
        super().__init__()
        self.p, self.masks, self.layer, self.tensor = p, masks, layer, tensor

    def forward(self, x):
        if not ops.is_training(self) or self.p == 0:
            return x
        scale = self.masks.scale(self.layer, self.tensor, tuple(x.shape), self.p)
        return x * ops.tensor_like(scale, x)


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
