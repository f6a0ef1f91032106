import json
import math

import pandas as pd
import pytest

from alignment.compare import compare_predictions, curve_delta, matched_curve
from alignment.resources import resource_tables
from alignment.run_log import empty_run
from alignment.runs import read_run
from alignment.scores import metrics_table, read_scores


def steps(values):
    return pd.DataFrame({"step": list(values), "loss": list(values.values())})


def test_matched_curve_uses_common_steps_and_the_last_entry_of_a_repeated_step():
    torch_table = steps({1: 2.0, 2: 1.5, 3: 1.2})
    jittor_table = pd.concat([steps({2: 9.0, 3: 1.25, 4: 1.0}), steps({2: 1.5})])  # step 2 again after a resume
    curve = matched_curve(torch_table, jittor_table, "loss")
    assert curve["step"].tolist() == [2, 3]
    assert curve["abs_delta"].tolist() == pytest.approx([0.0, 0.05])
    delta = curve_delta("loss", curve, tolerance=0.01)
    assert (delta.matched, delta.max_at_step, delta.first_over_step) == (2, 3, 3)


def test_no_common_step_is_no_comparison():
    delta = curve_delta("loss", matched_curve(steps({1: 1.0}), steps({2: 1.0}), "loss"), 1e-4)
    assert delta.matched == 0 and math.isnan(delta.max_abs) and delta.first_over_step is None


def test_predictions_of_different_length(tmp_path):
    (tmp_path / "a.txt").write_text("x y\n z \n")
    (tmp_path / "b.txt").write_text("x y\nz\nextra\n")
    agreement = compare_predictions(tmp_path / "a.txt", tmp_path / "b.txt")
    assert (agreement.identical, agreement.torch_lines, agreement.jittor_lines) == (2, 2, 3)
    assert agreement.share == pytest.approx(2 / 3)
    assert agreement.first_difference == (3, None, "extra")


def test_metrics_table_orders_the_official_metrics_and_computes_relative_differences():
    table = metrics_table({"BLEU": 40.0, "TER": 0.5, "extra": 1.0}, {"BLEU": 41.0, "TER": 0.45}, "dart")
    assert table["metric"].tolist() == ["BLEU", "METEOR", "chrF++", "TER", "extra"]
    rows = table.set_index("metric")
    assert rows.loc["BLEU", "relative_pct"] == pytest.approx(2.5)
    assert rows.loc["TER", "relative_pct"] == pytest.approx(-10.0)
    assert math.isnan(rows.loc["extra", "jittor"]) and math.isnan(rows.loc["METEOR", "delta"])
    e2e = metrics_table({"BLEU": 0.4184}, {}, "e2e")
    assert e2e["metric"].tolist() == ["BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"]


def test_scores_that_are_not_numbers_name_the_file_and_metric(tmp_path):
    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"BLEU": 0.4, "NIST": "high"}))
    with pytest.raises(ValueError, match=r"scores\.json: metric 'NIST'"):
        read_scores(path)


def test_a_run_record_of_the_wrong_shape_names_the_file_and_field(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"phases_s": {"train": "long"}}))
    with pytest.raises(ValueError, match=r"run\.json: field 'phases_s'"):
        read_run(tmp_path)


def test_resumed_runs_add_their_phases_and_keep_the_largest_peak(tmp_path):
    earlier = {"phases_s": {"train": 100.0}, "wall_s": 110.0, "peak_memory": {"kind": "rss", "bytes": 3 << 20}}
    record = {"phases_s": {"train": 50.0, "eval": 5.0}, "wall_s": 60.0,
              "peak_memory": {"kind": "rss", "bytes": 2 << 20}, "previous_runs": [earlier]}
    (tmp_path / "run.json").write_text(json.dumps(record))
    (tmp_path / "run.beam.json").write_text(json.dumps({"phases_s": {"inference": 7.0}, "wall_s": 8.0,
                                                        "peak_memory": {"kind": "rss", "bytes": 1 << 20}}))
    runtime, memory = resource_tables([("e2e", read_run(tmp_path), empty_run("-"))])
    assert dict(zip(runtime["phase"], runtime["torch"])) == {
        "train": 150.0, "eval": 5.0, "beam: inference": 7.0,
        "whole process (train)": 170.0, "whole process (inference)": 8.0}
    assert dict(zip(memory["phase"], memory["torch"])) == {"train": 3.0, "inference": 1.0}
    assert runtime["jittor"].isna().all()


def test_a_run_folder_reads_steps_evals_checkpoints_and_the_adapter_switch(tmp_path, run_folder, run_steps):
    run = read_run(run_folder(tmp_path / "run", "torch", {}, peak_mib=1, switch_step=60))
    assert run.steps["step"].tolist() == list(run_steps)
    assert run.steps["adapter_mode"].tolist() == ["sequential"] * 5 + ["parallel"] * 15
    assert run.evals["step"].tolist() == [100, 200] and run.checkpoints["step"].tolist() == [100, 200]
    assert run.switches[["step", "adapter_mode", "previous_mode"]].values.tolist() == [[60, "parallel", "sequential"]]
    assert run.notes == [] and set(run.records) == {"run", "beam", "pipeline step"}
    assert run.records["pipeline step"]["phases_s"] == {"train": 40, "beam": 7, "decode": 1, "eval": 6}


def test_a_console_adapter_switch_is_read_and_the_opening_mode_line_is_not(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("| adapter jelly | mode sequential | step        0\n"
                    "| adapter jelly | mode parallel | step      300 | switched from sequential\n")
    assert read_run(path).switches.values.tolist() == [[300, "parallel", "sequential"]]
