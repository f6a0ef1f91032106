"""Helpers shared by the alignment tests: planted run folders and a reader of the report's sections."""
import math
import re

import pytest

from common_data.training.runlog import MetricsLog, RunRecord

HEADINGS = ("Summary", "Verdict", "Loss curves", "Beam outputs", "Samples", "Peak memory", "Runtime", "Inputs")
STEPS = range(10, 210, 10)
MIB = 2 ** 20


def write_run(folder, framework, loss_offsets, peak_mib, switch_step=None, evaluate_at_start=False):
    """A run folder as our trainer (NLG_pytorch/src/gpt2_ft.py) writes it, through common_data.training.runlog:
    20 training steps, 2 evaluations and checkpoints, the training loss moved by loss_offsets {step: offset};
    with switch_step a JELLY seq2par run that turns parallel there; evaluate_at_start adds a step-0 evaluation. Beside it gpt2_beam.py's run.beam.json (half
    the peak memory) and the pipeline scripts' timings.tsv."""
    folder.mkdir()
    log = MetricsLog(folder / "metrics.jsonl")
    mode = "parallel" if switch_step is None else "sequential"
    log.write("start", step=0, adapter_mode=mode, resumed=False)
    if evaluate_at_start:
        log.write("eval", step=0, valid_loss=2.0, valid_ppl=math.exp(2.0), best_ppl=math.exp(2.0))
    for step in STEPS:
        if step == switch_step:
            mode = "parallel"
            log.write("switch", step=step, adapter_mode=mode, previous_mode="sequential")
        loss = 4.0 / (1 + step / 50) + loss_offsets.get(step, 0.0)
        log.write("train", step=step, epoch=1 + step // 100, lr=2e-4, loss=loss, avg_loss=loss + 0.1,
                  ppl=math.exp(loss + 0.1), ms_per_batch=12.5, tokens=512 * step, adapter_mode=mode)
        if step % 100 == 0:
            log.write("checkpoint", step=step, path=str(folder / f"model.{step}.safetensors"))
            valid_loss = 1.5 - step / 1000
            log.write("eval", step=step, valid_loss=valid_loss, valid_ppl=math.exp(valid_loss),
                      best_ppl=math.exp(valid_loss))
    log.write("end", step=STEPS[-1], status="finished")
    log.close()
    record = RunRecord(folder / "run.json", args={"lr": 2e-4}, framework={"name": framework}, device="cpu", seed=1)
    with record.phase("train"):
        with record.phase("eval"):
            pass
    record.write("finished", {"kind": "rss", "bytes": peak_mib * MIB})
    beam = RunRecord(folder / "run.beam.json", args={"beam": 4}, framework={"name": framework}, device="cpu", seed=None)
    with beam.phase("decode"):
        pass
    beam.write("finished", {"kind": "rss", "bytes": peak_mib // 2 * MIB})
    # what the pipeline scripts append: step, seconds, exit status (beam ran twice)
    (folder / "timings.tsv").write_text("train\t40\t0\nbeam\t5\t0\nbeam\t7\t0\ndecode\t1\t0\neval\t6\t0\n")
    return folder


def sections(markdown):
    """{heading: body} of the level-2 sections of a Markdown report, in order."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


@pytest.fixture
def run_folder():
    return write_run


@pytest.fixture
def report_sections():
    return sections


@pytest.fixture
def report_headings():
    return HEADINGS


@pytest.fixture
def run_steps():
    return STEPS
