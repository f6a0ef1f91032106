"""LoRA and JELLY adapters on GPT-2's Conv1D layers, loralib style.

For a frozen base weight W (d_out x d_in; stored as Conv1D weight Wc = W^T, [d_in, d_out]), bias b,
adapter matrices A, B and scale s = alpha / r, each adapted output slice of a layer adds:
- parallel (LoRA, JELLY parallel):   s * B A x,        A is r x d_in
- sequential (JELLY):                s * B A (W_s x),  A is r x d_out, W_s the slice's own rows of W
JELLY seq2par starts sequential and switches to parallel with A <- A W_s, which keeps the output.
Dropout acts on the adapter input (x, or W x in sequential mode).
DoRA (peft's use_dora) rescales each adapted output feature of W x + s B A x by m / ||W + s B A||, the norm
detached; PiSSA is parallel LoRA on a residual base (both start from common_data/adapter_math's numbers).
"""
import torch
from torch import nn

from common_data.gpt2_config import adapted_slices, adapter_shapes, layer_shapes


class AdaptedConv1D(nn.Module):
    """GPT-2's Conv1D (x Wc + b) with low-rank adapters on some of its output slices."""

    def __init__(self, d_in, d_out, adapter_config, slices):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self.bias = nn.Parameter(torch.empty(d_out))
        self.slices = {s.target: (s.start, s.stop) for s in slices}
        self.mode = adapter_config.initial_mode if slices else "full"
        self.scale = adapter_config.scale if slices else 0.0
        self.merged = False
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        for adapted in slices:
            shape_a, shape_b = adapter_shapes(adapted, adapter_config.lora_dim, self.mode)
            self.lora_A[adapted.target] = nn.Parameter(torch.zeros(shape_a))
            self.lora_B[adapted.target] = nn.Parameter(torch.zeros(shape_b))
        self.lora_magnitude = nn.ParameterDict()
        if adapter_config.adapter == "dora":
            for adapted in slices:
                self.lora_magnitude[adapted.target] = nn.Parameter(torch.zeros(adapted.d_out))
        self.lora_dropout = nn.Dropout(adapter_config.lora_dropout)

    def forward(self, x):
        base = x @ self.weight
        out = base + self.bias
        if self.merged or not self.slices:
            return out
        adapter_input = self.lora_dropout(base if self.mode == "sequential" else x)
        if self.lora_magnitude:
            return out + self.dora_update(adapter_input, base)
        return out + self.scale * self.low_rank_update(adapter_input)

    def dora_update(self, adapter_input, base):
        """(f - 1) W x + f s B A x with f = m / ||W + s B A|| per adapted output feature (1 on the others), as peft
        computes it: the norm detached, and W x on the dropped-out input while dropout acts."""
        factors = []
        column = 0
        for target, (start, stop) in self.slices.items():
            if start > column:
                factors.append(base.new_ones(start - column))
            weight = self.weight[:, start:stop] + self.scale * (self.lora_A[target].t() @ self.lora_B[target].t())
            factors.append(self.lora_magnitude[target] / weight.detach().norm(dim=0))
            column = stop
        if column < self.weight.shape[1]:
            factors.append(base.new_ones(self.weight.shape[1] - column))
        factor = torch.cat(factors)
        if self.lora_dropout.training and self.lora_dropout.p > 0:
            base = adapter_input @ self.weight
        return (factor - 1) * base + factor * (self.scale * self.low_rank_update(adapter_input))

    def low_rank_update(self, adapter_input):
        """B A (input) on every adapted slice and zeros on the other output columns, side by side."""
        pieces = []
        column = 0
        for target, (start, stop) in self.slices.items():
            if start > column:
                pieces.append(adapter_input.new_zeros(*adapter_input.shape[:-1], start - column))
            slice_input = adapter_input[..., start:stop] if self.mode == "sequential" else adapter_input
            pieces.append(slice_input @ self.lora_A[target].t() @ self.lora_B[target].t())
            column = stop
        if column < self.weight.shape[1]:
            pieces.append(adapter_input.new_zeros(*adapter_input.shape[:-1], self.weight.shape[1] - column))
        return torch.cat(pieces, dim=-1)

    @torch.no_grad()
    def merge(self):
        """Fold the adapters into the weight (formulas in common_data.merge), computed in float64."""
        if self.merged:
            return
        if self.lora_magnitude:
            raise RuntimeError("DoRA adapters merge in numpy (common_data/merge.py), as export-hf and gpt2_beam.py do")
        for target, (start, stop) in self.slices.items():
            weight = self.weight[:, start:stop].double()
            lora_a, lora_b = self.lora_A[target].double(), self.lora_B[target].double()
            low_rank = lora_a.t()
            if self.mode == "sequential":
                low_rank = weight @ low_rank
            self.weight[:, start:stop] = weight + self.scale * low_rank @ lora_b.t()
        self.merged = True

    @torch.no_grad()
    def unmerge(self):
        """Undo merge(), computed in float64."""
        if not self.merged:
            return
        for target, (start, stop) in self.slices.items():
            weight = self.weight[:, start:stop].double()
            lora_a, lora_b = self.lora_A[target].double(), self.lora_B[target].double()
            low_rank = lora_a.t()
            if self.mode == "sequential":
                # merged W' = (I + s B A) W, so W = W' - s B (I + s A B)^-1 A W' (Woodbury identity)
                eye = torch.eye(lora_a.shape[0], dtype=lora_a.dtype, device=lora_a.device)
                low_rank = weight @ low_rank @ torch.linalg.inv(eye + self.scale * lora_a @ lora_b).t()
            self.weight[:, start:stop] = weight - self.scale * low_rank @ lora_b.t()
        self.merged = False

    @torch.no_grad()
    def switch_to_parallel(self):
        """JELLY seq2par switch: A <- A W_s on every slice; returns this layer's adapter parameters."""
        if self.merged:
            raise RuntimeError("unmerge the adapters before switching JELLY to parallel mode")
        for target, (start, stop) in self.slices.items():
            lora_a = self.lora_A[target]
            lora_a.data = lora_a @ self.weight[:, start:stop].t()
            lora_a.grad = None
        self.mode = "parallel"
        return list(self.lora_A.values()) + list(self.lora_B.values())


def conv1d_for(config, adapter_config, layer):
    """The AdaptedConv1D for `layer` of a block ("attn.c_attn", "mlp.c_fc", ...), with its adapted slices."""
    d_in, d_out = layer_shapes(config)[layer]
    slices = [s for s in adapted_slices(config, adapter_config) if s.layer == layer]
    return AdaptedConv1D(d_in, d_out, adapter_config, slices)


def adapted_layers(model):
    return [m for m in model.modules() if isinstance(m, AdaptedConv1D) and m.slices]


def mark_only_adapter_as_trainable(model):
    """Freeze everything but what the adapter configuration trains (AdapterConfig.trains): the adapters, the
    biases for BitFit, everything for full fine-tuning."""
    for name, param in model.named_parameters():
        param.requires_grad = model.adapter.trains(name)


def adapter_state_dict(model):
    """The trained tensors in checkpoint names (AdapterConfig.trains)."""
    return {name: tensor for name, tensor in model.state_dict().items() if model.adapter.trains(name)}


def merge_adapters(model):
    for layer in adapted_layers(model):
        layer.merge()


def unmerge_adapters(model):
    for layer in adapted_layers(model):
        layer.unmerge()


def is_merged(model):
    return any(layer.merged for layer in adapted_layers(model))


def adapter_mode(model):
    """'full' (no adapters), 'parallel' or 'sequential'."""
    modes = {layer.mode for layer in adapted_layers(model)}
    if len(modes) > 1:
        raise RuntimeError(f"adapters are in different modes: {sorted(modes)}")
    return modes.pop() if modes else "full"


def switch_to_parallel(model):
    """JELLY seq2par: re-parameterise every sequential adapter to parallel (A <- A W); the output is unchanged.

    Returns the adapter parameters (A and B) whose optimizer moments must be reset. The parameter objects
    stay the same, so the optimizer keeps them; A changes shape where the layer is not square.
    """
    if adapter_mode(model) != "sequential":
        raise RuntimeError(f"switch_to_parallel needs sequential JELLY adapters, the model is {adapter_mode(model)}")
    return [param for layer in adapted_layers(model) for param in layer.switch_to_parallel()]
