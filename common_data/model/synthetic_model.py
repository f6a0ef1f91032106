"""Random GPT-2 weights whose decoding behaves like a trained model's, for decoding tests and benchmarks.

GPT-2's initialisation gives nearly flat next-token distributions: beam search then meets near-ties
everywhere and never meets an end-of-sequence token. Here
- every layer keeps its inputs' scale (weights of std 1 / sqrt(d_in)) and the blocks write `block_gain`
  times more into the residual stream than the embeddings do, so the next token is no copy of the current;
- the token embeddings (tied to the LM head) give logits of standard deviation `logit_std`: peaked
  distributions, so that two implementations agree on every choice despite rounding;
- the position embeddings carry a ramp along one direction that the EOS embedding shares: from position
  `eos_start` on the EOS logit grows by about `eos_ramp` * `eos_weight` per position, so hypotheses end, at
  varied lengths.
"""
import numpy as np

from common_data.model.init_params import init_base_params


def peaked_arrays(config, seed, logit_std=10.0, block_gain=4.0, eos_token_id=628, eos_ramp=0.2, eos_weight=25.0,
                  eos_start=0):
    """Base arrays in checkpoint names (see the module docstring)."""
    arrays = init_base_params(config, seed)
    for name, array in arrays.items():
        if name.startswith("h.") and name.endswith(".weight") and array.ndim == 2:
            gain = block_gain if name.endswith("c_proj.weight") else 1.0
            array *= np.float32(gain / (np.sqrt(array.shape[0]) * array.std()))
    wte, wpe = arrays["wte.weight"], arrays["wpe.weight"]
    # after the final layer norm the hidden state has norm about sqrt(n_embd)
    wte *= np.float32(logit_std / (np.sqrt(config.n_embd) * wte.std()))
    wpe *= np.float32(wte.std() / wpe.std())
    direction = np.random.default_rng([seed, eos_token_id]).standard_normal(config.n_embd).astype(np.float32)
    direction /= np.linalg.norm(direction)
    ramp = np.maximum(np.arange(config.n_positions, dtype=np.float32) - eos_start, 0)
    wpe += np.float32(eos_ramp) * ramp[:, None] * direction
    wte[eos_token_id] += np.float32(eos_weight) * direction
    return arrays
