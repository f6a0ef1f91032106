"""`python -m alignment methods` (make compare's report) on planted run folders of two methods."""
import json

import pytest

from alignment.cli import main
from alignment.methods import build_methods_report

SCORES = {"BLEU": 0.4, "NIST": 5.0, "METEOR": 0.3, "ROUGE_L": 0.5, "CIDEr": 1.1}
OUTPUTS = ["name is in the city centre .", "a cheap pub .", "near the river ."]


def plant_method(folder, method, run_folder, trainable, loss_offsets=None, jittor_bleu=0.4, jittor_outputs=OUTPUTS):
    """runs/compare/<framework>_<method> folders as compare.sh leaves them: run, scores.json, pred.txt."""
    for framework in ("torch", "jittor"):
        run = run_folder(folder / f"{framework}_{method}", framework,
                         loss_offsets if framework == "jittor" and loss_offsets else {}, peak_mib=300,
                         evaluate_at_start=True)
        record = json.loads((run / "run.json").read_text())
        record.update(trainable_parameters=trainable, final_step=200, phases_s={"train": 50.0, "eval": 2.0})
        (run / "run.json").write_text(json.dumps(record))
        scores = dict(SCORES, BLEU=jittor_bleu) if framework == "jittor" else SCORES
        (run / "scores.json").write_text(json.dumps(scores))
        (run / "pred.txt").write_text("\n".join(jittor_outputs if framework == "jittor" else OUTPUTS) + "\n")


@pytest.fixture
def planted(tmp_path, run_folder):
    runs = tmp_path / "compare"
    runs.mkdir()
    plant_method(runs, "lora", run_folder, trainable=16384)
    plant_method(runs, "bitfit", run_folder, trainable=11520, loss_offsets={50: 3e-3}, jittor_bleu=0.38,
                 jittor_outputs=OUTPUTS[:2] + ["by the river ."])
    return runs


def test_each_method_gets_a_row_per_framework_and_its_differences(planted, tmp_path):
    table, deltas = build_methods_report(planted, ["lora", "bitfit"], tmp_path / "m.md", tmp_path / "m.html",
                                         tmp_path / "figures")
    assert list(table["method"]) == ["lora", "lora", "bitfit", "bitfit"]
    assert list(table["framework"]) == ["PyTorch", "Jittor"] * 2
    assert list(table["trainable parameters"]) == [16384, 16384, 11520, 11520]
    assert table["ms per step"].tolist() == pytest.approx([250.0] * 4)  # 50 s of training over 200 steps
    assert table["valid loss at step 0"].tolist() == pytest.approx([2.0] * 4)
    assert table["valid loss at the end"].tolist() == pytest.approx([1.3] * 4)
    lora, bitfit = deltas.to_dict("records")
    assert (lora["verdict"], lora["max |Δ loss|"], lora["Δ BLEU"]) == ("aligned", 0.0, 0.0)
    assert lora["identical beam outputs"] == "3/3 (100.00%)"
    assert bitfit["verdict"] == "diverged"
    assert bitfit["max |Δ loss|"] == pytest.approx(3e-3)
    assert bitfit["Δ BLEU"] == pytest.approx(-0.02)
    assert bitfit["identical beam outputs"] == "2/3 (66.67%)"


def test_the_report_has_its_tables_and_figure(planted, tmp_path, report_sections, capsys):
    out = tmp_path / "report" / "methods.md"
    status = main(["methods", "--runs", str(planted), "--methods", "lora", "bitfit", "--out-md", str(out),
                   "--figures", str(tmp_path / "figures")])
    assert status == 0
    printed = capsys.readouterr().out
    assert "lora: aligned" in printed and "bitfit: diverged, max |Δ loss| 3.00e-03" in printed
    sections = report_sections(out.read_text())
    assert list(sections) == ["Methods", "Jittor − PyTorch"]
    assert "| bitfit | Jittor | 200 | 11,520 | 250 |" in sections["Methods"]
    assert "](../figures/methods.png)" in sections["Methods"]
    assert (tmp_path / "figures" / "methods.png").read_bytes()[:4] == b"\x89PNG"
    html = out.with_suffix(".html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "<h2>Jittor − PyTorch</h2>" in html


def test_a_method_without_runs_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="torch_dora: no such run folder"):
        build_methods_report(tmp_path, ["dora"], tmp_path / "m.md", tmp_path / "m.html", tmp_path)
