"""`python -m alignment methods` (make compare's report) on planted run folders of two methods."""
import json

import pytest

from alignment.cli import main
from alignment.methods import build_methods_report

SCORES = {"BLEU": 0.4, "NIST": 5.0, "METEOR": 0.3, "ROUGE_L": 0.5, "CIDEr": 1.1}
OUTPUTS = ["name is in the city centre .", "a cheap pub .", "near the river ."]


def plant_method(folder, method, run_folder, trainable, loss_offsets=None, jittor_bleu=0.4, jittor_outputs=OUTPUTS,
                 allocations=()):
    """runs/compare/<framework>_<method> folders as compare.sh leaves them: run, scores.json, pred.txt; with
    allocations, AdaLoRA's rank_allocation events {framework: [(step, ranks, margin)]}."""
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
        with open(run / "metrics.jsonl", "a", encoding="utf-8") as metrics:
            for step, ranks, margin in allocations[framework] if allocations else ():
                metrics.write(json.dumps({"event": "rank_allocation", "step": step, "ranks": ranks,
                                          "margin": margin}) + "\n")


@pytest.fixture
def planted(tmp_path, run_folder):
    runs = tmp_path / "compare"
    runs.mkdir()
    kept = [(40, {"h.0.attn.q": 6, "h.0.attn.v": 5}, 0.2), (50, {"h.0.attn.q": 5, "h.0.attn.v": 4}, 0.1)]
    plant_method(runs, "adalora", run_folder, trainable=16384, allocations={"torch": kept, "jittor": kept})
    plant_method(runs, "bitfit", run_folder, trainable=11520, loss_offsets={50: 3e-3}, jittor_bleu=0.38,
                 jittor_outputs=OUTPUTS[:2] + ["by the river ."])
    plant_method(runs, "adalora_r4", run_folder, trainable=20000,
                 allocations={"torch": kept, "jittor": kept[:1] + [(50, {"h.0.attn.q": 4, "h.0.attn.v": 5}, 3e-6)]})
    return runs


def test_each_method_gets_a_row_per_framework_and_its_differences(planted, tmp_path):
    table, deltas = build_methods_report(planted, ["adalora", "bitfit", "adalora_r4"], tmp_path / "m.md",
                                         tmp_path / "m.html", tmp_path / "figures")
    assert list(table["method"]) == ["adalora", "adalora", "bitfit", "bitfit", "adalora_r4", "adalora_r4"]
    assert list(table["framework"]) == ["PyTorch", "Jittor"] * 3
    assert list(table["trainable parameters"]) == [16384, 16384, 11520, 11520, 20000, 20000]
    assert table["ms per step"].tolist() == pytest.approx([250.0] * 6)  # 50 s of training over 200 steps
    assert table["valid loss at step 0"].tolist() == pytest.approx([2.0] * 6)
    assert table["valid loss at the end"].tolist() == pytest.approx([1.3] * 6)
    adalora, bitfit, adalora_r4 = deltas.to_dict("records")
    assert (adalora["verdict"], adalora["max |Δ loss|"], adalora["Δ BLEU"]) == ("step-exact", 0.0, 0.0)
    assert adalora["identical beam outputs"] == "3/3 (100.00%)"
    assert adalora["AdaLoRA's kept ranks"] == "identical at 2 allocations"
    assert adalora_r4["AdaLoRA's kept ranks"] == ("different at 1 of 2 allocations, first at step 50 "
                                                  "(gap at the threshold: PyTorch 1.0e-01, Jittor 3.0e-06)")
    assert bitfit["AdaLoRA's kept ranks"] == "n/a"
    assert bitfit["verdict"] == "not equivalent"
    assert bitfit["max |Δ loss|"] == pytest.approx(3e-3)
    assert bitfit["Δ BLEU"] == pytest.approx(-0.02)
    assert bitfit["identical beam outputs"] == "2/3 (66.67%)"


def test_the_report_has_its_tables_and_figure(planted, tmp_path, report_sections, capsys):
    out = tmp_path / "report" / "methods.md"
    status = main(["methods", "--runs", str(planted), "--methods", "adalora", "bitfit", "--out-md", str(out),
                   "--figures", str(tmp_path / "figures")])
    assert status == 0
    printed = capsys.readouterr().out
    assert "adalora: step-exact" in printed and "bitfit: not equivalent, max |Δ loss| 3.00e-03" in printed
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
