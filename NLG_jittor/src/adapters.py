"""LoRA and JELLY adapters on GPT-2's Conv1D layers, loralib style.

For a frozen base weight W (d_out x d_in; stored as Conv1D weight Wc = W^T, [d_in, d_out]), bias b,
adapter matrices A, B and scale s = alpha / r, each adapted output slice of a layer adds:
- parallel (LoRA, JELLY parallel):   s * B A x,        A is r x d_in
- sequential (JELLY):                s * B A (W_s x),  A is r x d_out, W_s the slice's own rows of W
JELLY seq2par starts sequential and switches to parallel with A <- A W_s, which keeps the output.
Dropout acts on the adapter input (x, or W x in sequential mode).
DoRA (peft's use_dora) rescales each adapted output feature of W x + s B A x by m / ||W + s B A||, the norm
detached; PiSSA is parallel LoRA on a residual base (both start from common_data/model/adapter_math's numbers).
AdaLoRA (peft's AdaLoraConfig) is parallel LoRA with A diag(Λ) for A (Λ = lora_E, [r, 1]); its RankAllocator
masks Λ to the budget of common_data/model/adapter_math/adalora.py.
"""
import numpy as np
from jittor import nn

from NLG_jittor.src import ops
from common_data.model.adapter_math import adalora
from common_data.model.merge import merged_weight, unmerged_weight


class AdaptedConv1D(nn.Module):
    """GPT-2's Conv1D (x Wc + b) with low-rank adapters on some of its output slices."""

    def __init__(self, plan, lora_dropout):
        """plan: the layer's LayerPlan (common_data/model/plan.py); its kind is 'none', 'lora', 'dora' or
        'adalora'."""
        super().__init__()
        self.weight = ops.parameter((plan.d_in, plan.d_out))
        self.bias = ops.parameter((plan.d_out,))
        self.kind, self.mode, self.scale = plan.kind, plan.mode, plan.scale
        self.slices = {s.target: (s.start, s.stop) for s in plan.slices}
        self.merged = False
        tensors = {role: nn.ParameterDict() for role in ("A", "B", "magnitude", "E")}
        for adapted in plan.slices:
            for role, shape in plan.tensor_shapes(adapted).items():
                tensors[role][adapted.target] = ops.parameter(shape)
        self.lora_A, self.lora_B, self.lora_magnitude, self.lora_E = tensors.values()
        self.lora_dropout = ops.dropout(lora_dropout)

    def execute(self, x):
        base = ops.matmul(x, self.weight)
        out = base + self.bias
        if self.merged or not self.slices:
            return out
        adapter_input = self.lora_dropout(base if self.mode == "sequential" else x)
        if self.kind == "dora":
            return out + self.dora_update(adapter_input, base)
        return out + self.scale * self.low_rank_update(adapter_input)

    def dora_update(self, adapter_input, base):
        """(f - 1) W x + f s B A x with f = m / ||W + s B A|| per adapted output feature (1 on the others), as peft
        computes it: the norm detached, and W x on the dropped-out input while dropout acts."""
        factors = []
        column = 0
        for target, (start, stop) in self.slices.items():
            if start > column:
                factors.append(base.new_ones((start - column,)))
            weight = self.weight[:, start:stop] + self.scale * (self.down_projection(target).t() @ self.lora_B[target].t())
            factors.append(self.lora_magnitude[target] / weight.detach().norm(dim=0))
            column = stop
        if column < self.weight.shape[1]:
            factors.append(base.new_ones((self.weight.shape[1] - column,)))
        factor = ops.concat(factors)
        if ops.is_training(self.lora_dropout) and self.lora_dropout.p > 0:
            base = ops.matmul(adapter_input, self.weight)
        return (factor - 1) * base + factor * (self.scale * self.low_rank_update(adapter_input))

    def low_rank_update(self, adapter_input):
        """B A (input) on every adapted slice and zeros on the other output columns, side by side."""
        pieces = []
        column = 0
        for target, (start, stop) in self.slices.items():
            if start > column:
                pieces.append(adapter_input.new_zeros((*adapter_input.shape[:-1], start - column)))
            slice_input = adapter_input[..., start:stop] if self.mode == "sequential" else adapter_input
            pieces.append(slice_input @ self.down_projection(target).t() @ self.lora_B[target].t())
            column = stop
        if column < self.weight.shape[1]:
            pieces.append(adapter_input.new_zeros((*adapter_input.shape[:-1], self.weight.shape[1] - column)))
        return ops.concat(pieces, dim=-1)

    def down_projection(self, target):
        """A, or AdaLoRA's A diag(Λ) (peft's lora_A * lora_E)."""
        if self.kind == "adalora":
            return self.lora_A[target] * self.lora_E[target]
        return self.lora_A[target]

    def merge(self):
        """Fold the adapters into the weight (common_data.model.merge's formulas, in float64 with numpy)."""
        if self.merged:
            return
        if self.kind == "dora":
            raise RuntimeError("DoRA adapters merge in numpy (common_data/model/merge.py), as export-hf and gpt2_beam.py do")
        for target, (start, stop) in self.slices.items():
            ops.set_columns(self.weight, start, merged_weight(*self.slice_arrays(target, start, stop), self.scale,
                                                              self.mode))
        self.merged = True

    def unmerge(self):
        """Undo merge(), in float64 with numpy."""
        if not self.merged:
            return
        for target, (start, stop) in self.slices.items():
            ops.set_columns(self.weight, start, unmerged_weight(*self.slice_arrays(target, start, stop), self.scale,
                                                                self.mode))
        self.merged = False

    def slice_arrays(self, target, start, stop):
        """numpy copies of the weight's columns [start, stop) and of that slice's A (down_projection) and B."""
        return tuple(ops.to_numpy(tensor) for tensor in (self.weight[:, start:stop], self.down_projection(target),
                                                         self.lora_B[target]))

    def switch_to_parallel(self):
        """JELLY seq2par switch: A <- A W_s on every slice; returns this layer's adapter parameters."""
        if self.merged:
            raise RuntimeError("unmerge the adapters before switching JELLY to parallel mode")
        for target, (start, stop) in self.slices.items():
            lora_a = self.lora_A[target]
            ops.replace(lora_a, lora_a @ self.weight[:, start:stop].t())
        self.mode = "parallel"
        return list(self.lora_A.values()) + list(self.lora_B.values())


def conv1d_for(plan, layer):
    """The AdaptedConv1D of layer `layer` ("h.3.attn.c_attn", ...) of a ModelPlan."""
    return AdaptedConv1D(plan.layers[layer], plan.adapter_config.lora_dropout)


def adapted_layers(model):
    return [m for m in model.modules() if isinstance(m, AdaptedConv1D) and m.slices]


def mark_only_adapter_as_trainable(model):
    """Freeze everything but what the model plan trains: the adapters, the biases for BitFit, everything for full
    fine-tuning."""
    trainable = model.plan.trainable()
    for name, param in model.named_parameters():
        param.requires_grad = name in trainable


def adapter_state_dict(model):
    """The trained tensors in checkpoint names (the model plan's trainable set)."""
    trainable = model.plan.trainable()
    return {name: tensor for name, tensor in model.state_dict().items() if name in trainable}


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


def orthogonal_regularisation(model):
    """AdaLoRA's regulariser as peft adds it to the loss: the mean over every A and B of ||A A^T - I||_F and
    ||B^T B - I||_F."""
    terms = []
    for layer in adapted_layers(model):
        for target in layer.slices:
            lora_a, lora_b = layer.lora_A[target], layer.lora_B[target]
            for gram in (lora_a @ lora_a.t(), lora_b.t() @ lora_b):
                eye = ops.eye(gram.shape[0], like=gram)
                terms.append((gram - eye).pow(2).sum().sqrt())
    return sum(terms) / len(terms)


class RankAllocator:
    """peft's AdaLoRA RankAllocator on a model's triplets (A, Λ, B): the smoothed sensitivity and uncertainty of
    every entry, and Λ masked to common_data/model/adapter_math/adalora.py's budget.

    update_and_allocate(step, gradients) runs after the optimizer update of each step (1-based), with that step's
    gradients {name: gradient}. The state (scores and masks, as 'adalora.*' arrays) goes into trainer.N.
    """

    def __init__(self, model, config):
        self.triplets = model.plan.adalora_triplets()
        adapters = model.plan.adapter_tensors()
        self.params = {name: param for name, param in model.named_parameters() if name in adapters}
        self.budget = adalora.Budget(config, model.adapter.lora_dim, self.triplets)
        self.sensitivity, self.uncertainty = {}, {}

    def update_and_allocate(self, step, gradients):
        """Returns the budget masked to at this step, or None."""
        config = self.budget.config
        if self.budget.scores_due(step):
            self.update_scores(gradients)
        budget = self.budget.allocation_due(step)
        if budget is not None:
            self.budget.allocate(self.scores(), budget)
        if step == config.final_step:
            self.sensitivity, self.uncertainty = {}, {}
        if budget is not None or step > config.final_step:
            for name, mask in self.budget.masks.items():
                ops.scale_in_place(self.params[name], mask[:, None])
        return budget

    def update_scores(self, gradients):
        beta1, beta2 = self.budget.config.beta1, self.budget.config.beta2
        for name, param in self.params.items():
            importance = (param * gradients[name]).abs()
            sensitivity = self.sensitivity.get(name, ops.constant_like(param))
            uncertainty = self.uncertainty.get(name, ops.constant_like(param))
            self.sensitivity[name] = ops.detach(beta1 * sensitivity + (1 - beta1) * importance)
            self.uncertainty[name] = ops.detach(beta2 * uncertainty
                                                + (1 - beta2) * (importance - self.sensitivity[name]).abs())
        # run the updates now: a lazy EMA (Jittor's) would grow its graph step after step
        ops.sync([*self.sensitivity.values(), *self.uncertainty.values()])

    def scores(self):
        return {name: tuple(ops.numpy(self.sensitivity[part] * self.uncertainty[part]) for part in parts)
                for name, parts in self.triplets.items()}

    def state_arrays(self):
        arrays = {f"adalora.mask.{name}": mask for name, mask in self.budget.masks.items()}
        for kind, values in (("sensitivity", self.sensitivity), ("uncertainty", self.uncertainty)):
            arrays.update({f"adalora.{kind}.{name}": ops.numpy(value) for name, value in values.items()})
        return arrays

    def load_state_arrays(self, arrays):
        self.budget.masks = {name: np.array(arrays[f"adalora.mask.{name}"]) for name in self.triplets}
        for kind, values in (("sensitivity", self.sensitivity), ("uncertainty", self.uncertainty)):
            values.clear()
            values.update({name: ops.constant_like(param, arrays[f"adalora.{kind}.{name}"])
                           for name, param in self.params.items() if f"adalora.{kind}.{name}" in arrays})
