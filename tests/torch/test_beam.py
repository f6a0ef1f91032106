"""Beam search against real transformers generate, and against microsoft/LoRA's algorithm written plainly."""
import json
import math

import numpy as np
import pytest
import torch

from common_data.decoding.beam import BeamSettings, unique_queries
from common_data.model.checkpoint import checkpoint_metadata, load_tensors, save_model_checkpoint, save_tensors
from common_data.model.gpt2_config import AdapterConfig, GPT2Config, config_for_card
from common_data.model.init_params import init_adapter_params
from common_data.util.jsonl import read_jsonl, write_jsonl
from common_data.model.synthetic_model import peaked_arrays
from NLG_pytorch.src import gpt2_beam
from NLG_pytorch.src.beam_bench import hf_model, hf_search
from NLG_pytorch.src.beam_search import generate
from NLG_pytorch.src.model import GPT2LMModel

CONFIG = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=128)
CPU = torch.device("cpu")
RECIPE = dict(eval_len=40, length_penalty=0.8, no_repeat_ngram_size=4)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Many small tensor operations: on a shared, loaded machine one thread is several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def arrays():
    return peaked_arrays(CONFIG, seed=0)


@pytest.fixture(scope="module")
def ours(arrays):
    return gpt2_beam.decoding_model(CONFIG, arrays, CPU)


@pytest.fixture(scope="module")
def reference(arrays):
    return hf_model(CONFIG, arrays)


@pytest.fixture(scope="module")
def contexts(shared):
    """The first 50 distinct E2E test contexts, encoded by the data pipeline."""
    rows = read_jsonl(shared / "fixtures/seed_run/e2e_test_sampled_encoded.jsonl")
    queries, _ = unique_queries([row["context"] for row in rows])
    return queries[:50]


def hf_outputs(reference, queries, settings):
    """transformers' generate, the prompts of one length in one call: no padding, which its n-gram blocking
    and repetition penalty would read as tokens."""
    by_length = {}
    for index, query in enumerate(queries):
        by_length.setdefault(len(query), []).append(index)
    found = [None] * len(queries)
    for indices in by_length.values():
        for index, tokens in zip(indices, hf_search(reference, [queries[i] for i in indices], settings)):
            found[index] = tokens
    return found


@pytest.mark.parametrize("settings, count", [
    (BeamSettings(beam=1, semantics="hf", **RECIPE), 50),
    (BeamSettings(beam=4, semantics="hf", **RECIPE), 50),
    (BeamSettings(beam=10, semantics="hf", **RECIPE), 10),
    (BeamSettings(beam=4, semantics="hf", min_length=30, repetition_penalty=1.3, **RECIPE), 8),
], ids=["greedy", "beam4", "beam10", "beam4-min-length-repetition-penalty"])
def test_hf_semantics_equal_transformers_generate(ours, reference, contexts, settings, count):
    queries = contexts[:count]
    found = generate(ours, queries, settings, batch_size=16, device=CPU, progress=False)
    assert found == hf_outputs(reference, queries, settings)
    lengths = [len(tokens) for tokens in found]
    # the synthetic model ends hypotheses at varied lengths, some only at eval_len
    assert len(set(lengths)) > 3 and any(tokens[-1] in settings.eos_token_ids for tokens in found)


def banned_by_history(tokens, size):
    if size == 0 or len(tokens) < size:
        return set()
    prefix = tuple(tokens[len(tokens) - size + 1:])
    return {tokens[i + size - 1] for i in range(len(tokens) - size + 1) if tuple(tokens[i:i + size - 1]) == prefix}


@torch.no_grad()
def lora_reference(model, prompt, settings):
    """microsoft/LoRA's gpt2_beam.py for one context, plainly: no cache, only live hypotheses.

    Each step: penalties and bans on the logits, log-softmax, the best `beam` continuations over all live
    hypotheses; those ending in EOS (or at eval_len) finish with score / length ** length_penalty; all steps run.
    """
    eos = settings.eos_token_ids
    live, best, best_score = [([], 0.0)], None, -math.inf
    for step in range(settings.eval_len):
        logits = model(torch.tensor([prompt + tokens for tokens, _ in live]), logits_to_keep=1).logits[:, -1]
        candidates = []
        for (tokens, score), row in zip(live, logits.float()):
            for token in set(tokens):
                row[token] = row[token] * settings.repetition_penalty if row[token] < 0 else \
                    row[token] / settings.repetition_penalty
            banned = banned_by_history(tokens, settings.no_repeat_ngram_size) | (set(eos) if step < settings.min_length
                                                                                  else set())
            row[list(banned)] = -math.inf
            top = torch.log_softmax(row, dim=-1).topk(settings.beam)
            candidates += [(score + value, tokens + [token]) for value, token in zip(top.values.tolist(),
                                                                                     top.indices.tolist())]
        live = []
        for score, tokens in sorted(candidates, key=lambda c: -c[0])[:settings.beam]:
            if tokens[-1] in eos or step + 1 == settings.eval_len:
                if score / len(tokens) ** settings.length_penalty > best_score:
                    best, best_score = tokens, score / len(tokens) ** settings.length_penalty
            else:
                live.append((tokens, score))
        if not live:
            break
    return best


@pytest.mark.parametrize("settings", [
    BeamSettings(beam=4, semantics="lora", **RECIPE),
    BeamSettings(beam=3, semantics="lora", min_length=25, repetition_penalty=1.3, **RECIPE),
], ids=["recipe", "min-length-repetition-penalty"])
def test_lora_semantics_equal_microsoft_lora_algorithm(ours, reference, contexts, settings):
    queries = contexts[:10]
    found = generate(ours, queries, settings, batch_size=5, device=CPU, progress=False)
    assert found == [lora_reference(reference, query, settings) for query in queries]


def test_the_two_semantics_differ(ours, contexts):
    # Each test above passes with its own semantics only: microsoft/LoRA renormalises after the n-gram bans,
    # which on a peaked model moves every score that follows a banned favourite.
    lora, hf = (generate(ours, contexts[:8], BeamSettings(beam=4, semantics=semantics, **RECIPE), 16, CPU, False)
                for semantics in ("lora", "hf"))
    assert all(a != b for a, b in zip(lora, hf))


def test_greedy_search_is_the_same_in_both_semantics_without_ngram_blocking(ours, contexts):
    # microsoft/LoRA's greedy blocks n-grams of the generated text only, transformers' those of context + text
    settings = dict(beam=1, eval_len=40, no_repeat_ngram_size=0)
    lora, hf = (generate(ours, contexts[:8], BeamSettings(semantics=semantics, **settings), 16, CPU, False)
                for semantics in ("lora", "hf"))
    assert lora == hf


def test_batching_does_not_change_the_result(ours, contexts):
    # eight contexts of six lengths: a batch of 16 pads all but the longest
    queries = contexts[15:23]
    assert len({len(query) for query in queries}) == 6
    settings = BeamSettings(beam=4, semantics="lora", **RECIPE)
    assert generate(ours, queries, settings, 1, CPU, False) == generate(ours, queries, settings, 16, CPU, False)


# ---- the command line

CARD = "gpt2.tiny"


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    config = config_for_card(CARD)
    path = tmp_path_factory.mktemp("base") / "base.safetensors"
    save_tensors(path, peaked_arrays(config, seed=1), {"config": config.to_dict()})
    return path


@pytest.fixture(scope="module")
def encoded_rows(tmp_path_factory, contexts):
    """Six rows of four distinct contexts (rows 0 and 4, 1 and 5 share theirs)."""
    path = tmp_path_factory.mktemp("data") / "test.jsonl"
    chosen = [contexts[i] for i in (0, 1, 20, 40, 0, 1)]
    write_jsonl(path, [{"context": context, "completion": [13, 50256]} for context in chosen])
    return path


def trained_adapters(config, adapter_config, seed):
    """Adapter tensors with B away from zero, so that merging them changes the output."""
    arrays = init_adapter_params(config, adapter_config, seed)
    rng = np.random.default_rng(seed)
    return {name: array + 0.05 * rng.standard_normal(array.shape).astype(np.float32) if ".lora_B." in name
            else array for name, array in arrays.items()}


def beam_cli(tmp_path, base, data, *extra):
    return gpt2_beam.main(["--data", str(data), "--model_card", CARD, "--init_checkpoint", str(base),
                           "--batch_size", "3", "--seq_len", "128", "--eval_len", "12", "--beam", "3",
                           "--length_penalty", "0.8", "--work_dir", str(tmp_path), "--output_file", "predict.jsonl",
                           "--no_progress", *map(str, extra)])


@pytest.mark.parametrize("adapter_config, mode", [
    (AdapterConfig(adapter="lora", lora_dim=4, lora_alpha=32.0), "parallel"),
    (AdapterConfig(adapter="jelly", lora_dim=2, lora_alpha=8.0, targets=("q", "v", "c_fc"), jelly_mode="sequential"),
     "sequential"),
], ids=["lora", "jelly-sequential"])
def test_cli_decodes_with_the_adapters_of_a_training_checkpoint(tmp_path, tiny_base, encoded_rows, adapter_config,
                                                               mode):
    config = config_for_card(CARD)
    adapters = trained_adapters(config, adapter_config, seed=3)
    checkpoint = save_model_checkpoint(tmp_path, 7, adapters, checkpoint_metadata(config, adapter_config, mode, step=7))
    assert beam_cli(tmp_path, tiny_base, encoded_rows, "--adapter_checkpoint", checkpoint) == 0

    rows = [json.loads(line) for line in (tmp_path / "predict.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == list(range(6)) and all(len(row["predict"]) == 12 for row in rows)
    assert rows[0] == {**rows[4], "id": 0} and rows[1] == {**rows[5], "id": 1}
    record = json.loads((tmp_path / "run.beam.json").read_text())
    assert record["framework"]["name"] == "torch" and (record["rows"], record["distinct_contexts"]) == (6, 4)
    assert {"setup", "decode", "write"} <= set(record["phases_s"]) and record["peak_memory"]["bytes"] > 0

    base, _ = load_tensors(tiny_base)
    unmerged = GPT2LMModel(config, adapter_config, base_arrays=base).eval()
    unmerged.load_arrays(adapters, strict=False)
    queries = [row["context"] for row in read_jsonl(encoded_rows)]
    expected = generate(unmerged, queries, BeamSettings(beam=3, eval_len=12, length_penalty=0.8), 3, CPU, False)
    assert [row["predict"] for row in rows] == [tokens + [0] * (12 - len(tokens)) for tokens in expected]
    plain = generate(gpt2_beam.decoding_model(config, base, CPU), queries[:4],
                     BeamSettings(beam=3, eval_len=12, length_penalty=0.8), 3, CPU, False)
    assert plain != expected[:4]

    # one file with base and adapters, described by the flags, as microsoft/LoRA's checkpoints are
    both = tmp_path / "both.safetensors"
    save_tensors(both, {**base, **adapters})
    (tmp_path / "predict.jsonl").rename(tmp_path / "from_adapter_checkpoint.jsonl")
    assert beam_cli(tmp_path, both, encoded_rows, "--lora_dim", adapter_config.lora_dim,
                    "--lora_alpha", int(adapter_config.lora_alpha), "--adapter", adapter_config.adapter,
                    "--jelly_mode", adapter_config.jelly_mode, "--lora_targets", ",".join(adapter_config.targets)) == 0
    assert (tmp_path / "predict.jsonl").read_bytes() == (tmp_path / "from_adapter_checkpoint.jsonl").read_bytes()


def test_cli_names_the_tensor_that_does_not_fit(tmp_path, tiny_base, encoded_rows, capsys):
    config = config_for_card(CARD)
    adapter_config = AdapterConfig(lora_dim=4, lora_alpha=32.0)
    adapters = trained_adapters(config, adapter_config, seed=3)
    adapters["h.2.attn.c_attn.lora_A.v"] = adapters["h.2.attn.c_attn.lora_A.v"][:3]
    checkpoint = save_model_checkpoint(tmp_path, 5, adapters, checkpoint_metadata(config, adapter_config, "parallel"))
    assert beam_cli(tmp_path, tiny_base, encoded_rows, "--adapter_checkpoint", checkpoint) == 1
    error = capsys.readouterr().err
    assert str(checkpoint) in error and "h.2.attn.c_attn.lora_A.v" in error and "(3, 256)" in error \
        and "(4, 256)" in error

    base, metadata = load_tensors(tiny_base)
    base["ln_f.bias"] = base["ln_f.bias"][:100]
    wrong = tmp_path / "wrong.safetensors"
    save_tensors(wrong, base, metadata)
    assert beam_cli(tmp_path, wrong, encoded_rows) == 1
    error = capsys.readouterr().err
    assert str(wrong) in error and "ln_f.bias" in error and "(100,)" in error and "(256,)" in error


@pytest.mark.parametrize("saved, given", [("dora", "lora"), ("pissa", "lora"), ("lora", "dora")])
def test_cli_checks_adapter_against_the_kind_the_checkpoint_records(tmp_path, tiny_base, encoded_rows, saved, given,
                                                                   capsys):
    config = config_for_card(CARD)
    adapter_config = AdapterConfig(adapter=saved, lora_dim=4, lora_alpha=32.0)
    adapters = init_adapter_params(config, adapter_config, seed=3)
    checkpoint = save_model_checkpoint(tmp_path, 5, adapters, checkpoint_metadata(config, adapter_config, "parallel"))
    assert beam_cli(tmp_path, tiny_base, encoded_rows, "--adapter_checkpoint", checkpoint, "--adapter", given) == 1
    error = capsys.readouterr().err.strip()
    assert error == f"gpt2_beam.py: error: {checkpoint}: {saved} adapters, --adapter says {given} " \
                    "(without --adapter the checkpoint's own kind is taken)"


def test_cli_rejects_a_checkpoint_of_another_model_card(tmp_path, encoded_rows, capsys):
    other = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=512)
    path = tmp_path / "small.safetensors"
    save_tensors(path, peaked_arrays(other, seed=0), {"config": other.to_dict()})
    assert beam_cli(tmp_path, path, encoded_rows) == 1
    error = capsys.readouterr().err
    assert str(path) in error and "holds a GPT-2 of 2 layers x 64, but the model is gpt2.tiny" in error
