"""The Jittor beam search against the PyTorch one: same checkpoints, same contexts, files exchanged only.

The PyTorch side runs in the torch environment as a separate process: NLG_pytorch/src/gpt2_beam.py for the
command line, and its generate() on a small configuration (a vocabulary of 2048 keeps 200 contexts quick).
"""
import json
import os
import subprocess
from dataclasses import asdict

import jittor as jt
import numpy as np
import pytest

from common_data.decoding.beam import BeamSettings, banned_ngram_tokens, unique_queries
from common_data.model.checkpoint import checkpoint_metadata, load_tensors, save_model_checkpoint, save_tensors
from common_data.model.gpt2_config import AdapterConfig, GPT2Config, config_for_card
from common_data.model.init_params import init_adapter_params
from common_data.util.jsonl import read_jsonl, write_jsonl
from common_data.util.paths import REPO_ROOT
from common_data.model.synthetic_model import peaked_arrays
from NLG_jittor.src import gpt2_beam
from NLG_jittor.src.beam_search import generate
from NLG_jittor.src.ops import log_softmax

SMALL = GPT2Config(vocab_size=2048, n_embd=64, n_layer=2, n_head=4, n_positions=128)
RECIPE = BeamSettings(beam=4, eval_len=40, length_penalty=0.8, no_repeat_ngram_size=4)
CARD = "gpt2.tiny"

# generate() of NLG_pytorch on the files this module writes: weights, contexts, settings -> token lists
TORCH_GENERATE = """
import json, sys
import torch
from common_data.decoding.beam import BeamSettings
from common_data.model.checkpoint import load_tensors
from common_data.model.gpt2_config import GPT2Config
from common_data.util.jsonl import read_jsonl, write_jsonl
from NLG_pytorch.src.beam_search import generate
from NLG_pytorch.src.gpt2_beam import decoding_model
torch.set_num_threads(1)
folder = sys.argv[1]
spec = json.load(open(f"{folder}/spec.json"))
arrays, _ = load_tensors(f"{folder}/weights.safetensors")
model = decoding_model(GPT2Config(**spec["config"]), arrays, torch.device("cpu"))
queries = [row["context"] for row in read_jsonl(f"{folder}/contexts.jsonl")]
found = generate(model, queries, BeamSettings(**spec["settings"]), spec["batch_size"], torch.device("cpu"), False)
write_jsonl(f"{folder}/torch.jsonl", [{"tokens": tokens} for tokens in found])
"""


def torch_env():
    return {key: value for key, value in os.environ.items() if key not in ("NLG_FRAMEWORK", "VIRTUAL_ENV")}


def run_torch(*argv):
    """A command in the torch environment, as a separate process."""
    result = subprocess.run([str(REPO_ROOT / "environments" / "run"), "torch", "python", *map(str, argv)],
                            cwd=REPO_ROOT, env=torch_env(), capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"torch side failed:\n{result.stderr[-4000:]}"


@pytest.fixture(scope="module", autouse=True)
def cpu():
    jt.flags.use_cuda = 0


@pytest.fixture(scope="module")
def contexts(shared):
    """The first 200 distinct E2E test contexts, their ids folded into the small vocabulary."""
    rows = read_jsonl(shared / "fixtures/seed_run/e2e_test_sampled_encoded.jsonl")
    queries, _ = unique_queries([row["context"] for row in rows])
    return [[token % SMALL.vocab_size for token in query] for query in queries[:200]]


@pytest.fixture(scope="module")
def arrays():
    return peaked_arrays(SMALL, seed=0)


def torch_generate(folder, arrays, queries, settings, batch_size):
    save_tensors(folder / "weights.safetensors", arrays)
    write_jsonl(folder / "contexts.jsonl", [{"context": query} for query in queries])
    spec = {"config": SMALL.to_dict(), "settings": asdict(settings),
            "batch_size": batch_size}
    (folder / "spec.json").write_text(json.dumps(spec))
    run_torch("-c", TORCH_GENERATE, folder)
    return [row["tokens"] for row in read_jsonl(folder / "torch.jsonl")]


@jt.no_grad()
def lora_score(model, prompt, tokens, settings):
    """microsoft/LoRA's score of one hypothesis, without cache: sum of log p after the n-gram bans on the
    logits, divided by length ** length_penalty."""
    logits = model(jt.array([prompt + tokens]))[0][0, len(prompt) - 1:-1]
    for step in range(len(tokens)):
        _, banned = banned_ngram_tokens(np.asarray([tokens[:step]], np.int64), settings.no_repeat_ngram_size)
        if len(banned):
            logits[step, jt.array(banned)] = float("-inf")
    log_probs = log_softmax(logits).numpy().astype(np.float64)
    return log_probs[np.arange(len(tokens)), tokens].sum() / len(tokens) ** settings.length_penalty


def test_beam_search_equals_torch_up_to_ties(tmp_path, arrays, contexts):
    model = gpt2_beam.decoding_model(SMALL, arrays, "cpu")
    found = generate(model, contexts, RECIPE, batch_size=32, device="cpu", progress=False)
    expected = torch_generate(tmp_path, arrays, contexts, RECIPE, 32)
    differing = [i for i, (a, b) in enumerate(zip(found, expected)) if a != b]
    assert len(found) == 200 and len(differing) <= 2, differing
    for index in differing:
        scores = [lora_score(model, contexts[index], tokens, RECIPE) for tokens in (found[index], expected[index])]
        assert abs(scores[0] - scores[1]) < 1e-4, (index, scores)
    # the synthetic model ends hypotheses at varied lengths, some only at eval_len
    assert len({len(tokens) for tokens in found}) > 3 and any(tokens[-1] == 628 for tokens in found)


def test_greedy_search_equals_torch(tmp_path, arrays, contexts):
    settings = BeamSettings(beam=1, eval_len=32, no_repeat_ngram_size=4)
    found = generate(gpt2_beam.decoding_model(SMALL, arrays, "cpu"), contexts[:16], settings, 8, "cpu", progress=False)
    assert found == torch_generate(tmp_path, arrays, contexts[:16], settings, 8)


# ---- the command line, on a model card


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, shared):
    """A gpt2.tiny base checkpoint and six rows of four distinct E2E contexts (rows 0 and 4 share theirs)."""
    folder = tmp_path_factory.mktemp("cli")
    config = config_for_card(CARD)
    save_tensors(folder / "base.safetensors", peaked_arrays(config, seed=1), {"config": config.to_dict()})
    rows = read_jsonl(shared / "fixtures/seed_run/e2e_test_sampled_encoded.jsonl")
    queries, _ = unique_queries([row["context"] for row in rows])
    chosen = [queries[i] for i in (0, 1, 20, 40, 0, 1)]
    write_jsonl(folder / "test.jsonl", [{"context": context, "completion": [628]} for context in chosen])
    return folder


def beam_argv(folder, base, output_file, beam):
    return ["--data", folder / "test.jsonl", "--model_card", CARD, "--init_checkpoint", base, "--batch_size", "3",
            "--seq_len", "128", "--eval_len", "12", "--beam", beam, "--length_penalty", "0.8",
            "--work_dir", folder, "--output_file", output_file, "--no_progress"]


@pytest.mark.parametrize("beam", [1, 3], ids=["greedy", "beam3"])
def test_cli_writes_the_file_torch_writes(cli_files, beam):
    base = cli_files / "base.safetensors"
    run_torch(REPO_ROOT / "NLG_pytorch/src/gpt2_beam.py", *beam_argv(cli_files, base, f"torch{beam}.jsonl", beam))
    argv = beam_argv(cli_files, base, f"jittor{beam}.jsonl", beam)
    assert gpt2_beam.main([str(arg) for arg in argv]) == 0
    jittor_file = (cli_files / f"jittor{beam}.jsonl").read_text()
    assert jittor_file == (cli_files / f"torch{beam}.jsonl").read_text()
    rows = [json.loads(line) for line in jittor_file.splitlines()]
    assert [row["id"] for row in rows] == list(range(6)) and all(len(row["predict"]) == 12 for row in rows)
    record = json.loads((cli_files / "run.beam.json").read_text())
    assert record["framework"]["name"] == "jittor" and (record["rows"], record["distinct_contexts"]) == (6, 4)
    assert {"setup", "decode", "write"} <= set(record["phases_s"]) and record["peak_memory"]["bytes"] > 0


def test_cli_names_the_tensor_that_does_not_fit(cli_files, capsys):
    base, metadata = load_tensors(cli_files / "base.safetensors")
    base["h.1.mlp.c_fc.weight"] = base["h.1.mlp.c_fc.weight"][:, :100]
    wrong = cli_files / "wrong.safetensors"
    save_tensors(wrong, base, metadata)
    assert gpt2_beam.main([str(arg) for arg in beam_argv(cli_files, wrong, "wrong.jsonl", 1)]) == 1
    error = capsys.readouterr().err
    assert str(wrong) in error and "h.1.mlp.c_fc.weight" in error and "(256, 100)" in error \
        and "(256, 1024)" in error


def test_cli_checks_adapter_against_the_kind_the_checkpoint_records(cli_files, capsys):
    config = config_for_card(CARD)
    adapter_config = AdapterConfig(adapter="dora", lora_dim=4, lora_alpha=32.0)
    checkpoint = save_model_checkpoint(cli_files, 5, init_adapter_params(config, adapter_config, seed=3),
                                       checkpoint_metadata(config, adapter_config, "parallel"))
    argv = [*beam_argv(cli_files, cli_files / "base.safetensors", "dora.jsonl", 1), "--adapter_checkpoint",
            checkpoint, "--adapter", "lora"]
    assert gpt2_beam.main([str(arg) for arg in argv]) == 1
    assert capsys.readouterr().err.strip() == \
        f"gpt2_beam.py: error: {checkpoint}: dora adapters, --adapter says lora " \
        "(without --adapter the checkpoint's own kind is taken)"
