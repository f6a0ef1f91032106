"""GPT-2 model and adapter configurations, and where adapters sit in the network (framework-neutral)."""
import math
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class GPT2Config:
    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    layer_norm_epsilon: float = 1e-5
    initializer_range: float = 0.02

    def __post_init__(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"GPT2Config: n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values, source="config"):
        return cls(**_known_fields(cls, values, source))

    @classmethod
    def from_hf(cls, hf_config, source="config.json"):
        """The config of a Hugging Face GPT-2 checkpoint (its config.json as a dict).

        Stops on settings this model does not implement, naming the file and the field.
        """
        expected = {"activation_function": ("gelu_new", "gelu_pytorch_tanh"), "scale_attn_weights": (True,),
                    "scale_attn_by_inverse_layer_idx": (False,), "add_cross_attention": (False,),
                    "tie_word_embeddings": (True,)}
        for field, allowed in expected.items():
            if hf_config.get(field, allowed[0]) not in allowed:
                raise ValueError(f"{source}: field {field!r} is {hf_config[field]!r}; this GPT-2 supports {allowed}")
        n_inner = hf_config.get("n_inner")
        if n_inner is not None and n_inner != 4 * hf_config["n_embd"]:
            raise ValueError(f"{source}: field 'n_inner' is {n_inner}; this GPT-2 needs 4 * n_embd")
        try:
            return cls(**{f.name: hf_config[f.name] for f in fields(cls) if f.name in hf_config})
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from error

    def to_hf(self):
        """config.json for transformers.GPT2LMHeadModel."""
        return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
                "n_inner": None, "tie_word_embeddings": True, **asdict(self)}


MODEL_CARDS = {
    "gpt2.sm": GPT2Config(n_embd=768, n_layer=12, n_head=12),
    "gpt2.md": GPT2Config(n_embd=1024, n_layer=24, n_head=16),
    "gpt2.lg": GPT2Config(n_embd=1280, n_layer=36, n_head=20),
    "gpt2.tiny": GPT2Config(n_embd=256, n_layer=4, n_head=4, n_positions=512),
}


def config_for_card(name):
    if name not in MODEL_CARDS:
        raise ValueError(f"unknown model card {name!r}; choose one of {sorted(MODEL_CARDS)}")
    return MODEL_CARDS[name]


# Adapter target -> (layer inside each block h.{i}, index of its output slice, number of slices).
# c_attn computes q, k and v side by side: each is one third of its output columns; the target c_attn is one
# adapter over all three, as peft adapts GPT-2's fused layer.
ADAPTER_TARGETS = {
    "c_attn": ("attn.c_attn", 0, 1),
    "q": ("attn.c_attn", 0, 3),
    "k": ("attn.c_attn", 1, 3),
    "v": ("attn.c_attn", 2, 3),
    "c_proj": ("attn.c_proj", 0, 1),
    "c_fc": ("mlp.c_fc", 0, 1),
    "mlp_proj": ("mlp.c_proj", 0, 1),
}
ADAPTERS = ("lora", "jelly", "dora", "pissa", "adalora", "bitfit")
JELLY_MODES = ("parallel", "sequential", "seq2par")


@dataclass(frozen=True)
class AdapterConfig:
    """LoRA, JELLY, DoRA, PiSSA or AdaLoRA on the target slices of every block; lora_dim 0 means full fine-tuning.

    DoRA, PiSSA and AdaLoRA are LoRA (parallel) with peft's definitions (common_data/model/adapter_math); AdaLoRA's
    lora_dim is its initial rank init_r and its scale alpha / (init_r + 1e-5), as peft's. BitFit trains the
    biases (Conv1D and LayerNorm) and has no adapter layers: its lora_dim is 0.
    use_rslora: scale alpha / sqrt(r) instead of alpha / r (rsLoRA, peft's use_rslora).
    """
    adapter: str = "lora"
    lora_dim: int = 0
    lora_alpha: float = 128.0
    lora_dropout: float = 0.0
    targets: tuple = ("q", "v")
    jelly_mode: str = "seq2par"
    use_rslora: bool = False

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        if self.adapter not in ADAPTERS:
            raise ValueError(f"AdapterConfig: adapter {self.adapter!r} is not one of {ADAPTERS}")
        if self.jelly_mode not in JELLY_MODES:
            raise ValueError(f"AdapterConfig: jelly_mode {self.jelly_mode!r} is not one of {JELLY_MODES}")
        unknown = [t for t in self.targets if t not in ADAPTER_TARGETS]
        if unknown or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"AdapterConfig: targets {self.targets} must be distinct names from "
                             f"{tuple(ADAPTER_TARGETS)}")
        if "c_attn" in self.targets and {"q", "k", "v"} & set(self.targets):
            raise ValueError(f"AdapterConfig: targets {self.targets}: c_attn already covers q, k and v")
        if self.lora_dim < 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"AdapterConfig: need lora_dim >= 0 and 0 <= lora_dropout < 1, got "
                             f"{self.lora_dim} and {self.lora_dropout}")
        if self.adapter in ("dora", "pissa", "adalora") and not self.lora_dim:
            raise ValueError(f"AdapterConfig: {self.adapter} needs lora_dim > 0")
        if self.adapter == "adalora" and self.use_rslora:
            raise ValueError("AdapterConfig: adalora scales by alpha / init_r as peft's AdaLoRA, not by rsLoRA's")
        if self.adapter == "bitfit" and self.lora_dim:
            raise ValueError(f"AdapterConfig: bitfit trains the biases and has no rank: lora_dim must be 0, "
                             f"got {self.lora_dim}")

    @property
    def scale(self):
        if self.adapter == "adalora":
            # peft: lora_alpha / (ranknum + 1e-5), ranknum = init_r
            return self.lora_alpha / (self.lora_dim + 1e-5)
        return self.lora_alpha / (math.sqrt(self.lora_dim) if self.use_rslora else self.lora_dim)

    def trains(self, name):
        """Whether the tensor of checkpoint name `name` trains: the adapters; the biases for BitFit; every
        tensor for full fine-tuning."""
        if self.adapter == "bitfit":
            return name.endswith(".bias")
        return self.trains_everything or ".lora_" in name

    @property
    def trains_everything(self):
        """Full fine-tuning: lora_dim 0 and not BitFit."""
        return self.lora_dim == 0 and self.adapter != "bitfit"

    @property
    def initial_mode(self):
        """'full' (no adapter layers: full fine-tuning, BitFit), 'parallel' (LoRA, JELLY parallel) or
        'sequential' (JELLY sequential, seq2par)."""
        if self.lora_dim == 0:
            return "full"
        if self.adapter == "jelly" and self.jelly_mode != "parallel":
            return "sequential"
        return "parallel"

    def to_dict(self):
        return {**asdict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, values, source="adapter config"):
        return cls(**_known_fields(cls, values, source))


def _known_fields(cls, values, source):
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} fields {unknown}")
    return values
