"""Layer-by-layer comparison of traces written by NLG_*/src/trace_hooks.py (numpy only).

A trace is (arrays by key, metadata); keys are common_data.trace.names' step/phase/name/item. The reference is
the torch float32 trace; each tensor's tolerance comes from the noise floor: how far the torch float32 run lies
from the torch float64 run (and, when given, how far a framework lies from itself run twice), times SAFETY, plus
a few float32 roundings of the tensor's scale. Where Jittor is over the tolerance, the side further from the
float64 run is the one that is off.
"""
import math
from dataclasses import dataclass

import numpy as np

from common_data.trace import names

SAFETY = 32.0
FLOOR_ROUNDINGS = 8.0
COMPARED_PHASES = ("forward", "backward", "grad", "exp_avg", "exp_avg_sq", "param", "lr")
UPDATE_PHASES = ("lr", "exp_avg", "exp_avg_sq", "param")
IGNORED_ARGS = ("output", "isolate", "float64")


@dataclass(frozen=True)
class Stats:
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    within: float  # share of elements within the tolerance
    bit_exact: bool
    tolerance: float
    torch_vs_float64: float
    jittor_vs_float64: float

    @property
    def over(self):
        return self.max_abs > self.tolerance

    @property
    def ratio(self):
        """max abs / tolerance: over 1 is over the tolerance."""
        if self.tolerance > 0:
            return self.max_abs / self.tolerance
        return math.inf if self.max_abs > 0 else 0.0

    @property
    def side(self):
        """Which framework lies further from the float64 run."""
        return "Jittor" if self.jittor_vs_float64 > self.torch_vs_float64 else "PyTorch"


def max_abs(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max(initial=0.0))


def tolerance(key, torch32, torch64, repeats=()):
    """SAFETY x the noise floor of `key` + FLOOR_ROUNDINGS float32 roundings of its scale."""
    noise = max([max_abs(torch32[key], torch64[key])] + [max_abs(a[key], b[key]) for a, b in repeats])
    scale = float(np.abs(torch64[key]).max(initial=0.0))
    return SAFETY * noise + FLOOR_ROUNDINGS * float(np.finfo(np.float32).eps) * scale


def tensor_stats(value, reference, tol, reference64):
    """Jittor's `value` against torch's `reference` (float32) and the float64 run's `reference64`."""
    value, reference = np.asarray(value, np.float64).ravel(), np.asarray(reference, np.float64).ravel()
    diff = np.abs(value - reference)
    scale = np.abs(reference)
    relative = diff / np.maximum(scale, max(1e-6 * scale.max(initial=0.0), 1e-30))
    norms = np.linalg.norm(value) * np.linalg.norm(reference)
    cosine = float(value @ reference / norms) if norms > 0 else float(np.array_equal(value, reference))
    return Stats(max_abs=float(diff.max(initial=0.0)), max_rel=float(relative.max(initial=0.0)),
                 mean_abs=float(diff.mean()) if diff.size else 0.0, cosine=cosine,
                 within=float((diff <= tol).mean()) if diff.size else 1.0,
                 bit_exact=bool(np.array_equal(value, reference)), tolerance=tol,
                 torch_vs_float64=max_abs(reference, np.ravel(reference64)),
                 jittor_vs_float64=max_abs(value, np.ravel(reference64)))


def compare(jittor, torch32, torch64, repeats=()):
    """{key: Stats} of every compared tensor that both traces hold."""
    stats = {}
    for key in torch32:
        if names.split_key(key)[1] in COMPARED_PHASES and key in jittor:
            stats[key] = tensor_stats(jittor[key], torch32[key], tolerance(key, torch32, torch64, repeats),
                                      torch64[key])
    return stats


def preflight(reference, other, label):
    """What differs between two traces' inputs (arguments, batches, step-0 weights): a list of sentences, empty
    when the runs may be compared. reference and other are (arrays, metadata)."""
    (arrays, metadata), (other_arrays, other_metadata) = reference, other
    problems = []
    if metadata.get("format") != other_metadata.get("format"):
        problems.append(f"{label}: trace format {other_metadata.get('format')}, the reference's is "
                        f"{metadata.get('format')}")
    args, other_args = metadata["args"], other_metadata["args"]
    for flag in sorted(set(args) | set(other_args)):
        if flag not in IGNORED_ARGS and args.get(flag) != other_args.get(flag):
            problems.append(f"{label}: --{flag} {other_args.get(flag)!r}, the reference's is {args.get(flag)!r}")
    batch_keys = sorted(key for key in arrays if names.split_key(key)[1] == "batch")
    for key in batch_keys:
        if key not in other_arrays or not np.array_equal(arrays[key], other_arrays[key]):
            problems.append(f"{label}: the batch differs: {key} {describe_difference(arrays[key], other_arrays.get(key))}")
    digests, other_digests = metadata["step0_sha256"], other_metadata["step0_sha256"]
    if set(digests) != set(other_digests):
        missing, extra = sorted(set(digests) - set(other_digests)), sorted(set(other_digests) - set(digests))
        problems.append(f"{label}: step-0 tensors differ in name: missing {missing[:3]}, extra {extra[:3]}")
    differing = [name for name in sorted(set(digests) & set(other_digests)) if digests[name] != other_digests[name]]
    if differing:
        problems.append(f"{label}: {len(differing)} step-0 tensors are not bit-exact, e.g. {', '.join(differing[:3])}")
    return problems


def describe_difference(a, b):
    if b is None:
        return "is missing"
    if a.shape != b.shape:
        return f"has shape {tuple(b.shape)}, the reference's {tuple(a.shape)}"
    index = tuple(int(i) for i in np.argwhere(a != b)[0])
    return f"at {index}: {b[index]} instead of {a[index]}"


def forward_timeline(n_layer):
    """(name, item) of the forward records in the order they are computed: a module's input, its children, its
    output."""
    events = []

    def visit(name):
        if name != names.LOSS:
            events.append((name, "in"))
        for child in names.children(name, n_layer):
            visit(child)
        events.append((name, "out"))

    for name in names.children(names.ROOT, n_layer):
        visit(name)
    return events


def backward_timeline(n_layer, parameters):
    """(phase, name, item) of the backward records in the order they are computed: each module's output gradient,
    its children's, its parameters' gradients, its input gradient."""
    owned = {}
    for parameter in parameters:
        owned.setdefault(names.parameter_module(parameter), []).append(parameter)
    events = []
    for name, item in reversed(forward_timeline(n_layer)):
        if item == "in":
            events += [("grad", parameter, "") for parameter in owned.get(name, [])]
        events.append(("backward", name, item))
    return events


@dataclass(frozen=True)
class Finding:
    phase: str  # forward, backward, update
    step: int
    name: str  # module (trace name) or parameter
    introduced: bool
    where: str  # one sentence

    def sentence(self):
        kind = "introduced here" if self.introduced else "inherited"
        return f"{self.phase}, step {self.step}: **{self.name}** ({kind}): {self.where}"


def over(stats, key):
    return key in stats and stats[key].over


def first_forward(stats, step, n_layer):
    for name, item in forward_timeline(n_layer):
        if over(stats, names.key(step, "forward", name, item)):
            if item == "out":
                return Finding("forward", step, name, True, "its input agrees, its output does not")
            owner = names.parent(name)
            return Finding("forward", step, owner, True,
                           f"its own code before {name} (the input of {name} differs, {owner}'s input agrees)")
    return None


def first_backward(stats, step, n_layer, parameters, forward):
    for phase, name, item in backward_timeline(n_layer, parameters):
        if not over(stats, names.key(step, phase, name, item)):
            continue
        module = names.parameter_module(name) if phase == "grad" else name
        if forward is not None:
            return Finding("backward", step, module, False, f"the forward pass diverged first, at {forward.name}")
        if phase == "grad":
            return Finding("backward", step, module, True, f"the gradient of {name} differs, that of {module}'s "
                                                           f"output agrees")
        if item == "in":
            return Finding("backward", step, name, True, "the gradient of its output agrees, that of its input "
                                                         "does not")
        owner = names.parent(name)
        return Finding("backward", step, owner, True, f"its own backward code, which gives {name}'s output "
                                                      f"gradient")
    return None


def first_update(stats, step, parameters, backward):
    if over(stats, names.key(step, "lr", "lr")):
        return Finding("update", step, "lr", True, "the learning rate differs")
    for parameter in parameters:
        for phase in UPDATE_PHASES[1:]:
            if over(stats, names.key(step, phase, parameter)):
                inputs_agree = backward is None and not over(stats, names.key(step - 1, "param", parameter))
                where = (f"its gradient and value before the step agree, its {phase} after the step does not"
                         if inputs_agree else "its gradient or its value before the step differs")
                return Finding("update", step, parameter, inputs_agree, where)
    return None


@dataclass(frozen=True)
class Verdict:
    step: int  # the first step with a finding (0: none)
    forward: Finding
    backward: Finding
    update: Finding

    @property
    def findings(self):
        return [finding for finding in (self.forward, self.backward, self.update) if finding is not None]


def verdict(stats, steps, n_layer, parameters):
    """The first step where anything is over the tolerance, and there the first module of each pass."""
    for step in range(1, steps + 1):
        forward = first_forward(stats, step, n_layer)
        backward = first_backward(stats, step, n_layer, parameters, forward)
        update = first_update(stats, step, parameters, backward)
        if forward or backward or update:
            return Verdict(step, forward, backward, update)
    return Verdict(0, None, None, None)


def own_errors(stats, step, n_layer, parameters):
    """Under --isolate: {pass: [names over the tolerance]}, every difference charged to the code that made it.
    Forward: a module's output to the module, a module's input to the module around it. Backward (each module
    got the other trace's gradient of its output): the gradient of a module's input or of its parameters to the
    module, that of a module's output to the module around it. Update: to its parameter."""
    forward, backward = [], []
    for name, item in forward_timeline(n_layer):
        if over(stats, names.key(step, "forward", name, item)):
            charge(forward, name if item == "out" else names.parent(name))
    for phase, name, item in backward_timeline(n_layer, parameters):
        if over(stats, names.key(step, phase, name, item)):
            charge(backward, names.parameter_module(name) if phase == "grad" else
                   name if item == "in" else names.parent(name))
    update = [parameter for parameter in parameters
              if any(over(stats, names.key(step, phase, parameter)) for phase in UPDATE_PHASES[1:])]
    if over(stats, names.key(step, "lr", "lr")):
        update.insert(0, "lr")
    return {"forward": forward, "backward": backward, "update": update}


def charge(owners, owner):
    if owner not in owners:
        owners.append(owner)


def trained_parameters(arrays):
    return [name for (step, phase, name, _) in map(names.split_key, arrays) if step == 0 and phase == "param"]


def trace_steps(arrays):
    return max(step for step, phase, _, _ in map(names.split_key, arrays) if phase == "forward")


@dataclass(frozen=True)
class BeamDifference:
    context: int
    step: int  # first search step whose candidates differ (0: none)
    rank: int
    torch_id: int
    jittor_id: int
    margin: float  # torch's score gap between its candidate and Jittor's at that rank
    max_score_diff: float  # largest |score difference| before that step

    @property
    def near_tie(self):
        return self.margin <= max(10.0 * self.max_score_diff, 1e-5)


def beam_contexts(arrays):
    return sorted({int(name) for _, phase, name, _ in map(names.split_key, arrays) if phase == "beam"})


def beam_steps(arrays, context):
    steps = sorted(step for step, phase, name, item in map(names.split_key, arrays)
                   if phase == "beam" and name == str(context) and item == "ids")
    return [(arrays[names.key(step, "beam", str(context), "ids")], arrays[names.key(step, "beam", str(context),
                                                                                     "scores")]) for step in steps]


def compare_beam(torch32, jittor, context):
    """Where the beam searches from one context part: the first step and rank whose candidate differs."""
    torch_steps, jittor_steps = beam_steps(torch32, context), beam_steps(jittor, context)
    largest = 0.0
    for step, ((torch_ids, torch_scores), (jittor_ids, jittor_scores)) in enumerate(zip(torch_steps, jittor_steps), 1):
        if not np.array_equal(torch_ids, jittor_ids):
            rank = int(np.argmax(torch_ids != jittor_ids)) if torch_ids.shape == jittor_ids.shape else 0
            jittor_id = int(jittor_ids[rank])
            found = np.nonzero(torch_ids == jittor_id)[0]
            rival = torch_scores[found[0]] if found.size else torch_scores[-1]
            return BeamDifference(context, step, rank, int(torch_ids[rank]), jittor_id,
                                  float(abs(torch_scores[rank] - rival)), largest)
        largest = max(largest, max_abs(torch_scores, jittor_scores))
    if len(torch_steps) != len(jittor_steps):
        step = min(len(torch_steps), len(jittor_steps)) + 1
        return BeamDifference(context, step, 0, -1, -1, 0.0, largest)
    return BeamDifference(context, 0, 0, -1, -1, 0.0, largest)
