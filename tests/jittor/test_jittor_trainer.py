"""NLG_jittor/src/gpt2_ft.py against NLG_pytorch/src/gpt2_ft.py, and on its own: losses, checkpoints, resume, NaN stop,
MPI ranks.

For the comparisons both trainers run as processes of their environments (environments/run torch|jittor), side by
side with one thread each, and exchange only files. Dropout is off wherever the frameworks are compared (their
random numbers differ), except where both draw the masks from one generator (--dropout_rng shared).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import jittor as jt
import numpy as np
import pytest

from common_data.model.checkpoint import load_model_checkpoint, load_tensors, trainer_checkpoint_path
from common_data.data.encoding import encode_rows, load_tokenizer
from common_data.util.jsonl import read_jsonl, write_jsonl
from common_data.util.paths import REPO_ROOT
from common_data.training.resume import newest_resumable_step
from common_data.training.runlog import read_metrics
from NLG_jittor.src import gpt2_ft
from NLG_jittor.src.distributed import Ranks
from NLG_jittor.src.rng_state import restore_rng_state, rng_state_arrays

STEPS = 120
SAVE_INTERVAL = 50  # checkpoints at 50, 100 and the last step
RESUME_STEP = 100
SWITCH_STEP = 30
TRAINER_FOLDERS = {"torch": "NLG_pytorch", "jittor": "NLG_jittor"}
RUNS = {
    "lora": ["--lora_dim", "4", "--lora_alpha", "32", "--lr", "0.002", "--warmup_step", "10",
             "--label_smooth", "0.1"],
    "seq2par": ["--adapter", "jelly", "--jelly_mode", "seq2par", "--switch_step", str(SWITCH_STEP),
                "--lora_targets", "q,v,c_fc", "--lora_dim", "4", "--lora_alpha", "32", "--lr", "0.002",
                "--warmup_step", "10", "--clip", "1.0"],
}


@pytest.fixture(scope="module")
def e2e_encoded(shared, tmp_path_factory):
    """The first 400 and the last 24 rows of the 18% E2E training sample, encoded by the data pipeline."""
    rows = read_jsonl(shared / "datasets/e2e/train_sampled18_formatted.jsonl")
    tokenizer = load_tokenizer(shared / "vocab")
    folder = tmp_path_factory.mktemp("e2e_encoded")
    write_jsonl(folder / "train.jsonl", encode_rows(rows[:400], tokenizer))
    write_jsonl(folder / "valid.jsonl", encode_rows(rows[-24:], tokenizer))
    return {"train": folder / "train.jsonl", "valid": folder / "valid.jsonl"}


def flags(data, work_dir, *extra, batch_size=4):
    """gpt2_ft.py's command line on gpt2.tiny, small batches of short sequences."""
    return ["--train_data", str(data["train"]), "--valid_data", str(data["valid"]), "--model_card", "gpt2.tiny",
            "--work_dir", str(work_dir), "--train_batch_size", str(batch_size), "--valid_batch_size", "8",
            "--seq_len", "64", "--random_seed", "3", "--correct_bias", "--adam_beta2", "0.999",
            "--weight_decay", "0.01", "--log_interval", "1", *extra]


def comparison_flags(data, work_dir, run):
    # the LM head over 50257 tokens is most of the work: batches of 2 keep the steps quick
    return flags(data, work_dir, *RUNS[run], "--max_step", str(STEPS), "--save_interval", str(SAVE_INTERVAL),
                 "--eval_interval", str(STEPS // 2), batch_size=2)


def one_thread_environment():
    """os.environ for a trainer process that shares the cores: one OpenMP thread (threads that outnumber the cores
    wait on each other), and no trace of the environment this test runs in."""
    env = {key: value for key, value in os.environ.items() if key not in ("NLG_FRAMEWORK", "VIRTUAL_ENV")}
    return {**env, "OMP_NUM_THREADS": "1"}


def start_trainer(framework, argv):
    """The framework's gpt2_ft.py in its environment, in the background."""
    command = [str(REPO_ROOT / "environments" / "run"), framework, "python",
               str(REPO_ROOT / TRAINER_FOLDERS[framework] / "src" / "gpt2_ft.py"), *argv]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=one_thread_environment(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finish(processes):
    """Wait for all the processes, then check that each succeeded."""
    errors = [process.communicate(timeout=900)[1] for process in processes]
    for process, stderr in zip(processes, errors):
        assert process.returncode == 0, f"{' '.join(process.args[:4])} failed:\n{stderr[-4000:]}"


def events(work_dir, kind):
    return [event for event in read_metrics(work_dir / "metrics.jsonl") if event["event"] == kind]


def field(work_dir, kind, name):
    return [event[name] for event in events(work_dir, kind)]


@pytest.fixture(scope="module")
def paired_runs(e2e_encoded, tmp_path_factory):
    """{run: (torch work_dir, jittor work_dir)}: both trainers on the same configurations."""
    folder = tmp_path_factory.mktemp("paired")
    pairs = {run: (folder / f"torch_{run}", folder / f"jittor_{run}") for run in RUNS}
    for run, work_dirs in pairs.items():
        finish([start_trainer(framework, comparison_flags(e2e_encoded, work_dir, run))
                for framework, work_dir in zip(("torch", "jittor"), work_dirs)])
    return pairs


@pytest.mark.parametrize("run", sorted(RUNS))
def test_every_logged_loss_matches_torch(paired_runs, run):
    torch_dir, jittor_dir = paired_runs[run]
    assert field(jittor_dir, "train", "step") == field(torch_dir, "train", "step") == list(range(1, STEPS + 1))
    for name in ("loss", "avg_loss"):
        torch_values, jittor_values = (np.array(field(folder, "train", name)) for folder in (torch_dir, jittor_dir))
        assert np.abs(jittor_values - torch_values).max() <= 1e-4, name
    assert field(jittor_dir, "train", "lr") == field(torch_dir, "train", "lr")
    assert field(jittor_dir, "train", "tokens") == field(torch_dir, "train", "tokens")
    assert field(jittor_dir, "train", "adapter_mode") == field(torch_dir, "train", "adapter_mode")
    assert field(jittor_dir, "eval", "step") == [STEPS // 2, STEPS]
    assert field(jittor_dir, "eval", "valid_loss") == pytest.approx(field(torch_dir, "eval", "valid_loss"), abs=1e-4)
    losses = field(jittor_dir, "train", "loss")
    assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 0.3, "the adapters should learn"


def test_seq2par_switches_at_the_same_step_in_both(paired_runs):
    torch_dir, jittor_dir = paired_runs["seq2par"]
    for folder in (torch_dir, jittor_dir):
        assert [(event["step"], event["adapter_mode"]) for event in events(folder, "switch")] == \
            [(SWITCH_STEP, "parallel")]
    modes = field(jittor_dir, "train", "adapter_mode")
    assert modes == ["sequential"] * SWITCH_STEP + ["parallel"] * (STEPS - SWITCH_STEP)


@pytest.mark.parametrize("run", sorted(RUNS))
def test_checkpoints_have_the_same_files_names_and_metadata(paired_runs, run):
    torch_dir, jittor_dir = paired_runs[run]
    assert sorted(path.name for path in jittor_dir.iterdir()) == sorted(path.name for path in torch_dir.iterdir())
    for step in (SAVE_INTERVAL, STEPS):
        torch_arrays, torch_metadata = load_model_checkpoint(torch_dir / f"model.{step}.safetensors")
        jittor_arrays, jittor_metadata = load_model_checkpoint(jittor_dir / f"model.{step}.safetensors")
        assert jittor_metadata == torch_metadata
        assert json.loads((jittor_dir / f"model.{step}.json").read_text()) == jittor_metadata
        assert {name: a.shape for name, a in jittor_arrays.items()} == \
            {name: a.shape for name, a in torch_arrays.items()}
        for name, array in torch_arrays.items():
            assert jittor_arrays[name].dtype == np.float32
            # the adapters drift apart by what float32 rounding lets the training steps amplify
            np.testing.assert_allclose(jittor_arrays[name], array, atol=5e-4 * max(np.abs(array).max(), 1e-3),
                                       err_msg=name)
        torch_state, torch_trainer = load_tensors(trainer_checkpoint_path(torch_dir, step))
        jittor_state, jittor_trainer = load_tensors(trainer_checkpoint_path(jittor_dir, step))
        assert {name for name in jittor_state if not name.startswith("rng.")} == \
            {name for name in torch_state if not name.startswith("rng.")}
        assert [name for name in jittor_state if name.startswith("rng.")] == ["rng.jittor.0"]
        assert set(jittor_trainer) == set(torch_trainer)
        for key in ("optimizer_steps", "scaler", "adapter_mode", "world_size", "max_step"):
            assert jittor_trainer[key] == torch_trainer[key], key
        assert {**jittor_trainer["args"], "work_dir": None} == {**torch_trainer["args"], "work_dir": None}


def test_shared_dropout_masks_align_the_frameworks_where_their_own_do_not(tiny_trainer_argv, tmp_path):
    # adapter dropout and label smoothing as in the LoRA paper; B = 0 until the first update, so the masks show
    # from step 2 on (those of step 1 in the gradients, those of step 2 in the loss)
    argv = [*tiny_trainer_argv, "--lora_dropout", "0.1", "--label_smooth", "0.1", "--lr", "0.01", "--max_step", "2",
            "--log_interval", "1"]
    losses = {}
    for rng in ("framework", "shared"):
        work_dirs = [tmp_path / f"{framework}_{rng}" for framework in TRAINER_FOLDERS]
        finish([start_trainer(framework, [*argv, "--dropout_rng", rng, "--work_dir", str(work_dir)])
                for framework, work_dir in zip(TRAINER_FOLDERS, work_dirs)])
        losses[rng] = [np.array(field(work_dir, "train", "loss")) for work_dir in work_dirs]
        assert {json.loads((work_dir / "run.json").read_text())["args"]["dropout_rng"] for work_dir in work_dirs} \
            == {rng}
    torch_shared, jittor_shared = losses["shared"]
    torch_own, jittor_own = losses["framework"]
    assert len(torch_shared) == len(jittor_shared) == 2
    assert np.abs(jittor_shared - torch_shared).max() <= 1e-4
    assert abs(jittor_own[1] - torch_own[1]) > 1e-3
    assert abs(torch_shared[0] - torch_own[0]) <= 1e-6 < abs(torch_shared[1] - torch_own[1])


def copy_up_to(source, target, step):
    """A work_dir holding `source`'s records and its checkpoints up to `step`, as if the run had stopped there."""
    shutil.copytree(source, target)
    for path in target.glob("*.*.*"):
        if int(path.name.split(".")[1]) > step:
            path.unlink()
    assert newest_resumable_step(target) == step


def resume_each_from_the_other(torch_dir, jittor_dir, tmp_path, step, flags_for):
    """Each trainer resumes from the other's checkpoints of `step` (flags_for(work_dir): the run's flags);
    returns (torch resumed folder, jittor resumed folder)."""
    torch_resumed, jittor_resumed = tmp_path / "torch_from_jittor", tmp_path / "jittor_from_torch"
    copy_up_to(jittor_dir, torch_resumed, step)
    copy_up_to(torch_dir, jittor_resumed, step)
    finish([start_trainer(framework, [*flags_for(work_dir), "--resume"])
            for framework, work_dir in (("torch", torch_resumed), ("jittor", jittor_resumed))])
    return torch_resumed, jittor_resumed


@pytest.mark.parametrize("run", sorted(RUNS))
def test_each_trainer_resumes_from_the_checkpoints_of_the_other(paired_runs, e2e_encoded, tmp_path, run):
    torch_dir, jittor_dir = paired_runs[run]
    torch_resumed, jittor_resumed = resume_each_from_the_other(
        torch_dir, jittor_dir, tmp_path, RESUME_STEP, lambda work_dir: comparison_flags(e2e_encoded, work_dir, run))
    for resumed, reference in ((torch_resumed, jittor_dir), (jittor_resumed, torch_dir)):
        assert field(resumed, "train", "step") == list(range(1, STEPS + 1))
        resumed_losses, reference_losses = (np.array(field(folder, "train", "loss")[RESUME_STEP:])
                                            for folder in (resumed, reference))
        assert np.abs(resumed_losses - reference_losses).max() <= 1e-4
    assert json.loads((jittor_resumed / "run.json").read_text())["previous_runs"][0]["framework"]["name"] == "torch"


METHOD_STEPS, METHOD_RESUME_STEP = 12, 6
METHOD_RUNS = {
    "dora c_attn rslora loraplus": ["--adapter", "dora", "--lora_targets", "c_attn,mlp_proj", "--lora_dim", "4",
                                    "--lora_alpha", "32", "--use_rslora", "--loraplus_lr_ratio", "4"],
    "pissa": ["--adapter", "pissa", "--lora_targets", "q,v,c_fc", "--lora_dim", "4", "--lora_alpha", "32"],
    "bitfit": ["--adapter", "bitfit"],
    # rank allocations at steps 4, 6, 8 and the final one at 9, on both sides of the resumed step
    "adalora": ["--adapter", "adalora", "--lora_targets", "c_attn,c_fc", "--init_r", "4", "--target_r", "2",
                "--tinit", "2", "--tfinal", "3", "--deltaT", "2", "--lora_alpha", "32"],
}


def allocations(work_dir):
    """AdaLoRA's rank allocations (step, budget, kept ranks per triplet) as the trainer logged them."""
    return [(event["step"], event["budget"], event["ranks"]) for event in events(work_dir, "rank_allocation")]


def method_flags(data, work_dir, run):
    return flags(data, work_dir, *METHOD_RUNS[run], "--lr", "0.002", "--warmup_step", "2", "--max_step",
                 str(METHOD_STEPS), "--save_interval", str(METHOD_RESUME_STEP), "--eval_interval", str(METHOD_STEPS),
                 batch_size=2)


@pytest.mark.parametrize("run", sorted(METHOD_RUNS))
def test_each_method_trains_as_in_torch_and_resumes_from_its_checkpoints(e2e_encoded, tmp_path, run):
    torch_dir, jittor_dir = tmp_path / "torch", tmp_path / "jittor"
    finish([start_trainer(framework, method_flags(e2e_encoded, work_dir, run))
            for framework, work_dir in (("torch", torch_dir), ("jittor", jittor_dir))])
    losses = {folder: np.array(field(folder, "train", "loss")) for folder in (torch_dir, jittor_dir)}
    assert len(losses[jittor_dir]) == METHOD_STEPS
    assert np.abs(losses[jittor_dir] - losses[torch_dir]).max() <= 1e-4
    assert allocations(jittor_dir) == allocations(torch_dir)
    assert [step for step, _, _ in allocations(torch_dir)] == ([4, 6, 8, 9] if run == "adalora" else [])
    for step in (METHOD_RESUME_STEP, METHOD_STEPS):
        torch_arrays, torch_metadata = load_model_checkpoint(torch_dir / f"model.{step}.safetensors")
        jittor_arrays, jittor_metadata = load_model_checkpoint(jittor_dir / f"model.{step}.safetensors")
        assert jittor_metadata == torch_metadata
        assert {name: a.shape for name, a in jittor_arrays.items()} == {name: a.shape for name, a in torch_arrays.items()}
    torch_resumed, jittor_resumed = resume_each_from_the_other(
        torch_dir, jittor_dir, tmp_path, METHOD_RESUME_STEP, lambda work_dir: method_flags(e2e_encoded, work_dir, run))
    for resumed, reference in ((torch_resumed, jittor_dir), (jittor_resumed, torch_dir)):
        resumed_losses = np.array(field(resumed, "train", "loss")[METHOD_RESUME_STEP:])
        assert len(resumed_losses) == METHOD_STEPS - METHOD_RESUME_STEP
        assert np.abs(resumed_losses - losses[reference][METHOD_RESUME_STEP:]).max() <= 1e-4
        assert allocations(resumed) == allocations(reference)


def test_the_jittor_trainer_runs_without_torch(e2e_encoded, tmp_path):
    assert gpt2_ft.main(flags(e2e_encoded, tmp_path, "--lora_dim", "4", "--max_step", "2")) == 0
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "finished"
    assert "torch" not in sys.modules and importlib.util.find_spec("torch") is None


class SimulatedCrash(Exception):
    pass


def test_an_interrupted_and_resumed_run_repeats_the_uninterrupted_one(e2e_encoded, tmp_path, monkeypatch, capsys):
    # JELLY switching before the checkpoint and adapter dropout: resume must restore mode, moments and RNG
    argv = ["--adapter", "jelly", "--switch_step", "5", "--lora_targets", "q,v,c_fc", "--lora_dim", "4",
            "--lora_alpha", "32", "--lora_dropout", "0.1", "--lr", "0.002", "--warmup_step", "3", "--max_step", "12",
            "--save_interval", "6", "--log_interval", "2", "--eval_interval", "6"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert gpt2_ft.main(flags(e2e_encoded, whole, *argv, batch_size=2)) == 0

    original = gpt2_ft.Trainer.train_batch

    def crash_in_step_10(trainer, batch):
        if trainer.progress.step == 9:
            raise SimulatedCrash
        return original(trainer, batch)

    monkeypatch.setattr(gpt2_ft.Trainer, "train_batch", crash_in_step_10)
    with pytest.raises(SimulatedCrash):
        gpt2_ft.main(flags(e2e_encoded, parts, *argv, batch_size=2))
    monkeypatch.undo()
    assert field(parts, "train", "step") == [2, 4, 6, 8]
    capsys.readouterr()
    assert gpt2_ft.main(flags(e2e_encoded, parts, *argv, "--resume", batch_size=2)) == 0
    assert f"resuming from {parts / 'model.6.safetensors'}" in capsys.readouterr().out

    def logged(folder):
        return [(e["step"], e["epoch"], e["loss"], e["avg_loss"], e["lr"], e["adapter_mode"])
                for e in events(folder, "train")]

    assert logged(parts) == logged(whole)
    assert field(parts, "eval", "valid_loss") == field(whole, "eval", "valid_loss")
    final_parts, _ = load_model_checkpoint(parts / "model.12.safetensors")
    final_whole, _ = load_model_checkpoint(whole / "model.12.safetensors")
    assert all(np.array_equal(final_parts[name], final_whole[name]) for name in final_whole)
    run = json.loads((parts / "run.json").read_text())
    assert run["resumed_from_step"] == 6 and len(run["previous_runs"]) == 1
    assert run["framework"]["name"] == "jittor" and run["peak_memory"]["bytes"] > 0


def test_a_checkpoint_reseeds_jittor_so_that_a_restore_repeats_the_draws():
    ranks = Ranks(0, 1, "cpu")
    jt.set_seed(5)
    state = rng_state_arrays(ranks)
    after_save = jt.random((16,)).numpy()
    assert not np.array_equal(jt.random((16,)).numpy(), after_save)
    restore_rng_state(state, ranks)
    np.testing.assert_array_equal(jt.random((16,)).numpy(), after_save)
    jt.set_seed(6)
    assert rng_state_arrays(ranks)["rng.jittor.0"][0] != state["rng.jittor.0"][0]


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(e2e_encoded, tmp_path, capsys):
    # the update of step 2 runs at lr 5e29: the weights blow up and the loss of step 3 is not finite
    argv = ["--lora_dim", "4", "--lr", "1e30", "--scheduler", "constant", "--warmup_step", "2", "--save_interval", "1",
            "--eval_interval", "100"]
    blown = tmp_path / "blown"
    assert gpt2_ft.main(flags(e2e_encoded, blown, *argv, "--max_step", "6")) == 1
    message = capsys.readouterr().err
    assert "the training loss is" in message and "at step 3" in message
    assert newest_resumable_step(blown) == 2 and not (blown / "model.3.safetensors").exists()
    run = json.loads((blown / "run.json").read_text())
    assert run["status"].startswith("stopped") and run["final_step"] == 2
    assert events(blown, "end")[0]["status"] == run["status"]

    assert gpt2_ft.main(flags(e2e_encoded, tmp_path / "reference", *argv, "--max_step", "2")) == 0
    kept, _ = load_model_checkpoint(blown / "model.2.safetensors")
    reference, _ = load_model_checkpoint(tmp_path / "reference" / "model.2.safetensors")
    assert all(np.array_equal(kept[name], reference[name]) for name in reference)


def test_mixed_precision_is_refused_by_name(e2e_encoded, tmp_path):
    with pytest.raises(SystemExit, match="--fp16 / --bf16"):
        gpt2_ft.main(flags(e2e_encoded, tmp_path, "--lora_dim", "4", "--max_step", "1", "--bf16"))


def test_two_mpi_ranks_give_the_losses_of_one_process(e2e_encoded, tmp_path):
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun (Debian openmpi-bin) is not installed")
    # gradient accumulation, and the JELLY switch at step 2 changes the shape of the c_fc adapters
    argv = ["--grad_acc", "2", "--adapter", "jelly", "--switch_step", "2",
            "--lora_targets", "q,v,c_fc", "--lora_dim", "4", "--lora_alpha", "32", "--lr", "0.002", "--clip", "1.0",
            "--max_step", "6", "--save_interval", "6", "--eval_interval", "6"]
    single, ranks = tmp_path / "single", tmp_path / "ranks"
    assert gpt2_ft.main(flags(e2e_encoded, single, *argv, batch_size=8)) == 0
    result = subprocess.run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", sys.executable,
                             gpt2_ft.__file__, *flags(e2e_encoded, ranks, *argv, batch_size=8)],
                            env=one_thread_environment(), capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("| epoch") == 6  # only rank 0 prints

    assert field(ranks, "train", "step") == [1, 2, 3, 4, 5, 6]
    assert field(ranks, "train", "adapter_mode") == ["sequential"] * 2 + ["parallel"] * 4
    assert field(ranks, "train", "loss") == pytest.approx(field(single, "train", "loss"), abs=1e-5)
    assert field(ranks, "train", "tokens") == field(single, "train", "tokens")
    assert field(ranks, "eval", "valid_loss") == pytest.approx(field(single, "eval", "valid_loss"), abs=1e-5)
    assert json.loads((ranks / "run.json").read_text())["world_size"] == 2
    assert sorted(load_tensors(ranks / "trainer.6.safetensors")[0])[-2:] == ["rng.jittor.0", "rng.jittor.1"]
    final_ranks, _ = load_model_checkpoint(ranks / "model.6.safetensors")
    final_single, _ = load_model_checkpoint(single / "model.6.safetensors")
    for name, array in final_single.items():
        np.testing.assert_allclose(final_ranks[name], array, atol=1e-5, err_msg=name)
