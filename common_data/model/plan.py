"""The model plan: every tensor of a GPT-2 with its adapters, worked out once from the model config, the adapter
config and the adapter mode (numpy-free, framework-neutral).

Both models build their layers from it, and initialisation, merging, the trainers' trainable sets and AdaLoRA's
triplets read it: no other module derives a tensor name or shape.
"""
from dataclasses import dataclass

from common_data.model.gpt2_config import ADAPTER_TARGETS

# the adapter kind of each adapter method: PiSSA and JELLY compute as LoRA (they differ in how they start and,
# for JELLY, in the mode)
LAYER_KINDS = {"lora": "lora", "jelly": "lora", "pissa": "lora", "dora": "dora", "adalora": "adalora"}
# an adapter tensor's name: <layer>.<suffix of its role>.<target>
ROLE_SUFFIXES = {"A": "lora_A", "B": "lora_B", "magnitude": "lora_magnitude", "E": "lora_E"}


def base_param_shapes(config):
    """Checkpoint names and shapes of the base model's tensors, in Hugging Face order."""
    n = config.n_embd
    shapes = {"wte.weight": (config.vocab_size, n), "wpe.weight": (config.n_positions, n)}
    for i in range(config.n_layer):
        for norm, layers in (("ln_1", ("attn.c_attn", "attn.c_proj")), ("ln_2", ("mlp.c_fc", "mlp.c_proj"))):
            shapes[f"h.{i}.{norm}.weight"] = (n,)
            shapes[f"h.{i}.{norm}.bias"] = (n,)
            for layer in layers:
                d_in, d_out = layer_shapes(config)[layer]
                shapes[f"h.{i}.{layer}.weight"] = (d_in, d_out)
                shapes[f"h.{i}.{layer}.bias"] = (d_out,)
    shapes["ln_f.weight"] = (n,)
    shapes["ln_f.bias"] = (n,)
    return shapes


def layer_shapes(config):
    """Conv1D weight shapes [d_in, d_out] of the layers inside one block."""
    n = config.n_embd
    return {"attn.c_attn": (n, 3 * n), "attn.c_proj": (n, n), "mlp.c_fc": (n, 4 * n), "mlp.c_proj": (4 * n, n)}


@dataclass(frozen=True)
class AdaptedSlice:
    """Output columns [start, stop) of a layer's Conv1D weight [d_in, d_out] that carry one adapter."""
    layer: str
    target: str
    d_in: int
    start: int
    stop: int

    @property
    def d_out(self):
        return self.stop - self.start


@dataclass(frozen=True)
class TensorPlan:
    """One tensor: its checkpoint name and shape, whether it trains and how it starts.

    init: 'normal' / 'residual_normal' / 'zeros' / 'ones' for the base (GPT-2's initialisation), and for an
    adapter tensor its role's start: 'uniform' (LoRA's A), 'zeros', 'normal' (AdaLoRA's A and B), 'norm' (DoRA's
    magnitude), 'svd' (PiSSA's A and B). Adapter tensors also name their kind, role (A, B, magnitude, E) and slice.
    """
    name: str
    shape: tuple
    trains: bool
    init: str
    kind: str = None
    role: str = None
    slice: AdaptedSlice = None


@dataclass(frozen=True)
class LayerPlan:
    """One Conv1D layer of a block, e.g. h.3.attn.c_attn: its shape and its adapters (kind 'none' without)."""
    name: str
    d_in: int
    d_out: int
    kind: str
    mode: str
    rank: int
    scale: float
    slices: tuple

    def tensor_names(self, target):
        """{role: checkpoint name} of the adapter on slice `target`."""
        roles = {"lora": ("A", "B"), "dora": ("A", "B", "magnitude"), "adalora": ("A", "B", "E")}[self.kind]
        return {role: f"{self.name}.{ROLE_SUFFIXES[role]}.{target}" for role in roles}

    def tensor_shapes(self, adapted):
        """{role: shape}: A is r x d_in in parallel mode and r x d_out in sequential mode, B is d_out x r, DoRA's
        magnitude [d_out], AdaLoRA's Λ [r, 1]."""
        a_cols = adapted.d_out if self.mode == "sequential" else adapted.d_in
        shapes = {"A": (self.rank, a_cols), "B": (adapted.d_out, self.rank)}
        if self.kind == "dora":
            shapes["magnitude"] = (adapted.d_out,)
        if self.kind == "adalora":
            shapes["E"] = (self.rank, 1)
        return shapes


def adapted_slices(config, adapter_config):
    """The slices of one block that carry an adapter, in layer then column order (empty for full fine-tuning)."""
    if adapter_config.lora_dim == 0:
        return []
    shapes = layer_shapes(config)
    slices = []
    for target in adapter_config.targets:
        layer, index, count = ADAPTER_TARGETS[target]
        d_in, d_out = shapes[layer]
        width = d_out // count
        slices.append(AdaptedSlice(layer, target, d_in, index * width, (index + 1) * width))
    return sorted(slices, key=lambda s: (list(shapes).index(s.layer), s.start))


def adapter_init(adapter, role):
    if adapter == "pissa" and role in ("A", "B"):
        return "svd"
    if adapter == "adalora":
        return "zeros" if role == "E" else "normal"
    return {"A": "uniform", "B": "zeros", "magnitude": "norm"}[role]


def base_init(name):
    module = name.split(".")[-2]
    if name.endswith(".bias"):
        return "zeros"
    if module.startswith("ln_"):
        return "ones"
    return "residual_normal" if module == "c_proj" else "normal"


def saved_rank(adapter_config):
    """The rank of the adapters a checkpoint holds: lora_dim, or 2 x lora_dim for PiSSA (saved as plain LoRA on
    the original base, common_data/model/adapter_math/pissa.py)."""
    return 2 * adapter_config.lora_dim if adapter_config.adapter == "pissa" else adapter_config.lora_dim


class ModelPlan:
    """Every tensor (`tensors`, checkpoint name -> TensorPlan, base first in Hugging Face order) and every Conv1D
    layer (`layers`, name -> LayerPlan) of a GPT-2 with the adapters of `adapter_config` in `mode` (default: the
    configuration's initial mode); rank: the adapters' rank (default lora_dim; a saved PiSSA adapter has 2r)."""

    def __init__(self, config, adapter_config, mode=None, rank=None):
        self.config, self.adapter_config = config, adapter_config
        self.mode = mode or adapter_config.initial_mode
        rank = adapter_config.lora_dim if rank is None else rank
        kind = LAYER_KINDS.get(adapter_config.adapter, "none") if adapter_config.lora_dim else "none"
        slices = adapted_slices(config, adapter_config)
        self.tensors = {name: TensorPlan(name, shape, adapter_config.trains(name), base_init(name))
                        for name, shape in base_param_shapes(config).items()}
        self.layers = {}
        for block in range(config.n_layer):
            for layer, (d_in, d_out) in layer_shapes(config).items():
                mine = tuple(s for s in slices if s.layer == layer)
                plan = LayerPlan(f"h.{block}.{layer}", d_in, d_out, kind if mine else "none",
                                 self.mode if mine else "full", rank, adapter_config.scale if mine else 0.0, mine)
                self.layers[plan.name] = plan
                for adapted in mine:
                    names, shapes = plan.tensor_names(adapted.target), plan.tensor_shapes(adapted)
                    for role, name in names.items():
                        self.tensors[name] = TensorPlan(name, shapes[role], True,
                                                        adapter_init(adapter_config.adapter, role), kind, role, adapted)

    def shapes(self):
        return {name: tensor.shape for name, tensor in self.tensors.items()}

    def adapter_tensors(self):
        return {name: tensor for name, tensor in self.tensors.items() if tensor.kind is not None}

    def trainable(self):
        return {name for name, tensor in self.tensors.items() if tensor.trains}

    def adapted_layers(self):
        return [layer for layer in self.layers.values() if layer.slices]

    def adalora_triplets(self):
        """{name of Λ: (name of A, name of Λ, name of B)} of every AdaLoRA slice."""
        return {names["E"]: (names["A"], names["E"], names["B"])
                for layer in self.adapted_layers() if layer.kind == "adalora"
                for names in (layer.tensor_names(adapted.target) for adapted in layer.slices)}
