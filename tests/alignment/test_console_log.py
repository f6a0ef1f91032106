import math

import pytest

from alignment.compare import compare_runs
from alignment.console_log import read_console_log
from alignment.figures import plot_loss_curves

SEED_LOGS = ("torch_e2e_train.log", "jittor_e2e_train.log")
STEP_LINE = ("| epoch   1 step      {step} |    {step} batches | lr 4e-05 | ms/batch 697.27 | loss  {loss} | "
             "avg loss  5.56 | ppl 260.55\n")


def count_lines(path, needle):
    return sum(needle in line for line in path.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("name", SEED_LOGS)
def test_every_record_of_a_seed_log_is_read(shared, name):
    path = shared / "fixtures/seed_run" / name
    run = read_console_log(path)
    assert len(run.steps) == count_lines(path, "batches | lr ") > 40
    assert len(run.evals) == count_lines(path, "| Eval ") > 1
    assert len(run.checkpoints) == count_lines(path, "saving checkpoint") > 5
    assert len(run.eval_batches) == count_lines(path, "eval samples:") > 5
    assert run.notes == []
    # the fields of the first step line, split by hand
    first = next(line for line in path.read_text().splitlines() if "batches | lr " in line)
    fields = [part.split() for part in first.strip(" |").split("|")]
    assert run.steps.iloc[0][["epoch", "step", "batches", "lr", "loss"]].tolist() == \
        [int(fields[0][1]), int(fields[0][3]), int(fields[1][0]), float(fields[2][1]), float(fields[4][1])]
    assert run.steps["step"].is_monotonic_increasing
    # the validation loss is the full-precision `average loss` printed before each `| Eval` line
    averages = [float(line.split()[-1]) for line in path.read_text().splitlines() if line.startswith("average loss")]
    assert run.evals["valid_loss"].tolist() == averages
    assert all(abs(exact - float(f"{exact:.2f}")) <= 0.005 for exact in averages)
    # every eval batch belongs to the evaluation that follows it, never to a later one
    assert set(run.eval_batches["step"]) == set(run.evals["step"])
    assert run.checkpoints["path"].str.endswith(".pt").all()
    assert run.checkpoints["step"].iloc[0] == int(run.checkpoints["path"].iloc[0].rsplit(".", 2)[1])


def test_overlay_of_the_two_seed_logs(shared, tmp_path):
    torch_run, jittor_run = (read_console_log(shared / "fixtures/seed_run" / name) for name in SEED_LOGS)
    comparison = compare_runs(torch_run, jittor_run, tolerance=0.01)
    figure = tmp_path / "overlay.png"
    plot_loss_curves(figure, "seed logs", torch_run, jittor_run, comparison)
    assert figure.read_bytes().startswith(b"\x89PNG") and figure.stat().st_size > 30_000
    common = set(torch_run.steps["step"]) & set(jittor_run.steps["step"])
    assert comparison.headline.matched == len(common)
    # the jittor run used a smaller batch: the same step lies in another epoch
    assert comparison.epoch_mismatches > 0


def test_a_cut_off_last_line_is_skipped_and_reported(tmp_path):
    path = tmp_path / "train.log"
    whole = STEP_LINE.format(step=100, loss="4.67") + STEP_LINE.format(step=200, loss="3.12")
    path.write_text(whole + STEP_LINE.format(step=300, loss="2.00")[:60])
    run = read_console_log(path)
    assert run.steps["step"].tolist() == [100, 200]
    assert len(run.notes) == 1 and "train.log:3" in run.notes[0]


def test_a_complete_last_line_without_newline_counts(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(STEP_LINE.format(step=100, loss="4.67") + "saving checkpoint out/model.100.pt")
    run = read_console_log(path)
    assert run.checkpoints[["step", "path"]].values.tolist() == [[100, "out/model.100.pt"]]


def test_warnings_tensor_reprs_and_garbage_between_records(tmp_path):
    path = tmp_path / "train.log"
    before = ("/usr/lib/python3/site-packages/torch/nn/_reduction.py:42: UserWarning: size_average is deprecated\n"
              "  warnings.warn(warning.format(ret))\n" + STEP_LINE.format(step=100, loss="4.67"))
    after = ("Epoch 1:  40%|████      | 4/10 [00:01<00:02]\r" + STEP_LINE.format(step=200, loss="nan")
             + "[W] library chatter | epoch-like words, no record\n"
             "UserWarning: the average loss of the | Eval is not a record\n"
             "eval samples: 0 loss: tensor([1.2632], device='cuda:0', grad_fn=<MeanBackward0>)\n"
             "eval samples: 1 loss: jt.Var([0.92], dtype=float32)\n"
             "eval samples: 2 loss: 1.5\n"
             "average loss 1.2277\n"
             "| Eval   1 at step      200 | time: 3.03s | valid loss  1.23 | valid ppl  3.41 | best ppl  3.41 \n"
             "noise: Tensor(shape=[2], dtype=float32)\n")
    path.write_bytes(before.encode() + b"\x00\x1b[31mgarbage \xff\xfe bytes\n" + after.encode())
    run = read_console_log(path)
    assert run.steps["step"].tolist() == [100, 200]
    assert math.isnan(run.steps["loss"].iloc[1])
    assert run.eval_batches["loss"].tolist() == [1.2632, 0.92, 1.5]
    assert run.eval_batches["step"].tolist() == [200, 200, 200]
    assert run.evals[["step", "valid_loss", "valid_ppl"]].values.tolist() == [[200, 1.2277, 3.41]]


def test_an_unreadable_record_inside_the_log_names_file_and_line(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(STEP_LINE.format(step=100, loss="4.67") + STEP_LINE.format(step=200, loss="x.yz")
                    + STEP_LINE.format(step=300, loss="2.00"))
    with pytest.raises(ValueError, match=r"train\.log:2"):
        read_console_log(path)


def test_an_evaluation_cut_off_by_the_end_of_the_log_keeps_its_batches(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(STEP_LINE.format(step=100, loss="4.67") + "eval samples: 0 loss: tensor(1.25)\n")
    run = read_console_log(path)
    assert run.eval_batches["loss"].tolist() == [1.25] and run.eval_batches["step"].isna().all()
    assert run.evals.empty and "inside an evaluation" in run.notes[0]
