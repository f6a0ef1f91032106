"""What a training run writes: console lines, metrics.jsonl events and run.json.

The console lines keep microsoft/LoRA's gpt2_ft.py format, so that logs of either framework (and of
earlier ports) read the same:

    | epoch   1 step      100 |    100 batches | lr 4e-05 | ms/batch 697.27 | loss  4.67 | avg loss  5.56 | ppl 260.55
    | Eval   1 at step     2000 | time: 33.03s | valid loss  1.33 | valid ppl  3.78 | best ppl  3.78 
    saving checkpoint work/model.2000.safetensors

Framework-neutral: versions, device and peak memory are handed in by the trainer.
"""
import contextlib
import dataclasses
import json
import math
import platform
import re
import resource
import subprocess
import time
from pathlib import Path

from common_data.util.atomic import atomic_open
from common_data.util.paths import REPO_ROOT

RULE = "-" * 100


@dataclasses.dataclass(frozen=True)
class TrainLine:
    epoch: int
    step: int
    batches: int
    lr: float
    ms_per_batch: float
    loss: float
    avg_loss: float
    ppl: float

    PATTERN = re.compile(
        r"\| epoch +(\d+) step +(\d+) \| +(\d+) batches \| lr (\S+) \| ms/batch +(\S+) \| "
        r"loss +(\S+) \| avg loss +(\S+) \| ppl +(\S+)$")

    def __str__(self):
        return (f"| epoch {self.epoch:3d} step {self.step:>8d} | {self.batches:>6d} batches | lr {self.lr:.3g} | "
                f"ms/batch {self.ms_per_batch:5.2f} | loss {self.loss:5.2f} | avg loss {self.avg_loss:5.2f} | "
                f"ppl {self.ppl:5.2f}")


@dataclasses.dataclass(frozen=True)
class EvalLine:
    index: int
    step: int
    seconds: float
    valid_loss: float
    valid_ppl: float
    best_ppl: float

    PATTERN = re.compile(
        r"\| Eval +(\d+) at step +(\d+) \| time: +(\S+)s \| valid loss +(\S+) \| valid ppl +(\S+) \| "
        r"best ppl +(\S+) ?$")

    def __str__(self):
        # the trailing space is microsoft/LoRA's
        return (f"| Eval {self.index:3d} at step {self.step:>8d} | time: {self.seconds:5.2f}s | "
                f"valid loss {self.valid_loss:5.2f} | valid ppl {self.valid_ppl:5.2f} | best ppl {self.best_ppl:5.2f} ")


@dataclasses.dataclass(frozen=True)
class AdapterLine:
    adapter: str
    mode: str
    step: int
    switched_from: str | None = None

    PATTERN = re.compile(r"\| adapter (\S+) \| mode (\S+) \| step +(\d+)(?: \| switched from (\S+))?$")

    def __str__(self):
        line = f"| adapter {self.adapter} | mode {self.mode} | step {self.step:>8d}"
        return line if self.switched_from is None else f"{line} | switched from {self.switched_from}"


def perplexity(loss):
    """exp(loss), infinite where exp would overflow."""
    return math.exp(loss) if loss < 700 else math.inf


def checkpoint_line(path):
    return f"saving checkpoint {path}"


def epoch_start_line(epoch):
    return f"start to train the model................ {epoch}"


def eval_progress_line(batch_index, loss):
    return f"eval samples: {batch_index} loss: {loss:.4f}"


# a number inside `1.26`, `tensor(1.2632, device='cuda:0')` or `jt.Var([0.92], dtype=float32)`
NUMBER = r"[-+]?(?:nan|inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
OTHER_PATTERNS = {
    "checkpoint": re.compile(r"saving checkpoint (?P<path>.+)$"),
    "epoch_start": re.compile(r"start to train the model\.+ (?P<epoch>\d+)$"),
    "eval_progress": re.compile(rf"eval samples: (?P<batch_index>\d+) loss: \D*?(?P<loss>{NUMBER})"),
    "eval_average": re.compile(rf"average loss (?P<loss>{NUMBER})$"),
    "end": re.compile(r"End of training$"),
}


def parse_line(line):
    """The record of one console line: a TrainLine, EvalLine, AdapterLine, or (kind, fields dict); None if unknown."""
    line = line.rstrip("\n")
    for record_type in (TrainLine, EvalLine, AdapterLine):
        match = record_type.PATTERN.match(line)
        if match:
            fields = dataclasses.fields(record_type)
            return record_type(*(convert(field.type, text) for field, text in zip(fields, match.groups())))
    for kind, pattern in OTHER_PATTERNS.items():
        match = pattern.match(line)
        if match:
            return kind, {key: convert_number(text) for key, text in match.groupdict().items()}
    return None


def convert(field_type, text):
    return field_type(text) if field_type in (int, float) and text is not None else text


def convert_number(text):
    if re.fullmatch(r"\d+", text):
        return int(text)
    if re.fullmatch(NUMBER, text):
        return float(text)
    return text


def parse_log(path):
    """All known records of a console log, in order."""
    with open(path, encoding="utf-8") as handle:
        return [record for record in map(parse_line, handle) if record is not None]


def json_safe(value):
    """`value` with NaN and infinities as the strings 'nan', 'inf', '-inf' (strict JSON has no such
    numbers), tuples as lists and other objects (paths) as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class MetricsLog:
    """metrics.jsonl: one JSON object per event, appended and flushed line by line.

    A resumed run keeps the events up to the step it resumes from (rewritten atomically) and drops
    the rest, which the resumed run writes again.
    """

    def __init__(self, path, resume_step=None):
        self.path = Path(path)
        kept = []
        if resume_step is not None and self.path.exists():
            kept = [event for event in read_metrics(self.path) if event.get("step", 0) <= resume_step]
        with atomic_open(self.path) as handle:
            handle.writelines(json.dumps(event) + "\n" for event in kept)
        self.handle = open(self.path, "a", encoding="utf-8")

    def write(self, event, **fields):
        record = json_safe({"event": event, "time": time.time(), **fields})
        self.handle.write(json.dumps(record, allow_nan=False) + "\n")
        self.handle.flush()

    def close(self):
        self.handle.close()


def read_metrics(path):
    """The events of a metrics.jsonl; a torn last line (a run killed mid-write) is skipped."""
    return read_metrics_and_torn_line(path)[0]


def read_metrics_and_torn_line(path):
    """(events, number of the torn last line or None) of a metrics.jsonl: a last line cut off without its
    newline, as a run killed while writing it leaves, is skipped; a bad line anywhere else raises ValueError
    naming the file and the line."""
    events = []
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, 1):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines) and not line.endswith("\n"):
                return events, number
            raise ValueError(f"{path}: line {number}: not a JSON object ({error.msg}); only the last line may be "
                             "cut off, by a run killed while writing it") from None
    return events, None


def git_state(repo=REPO_ROOT):
    """{'commit': HEAD or None, 'dirty': bool or None} of the checkout the code runs from."""
    def git(*command):
        result = subprocess.run(["git", "-C", str(repo), *command], capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain")
    except OSError:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_name():
    """The processor's model name (from /proc/cpuinfo on Linux)."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def peak_rss_bytes():
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class RunRecord:
    """run.json: arguments, code version, framework, device, seed, wall time per phase, peak memory.

    Phases nest: while an inner phase runs (an evaluation inside training) the outer one's clock stops,
    so the phase times add up to the wall time.
    """

    def __init__(self, path, args, framework, device, seed, resumed_from_step=None):
        self.path = Path(path)
        self.started = time.time()
        self.record = {
            "args": args,
            "git": git_state(),
            "framework": framework,
            "device": device,
            "seed": seed,
            "resumed_from_step": resumed_from_step,
            "phases_s": {},
        }
        if resumed_from_step is not None and self.path.exists():
            with open(self.path, encoding="utf-8") as handle:
                previous = json.load(handle)
            self.record["previous_runs"] = previous.pop("previous_runs", []) + [previous]
        self.stack = []

    @contextlib.contextmanager
    def phase(self, name):
        now = time.perf_counter()
        if self.stack:
            self.pause(self.stack[-1], now)
        self.stack.append([name, now])
        try:
            yield
        finally:
            now = time.perf_counter()
            self.pause(self.stack.pop(), now)
            if self.stack:
                self.stack[-1][1] = now

    def pause(self, entry, now):
        name, since = entry
        self.add_time(name, now - since)
        entry[1] = now

    def add_time(self, name, seconds):
        """Count time spent outside phase() (e.g. before the record existed) towards a phase."""
        phases = self.record["phases_s"]
        phases[name] = phases.get(name, 0.0) + seconds

    def write(self, status, peak_memory, **extra):
        """Write run.json atomically; peak_memory e.g. {'kind': 'cuda_max_allocated', 'bytes': n}."""
        self.record.update(status=status, wall_s=time.time() - self.started, peak_memory=peak_memory, **extra)
        with atomic_open(self.path) as handle:
            json.dump(json_safe(self.record), handle, indent=2, allow_nan=False)
            handle.write("\n")
