"""The runs behind a verdict (`python -m alignment verify`): segments of a run replayed by the other framework from
its saved trainer states, and the float32 envelope, a second PyTorch run of the recipe whose every product is summed
in another order.

How: oneDNN held to AVX (ONEDNN_MAX_CPU_ISA=AVX: no fused multiply-adds, other blocking) changes the path of
PyTorch's products of the blocks' weights and of the LM head (NLG_pytorch/src/ops.py sends them to oneDNN), MKL's
conditional numerical reproducibility set to COMPATIBLE (MKL_CBWR) sends torch's own products (the adapters') to
MKL's generic code path, and OPENBLAS_CORETYPE=Sandybridge does the same for numpy's; each sums and rounds in
another order: most of a GPT-2-sized product's outputs differ in their last bits
(tests/torch/test_envelope_perturbation.py), in every forward and backward product of every step, as they do
between two frameworks. A thread count does not do it (PyTorch's CPU products give the same bits with 1 and 2
threads). Where PyTorch has no MKL (the variable then changes nothing), the envelope moves every base weight by one
ulp instead: a fixed last-bit change of the function rather than rounding at every step, whose drift starts later
and grows more slowly (DART's default, docs/verdicts.md).
"""
import datetime
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from alignment.runs import read_run
from alignment.verdict import OTHER, read_envelope, replay_folder
from common_data.util.atomic import atomic_open
from common_data.model.checkpoint import load_tensors, save_tensors, trainer_checkpoint_path
from common_data.model.gpt2_config import config_for_card
from common_data.model.init_params import init_base_params
from common_data.util.paths import REPO_ROOT

TRAINERS = {"torch": "NLG_pytorch/src/gpt2_ft.py", "jittor": "NLG_jittor/src/gpt2_ft.py"}
SUMMATION_ORDER = {"ONEDNN_MAX_CPU_ISA": "AVX", "MKL_CBWR": "COMPATIBLE", "OPENBLAS_CORETYPE": "Sandybridge"}
PERTURBATIONS = {"summation order": "every product summed in another order: ONEDNN_MAX_CPU_ISA=AVX (oneDNN's kernels "
                                    "without FMA), MKL_CBWR=COMPATIBLE (MKL's generic code path) and "
                                    "OPENBLAS_CORETYPE=Sandybridge (OpenBLAS's kernels without FMA)",
                 "one ulp": "every base weight moved by one ulp, up or down at random (numpy seed 0)"}
# arguments that do not change the losses of a run: an envelope measured with other values still holds
NOT_RECIPE = ("work_dir", "init_checkpoint", "valid_data", "valid_batch_size", "log_interval", "eval_interval",
              "eval_at_start", "save_interval", "resume", "resume_from", "stop_step", "config", "debug", "platform",
              "local_rank", "tensorboard")


ENVELOPES = REPO_ROOT / "log" / "envelopes"


def default_envelope_path(args, run_folder):
    """log/envelopes/<recipe>-<digest of the arguments that decide the losses>.json for a run of a recipe (its
    --config a YAML file), else run_folder/envelope.json."""
    config = args.get("config")
    if config and Path(config).suffix in (".yaml", ".yml"):
        digest = hashlib.sha256(json.dumps(recipe_key(args), sort_keys=True).encode()).hexdigest()[:8]
        return ENVELOPES / f"{Path(config).stem}-{digest}.json"
    return Path(run_folder) / "envelope.json"


def cached_envelope(run):
    """The Envelope `verify` keeps for a run (a RunLog) of these arguments, or None."""
    args = run.records.get("run", {}).get("args")
    if args is None:
        return None
    path = default_envelope_path(args, run.source)
    return read_envelope(path) if envelope_matches(path, args) else None


def run_args(run):
    """The arguments a run (a RunLog) was started with, from its run.json."""
    record = run.records.get("run")
    if record is None or "args" not in record:
        raise ValueError(f"{run.source}: no run.json with the run's arguments")
    return record["args"]


def trainer(framework, run_folder, work_dir, *flags, environment=None):
    """Run the framework's gpt2_ft.py with `run_folder`'s arguments and these flags, in its environment (with the
    variables `environment` added); its output goes to work_dir.log. Returns work_dir."""
    never = run_args(read_run(run_folder))["grad_acc"] * 10 ** 9  # an interval no run reaches
    command = [str(REPO_ROOT / "environments" / "run"), framework, "python", str(REPO_ROOT / TRAINERS[framework]),
               "--config", str(Path(run_folder).resolve() / "run.json"), "--work_dir", str(Path(work_dir).resolve()),
               "--eval_interval", str(never), "--save_interval", str(never), *map(str, flags)]
    Path(work_dir).parent.mkdir(parents=True, exist_ok=True)
    with open(f"{work_dir}.log", "w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, check=False,
                                env={**os.environ, **(environment or {})})
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit status {result.returncode}); its output: {work_dir}.log")
    return Path(work_dir)


def replay_segment(source_run, source, replaying_run, start, steps):
    """The framework of `replaying_run` restarts from `source_run`'s trainer.<start> and runs `steps` steps into
    replaying_run/replays/from_<source>.<start>; a complete replay already there is kept."""
    folder = replay_folder(replaying_run, source, start)
    if (folder / "run.json").is_file() and json.loads((folder / "run.json").read_text()).get("status") == "finished":
        return folder
    checkpoint = trainer_checkpoint_path(source_run, start).resolve()
    if not checkpoint.is_file():
        raise ValueError(f"{checkpoint}: missing; the run saves every save_interval steps, a segment starts at one")
    return trainer(OTHER[source], source_run, folder, "--resume_from", checkpoint, "--stop_step", start + steps)


def perturbed_base(args, path):
    """The run's base weights (its --init_checkpoint, else the seed's), each moved by one ulp, written to `path`."""
    if args.get("init_checkpoint"):
        arrays, metadata = load_tensors(args["init_checkpoint"])
    else:
        config = config_for_card(args["model_card"])
        arrays, metadata = init_base_params(config, args["random_seed"]), {"config": config.to_dict()}
    rng = np.random.default_rng(0)
    moved = {}
    for name, array in arrays.items():
        infinity = np.array(np.inf, dtype=array.dtype)  # nextafter in the array's own precision
        moved[name] = np.nextafter(array, np.where(rng.random(array.shape) < 0.5, infinity, -infinity))
    save_tensors(path, moved, metadata)
    return path


def recipe_key(args):
    """The arguments that decide a run's losses, as JSON-ready values. One left unset (None) is left out, so that a
    flag added later, unset, keeps the envelopes measured before it."""
    return {key: value for key, value in sorted(args.items()) if key not in NOT_RECIPE and value is not None}


def step_losses(run_folder):
    table = read_run(run_folder).step_losses.drop_duplicates("step", keep="last").sort_values("step")
    return table["step"].astype(int).tolist(), table["loss"].astype(float).tolist()


def envelope_matches(path, args):
    """Whether the envelope file at `path` was measured for a run of these arguments."""
    if not Path(path).is_file():
        return False
    try:
        measured_for = json.loads(Path(path).read_text(encoding="utf-8")).get("recipe") or {}
        return recipe_key(measured_for) == recipe_key(args)
    except ValueError:
        return False


def perturbed_run(torch_run, work, perturbation):
    """PyTorch again on `torch_run`'s arguments into `work`, perturbed: 'summation order' or 'one ulp'."""
    if perturbation == "summation order":
        return trainer("torch", torch_run, work, environment=SUMMATION_ORDER)
    base = perturbed_base(run_args(read_run(torch_run)), Path(torch_run).resolve() / "envelope_base.safetensors")
    try:
        return trainer("torch", torch_run, work, "--init_checkpoint", base)
    finally:
        base.unlink(missing_ok=True)


def measure_envelope(torch_run, out):
    """Run PyTorch again with every product summed in another order (into torch_run/envelope; one ulp on the base
    where that changes nothing) and write the envelope `out`: both runs' losses at every step, with what it was
    measured on."""
    args = run_args(read_run(torch_run))
    steps, reference = step_losses(torch_run)
    work = Path(torch_run) / "envelope"
    for perturbation in PERTURBATIONS:
        shutil.rmtree(work, ignore_errors=True)
        perturbed_run(torch_run, work, perturbation)
        perturbed_steps, perturbed = step_losses(work)
        if perturbed_steps != steps:
            raise RuntimeError(f"{work}: its steps are not those of {torch_run}")
        if perturbed != reference:
            break
    record = read_run(work).records["run"]
    envelope = {"recipe": recipe_key(args), "perturbation": PERTURBATIONS[perturbation], "kind": perturbation,
                "reference_run": str(torch_run), "machine": record.get("device"),
                "versions": record.get("framework"), "commit": (record.get("git") or {}).get("commit"),
                "date": datetime.date.today().isoformat(), "steps": steps, "reference": reference,
                "perturbed": perturbed}
    with atomic_open(out) as handle:
        json.dump(envelope, handle)
    return out
