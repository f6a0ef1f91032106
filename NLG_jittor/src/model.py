"""GPT-2 language model with LoRA / JELLY adapters (Jittor).

Parameter names are the framework-neutral checkpoint names (common_data.model.checkpoint): Hugging Face GPT2Model
names without the "transformer." prefix, Conv1D weights [d_in, d_out], LM head tied to wte.
"""
from jittor import nn

from common_data.model.adapter_math import pissa
from common_data.model.init_params import init_base_params, start_arrays
from common_data.model.plan import ModelPlan
from NLG_jittor.src import ops
from NLG_jittor.src.adapters import adapter_mode, adapter_state_dict, conv1d_for, is_merged


def attention_mask(past_length, length, padding, like):
    """Which keys the `length` queries that follow `past_length` cached positions see: [L, S], or with left
    padding (pad count per row [B]) [B, 1, L, S].

    Query i sits at position past_length + i and sees the keys up to it; with padding only the real ones, and
    itself, so that a padded query (whose output nobody reads) still has a key to attend to.
    """
    keys = ops.positions(0, past_length + length, like)
    queries = ops.positions(past_length, past_length + length, like).unsqueeze(1)
    causal = keys <= queries
    if padding is None:
        return causal
    return causal & ((keys >= padding.view(-1, 1, 1, 1)) | (keys == queries))


class PackedTokens:
    """A right-padded batch's real tokens one after another (common_data.model.packing), as index tensors."""

    def __init__(self, packing, like):
        self.places = ops.from_numpy_like(packing.places, like)
        self.slots = ops.from_numpy_like(packing.slots, like)
        self.rows, self.length = packing.rows, packing.length

    def pack(self, x):
        """[B, L, ...] -> [N, ...]: the real tokens."""
        return ops.take_rows(x.reshape(-1, *x.shape[2:]), self.places)

    def to_rows(self, x):
        """[N, width] -> [B, L, width], zeros at the padding."""
        padded = ops.take_rows(ops.concat([x, ops.zeros_like(x[:1])]), self.slots)
        return padded.reshape(self.rows, self.length, x.shape[-1])


class CausalSelfAttention(nn.Module):

    def __init__(self, plan, block):
        super().__init__()
        self.n_head = plan.config.n_head
        self.c_attn = conv1d_for(plan, f"h.{block}.attn.c_attn")
        self.c_proj = conv1d_for(plan, f"h.{block}.attn.c_proj")

    def execute(self, x, past=None, mask=None, tokens=None, past_rows=None):
        """mask: which keys each query sees ([L, S] or [B, 1, L, S], see attention_mask); None: causal.
        tokens: x holds the PackedTokens of right-padded rows; attention runs on the rows.
        past, past_rows: the cached keys and values, see GPT2LMModel.execute."""
        qkv = self.c_attn(x)
        if tokens is not None:
            qkv = tokens.to_rows(qkv)
        y, present = ops.self_attention(qkv, self.n_head, mask, past, past_rows)
        if tokens is not None:
            y = tokens.pack(y)
        return self.c_proj(y), present


class MLP(nn.Module):

    def __init__(self, plan, block):
        super().__init__()
        self.c_fc = conv1d_for(plan, f"h.{block}.mlp.c_fc")
        self.c_proj = conv1d_for(plan, f"h.{block}.mlp.c_proj")

    def execute(self, x):
        return self.c_proj(ops.gelu(self.c_fc(x)))


class Block(nn.Module):

    def __init__(self, plan, block):
        super().__init__()
        config = plan.config
        self.ln_1 = ops.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(plan, block)
        self.ln_2 = ops.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(plan, block)

    def execute(self, x, past=None, mask=None, tokens=None, past_rows=None):
        attn_out, present = self.attn(self.ln_1(x), past, mask, tokens, past_rows)
        x = x + attn_out
        x = x + self.mlp(self.ln_2(x))
        return x, present


class GPT2LMModel(nn.Module):
    """GPT-2 with its LM head.

    The base weights are base_arrays (e.g. a pretrained checkpoint, in checkpoint names) or, when None,
    GPT-2's initialisation; the adapters start from common_data.model.init_params with `seed`.
    """

    def __init__(self, config, adapter, seed=0, base_arrays=None):
        super().__init__()
        self.config = config
        self.adapter = adapter
        self.plan = ModelPlan(config, adapter)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList([Block(self.plan, block) for block in range(config.n_layer)])
        self.ln_f = ops.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        if base_arrays is None:
            base_arrays = init_base_params(config, seed)
        start = start_arrays(config, adapter, seed, base_arrays)
        # PiSSA's saved form holds its start (common_data/model/adapter_math/pissa.py)
        self.initial_adapters = {name: start[name] for name in self.plan.adapter_tensors()}
        self.load_arrays(start)

    def execute(self, input_ids, targets=None, loss_mask=None, label_smooth=0.0, past_key_values=None,
                use_cache=False, full_logits=False, padding=None, packing=None, past_rows=None):
        """(logits [B, L, V], None) without targets, (None, loss) with them.

        past_key_values: a list of (k, v) per layer, each [B, n_head, past_length, head_dim], from an earlier
        call; with use_cache=True the result gains a third item, that list extended by input_ids. past_rows (int [B]):
        the row of past_key_values each row continues (beam search's reorder; past_key_values may then have any
        number of rows), None: row for row.
        full_logits: compute the loss's logits at every position, as microsoft/LoRA does (same loss, more work).
        Training pads at the right, where the causal mask keeps real tokens from seeing it. Decoding pads at
        the left: padding (int [B]) counts each row's leading pad tokens, cached ones included; those get no
        attention and positions count from each row's first real token, so every row computes as if alone.
        packing: the common_data.model.packing.Packing of a right-padded batch without cache: the blocks skip the
        padding (the loss is the same, the work less; logits come for the real tokens only, [N, V]).
        """
        past_length = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        positions = ops.positions(past_length, past_length + input_ids.shape[1], input_ids)
        if padding is not None:
            positions = ops.clamp_min(positions - padding.unsqueeze(1), 0)
        mask = None
        if past_key_values is not None or padding is not None:
            mask = attention_mask(past_length, input_ids.shape[1], padding, input_ids)
        x = self.wte(input_ids) + self.wpe(positions)
        tokens = None if packing is None else PackedTokens(packing, input_ids)
        if tokens is not None:
            x = tokens.pack(x)
            targets, loss_mask = (None if rows is None else tokens.pack(rows) for rows in (targets, loss_mask))
        presents = []
        for i, block in enumerate(self.h):
            x, present = block(x, None if past_key_values is None else past_key_values[i], mask, tokens, past_rows)
            presents.append(present)
        x = self.ln_f(x)
        if targets is None:
            logits, loss = ops.matmul_transposed(x, self.wte.weight), None
        else:
            logits, loss = None, self.lm_loss(x, targets, loss_mask, label_smooth, full_logits)
        return (logits, loss, presents) if use_cache else (logits, loss)

    def lm_loss(self, hidden, targets, loss_mask, label_smooth, full_logits=False):
        """Mean over loss_mask of (1 - ls) * nll + ls * (mean over the vocabulary of -log p).

        Logits are computed only where loss_mask != 0 (the loss is the same, the work is less) unless
        full_logits; the sum is divided by loss_mask.sum() + 1e-4 as microsoft/LoRA does.
        """
        if loss_mask is None:
            loss_mask = ops.ones(targets.shape, hidden)
        weights, rows, targets = loss_mask.reshape(-1), hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        total = weights.sum()
        if not full_logits:
            keep = weights != 0
            weights, rows, targets = weights[keep], rows[keep], targets[keep]
        return ops.lm_head_loss(rows, self.wte.weight, targets, weights, label_smooth) / (total + 0.0001)

    def load_arrays(self, arrays, strict=True):
        """Copy numpy arrays (checkpoint names) into the parameters.

        strict: the names must be exactly this model's; otherwise a subset will do. Unknown names and wrong
        shapes always stop with an error naming the tensor. PiSSA adapters may come in their saved form.
        """
        if self.adapter.adapter == "pissa":
            arrays = pissa.from_lora(arrays, self.adapter.lora_dim)
        params = dict(self.named_parameters())
        unknown = sorted(set(arrays) - set(params))
        missing = sorted(set(params) - set(arrays)) if strict else []
        if unknown or missing:
            raise KeyError(f"tensors not in this model: {unknown[:5]}; tensors missing: {missing[:5]}")
        for name, array in arrays.items():
            if tuple(array.shape) != tuple(params[name].shape):
                raise ValueError(f"tensor {name} has shape {tuple(array.shape)}, the model's is "
                                 f"{tuple(params[name].shape)} (adapter mode {adapter_mode(self)})")
        for name, array in arrays.items():
            ops.assign(params[name], array)

    def to_arrays(self, adapter_only=False):
        """float32 numpy arrays in checkpoint names: all, or the trained ones (see adapter_state_dict; PiSSA's in
        their saved form, plain LoRA on the original base)."""
        if is_merged(self):
            raise RuntimeError("the adapters are merged into the weights: unmerge_adapters(model) first")
        tensors = adapter_state_dict(self) if adapter_only else self.state_dict()
        arrays = {name: ops.to_numpy(tensor) for name, tensor in tensors.items()}
        if adapter_only and self.adapter.adapter == "pissa":
            return pissa.to_lora(arrays, self.initial_adapters)
        return arrays
