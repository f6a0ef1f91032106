import json
import math
import re

import pytest
from matplotlib.image import imread

from alignment.report import DatasetInputs, build_report
from alignment.samples import first_entity, names

PLANTED = {50: 2e-5, 120: 3.5e-4, 160: -2e-4}  # Jittor minus PyTorch training loss at these steps
TOLERANCE = 1e-4
TEST_ROWS = [("name : A", "A ."), ("name : A", "It is A ."), ("name : B", "B .<|endoftext|>"), ("name : C", "C ."),
             ("name : D | near : E", "D is near E .")]  # four contexts; the outputs follow them


def write_lines(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def planted_runs(tmp_path, run_folder):
    torch_run = run_folder(tmp_path / "torch_run", "torch", {}, peak_mib=300)
    jittor_run = run_folder(tmp_path / "jittor_run", "jittor", PLANTED, peak_mib=450)
    torch_pred = write_lines(tmp_path / "torch_pred.txt", ["a b c", "d e", "f | g", "h"])
    jittor_pred = write_lines(tmp_path / "jittor_pred.txt", ["a b c", "d e", "f | g", "h i"])
    torch_scores = tmp_path / "torch_scores.json"
    torch_scores.write_text(json.dumps({"BLEU": 0.5, "NIST": 6.0, "METEOR": 0.4, "ROUGE_L": 0.55, "CIDEr": 2.0}))
    jittor_scores = tmp_path / "jittor_scores.json"
    jittor_scores.write_text(json.dumps({"BLEU": 0.51, "NIST": 6.0, "METEOR": 0.4, "ROUGE_L": 0.55, "CIDEr": 1.9}))
    test_input = write_lines(tmp_path / "test_formatted.jsonl", [json.dumps({"context": context, "completion": text})
                                                                 for context, text in TEST_ROWS])
    return DatasetInputs("e2e", torch_run, jittor_run, torch_pred, jittor_pred, torch_scores, jittor_scores,
                         test_input=test_input)


def test_report_on_two_planted_run_folders(planted_runs, tmp_path, report_sections, report_headings, run_steps):
    out_md, out_html, figures = tmp_path / "log/report.md", tmp_path / "log/report.html", tmp_path / "figure"
    [result] = build_report([planted_runs], out_md, out_html, figures, tolerance=TOLERANCE)

    head = result.comparison.headline
    assert head.matched == len(run_steps)
    assert head.max_abs == pytest.approx(3.5e-4, abs=1e-12)
    assert head.max_at_step == 120
    assert head.mean_abs == pytest.approx(sum(map(abs, PLANTED.values())) / len(run_steps), abs=1e-12)
    assert head.first_over_step == 120  # the step-50 offset is under the tolerance
    assert result.comparison.deltas["valid_loss"].max_abs == 0 and result.comparison.deltas["valid_loss"].matched == 2
    assert result.comparison.status == "not equivalent" and result.comparison.epoch_mismatches == 0
    assert (result.predictions.identical, result.predictions.first_difference) == (3, (4, "h", "h i"))

    markdown = out_md.read_text()
    body = report_sections(markdown)
    assert list(body) == list(report_headings)
    assert "| e2e | not equivalent | 20 | 3.500e-04 | 120 |" in body["Summary"]
    assert "3/4 (75.00%)" in body["Summary"] and "3/4 (75.00%)" in body["Beam outputs"]
    assert "| BLEU | 0.5 | 0.51 | +0.01 | +2.00 |" in body["Summary"]
    assert "Outputs naming the first entity: PyTorch 1/4 (25.0%), Jittor 1/4 (25.0%)." in body["Samples"]
    assert "| # | input | PyTorch | Jittor | reference |" in body["Samples"]  # the four contexts, in order
    for row in ("| 1 | name : A | a b c | a b c | A . |", "| 2 | name : B | d e | d e | B . |",
                "| 3 | name : C | f \\| g | f \\| g | C . |", "| 4 | name : D \\| near : E | h | h i | D is near E . |"):
        assert row in body["Samples"]
    assert "| CIDEr | 2 | 1.9 | -0.1 | -5.00 |" in body["Summary"]
    assert "| e2e | train | 300.0 | 450.0 | 1.500 | rss / rss |" in body["Peak memory"]
    assert "| e2e | decode | 150.0 | 225.0 | 1.500 | rss / rss |" in body["Peak memory"]
    assert "| e2e | pipeline step: beam | 7 | 7 | 1.000 |" in body["Runtime"]
    assert "| e2e | pipeline step: eval | 6 | 6 | 1.000 |" in body["Runtime"]
    runtime = {side: json.loads((getattr(planted_runs, f"{side}_run") / "run.json").read_text())["phases_s"]["train"]
               for side in ("torch", "jittor")}
    assert f"| e2e | train | {runtime['torch']:.4g} | {runtime['jittor']:.4g} |" in body["Runtime"]

    assert "| n/a (no step-0 evaluation) | n/a (no step-0 evaluation) | 0.5000 | 0.5100 |" in body["Summary"]
    for name in ("summary_loss_curves.png", "summary_metrics.png", "e2e_loss_curves.png", "peak_memory.png",
                 "runtime.png"):
        assert (figures / name).read_bytes().startswith(b"\x89PNG") and (figures / name).stat().st_size > 10_000
        assert f"](../figure/{name})" in markdown

    page = out_html.read_text()
    for heading in report_headings:
        assert f"<h2>{heading}</h2>" in page
    assert page.count('<img src="data:image/png;base64,') == 5
    assert re.findall(r'<img src="(?!data:image/png;base64,)', page) == []  # nothing points outside the page


def test_the_summary_has_a_row_a_loss_panel_and_metric_bars_per_dataset(tmp_path, run_folder, report_sections):
    # the valid loss falls 2.0 -> 1.3 from step 0 on dart; e2e's runs have no step-0 evaluation
    datasets = [DatasetInputs("e2e", run_folder(tmp_path / "torch_e2e", "torch", {}, peak_mib=10),
                              run_folder(tmp_path / "jittor_e2e", "jittor", PLANTED, peak_mib=10)),
                DatasetInputs("dart", *(run_folder(tmp_path / f"{side}_dart", side, {}, peak_mib=10,
                                                   evaluate_at_start=True) for side in ("torch", "jittor")))]
    for side, bleu in (("torch", 0.5), ("jittor", 0.5)):
        path = tmp_path / f"{side}_dart.json"
        path.write_text(json.dumps({"BLEU": bleu, "METEOR": 0.4, "chrF++": 0.6, "TER": 0.45}))
        setattr(datasets[1], f"{side}_scores", path)
    out_md, figures = tmp_path / "report.md", tmp_path / "figure"
    build_report(datasets, out_md, tmp_path / "report.html", figures, tolerance=TOLERANCE)

    summary = report_sections(out_md.read_text())["Summary"]
    assert "| e2e | not equivalent | 20 | 3.500e-04 | 120 | n/a | n/a (no step-0 evaluation) |" in summary
    assert "| dart | step-exact | 20 | 0.000e+00 | none | n/a | 2.000 → 1.300 (−35.0%) | 2.000 → 1.300 (−35.0%) " \
           "| 0.5000 | 0.5000 |" in summary
    assert "No generation metrics: PyTorch scores: not given; Jittor scores: not given." in summary
    assert "| TER | 0.45 | 0.45 | +0 | +0.00 |" in summary
    assert summary.index("### e2e: generation metrics") < summary.index("### dart: generation metrics")
    for name in ("summary_loss_curves.png", "summary_metrics.png"):
        assert f"](figure/{name})" in summary
    # one loss panel column per dataset, one metric row per scored dataset: the figures' aspect shows it
    panels, bars = imread(figures / "summary_loss_curves.png"), imread(figures / "summary_metrics.png")
    assert panels.shape[1] > 1.3 * panels.shape[0]
    assert bars.shape[1] > 2.5 * bars.shape[0]


def test_every_section_says_what_is_missing(tmp_path, run_folder, report_sections, report_headings):
    torch_run = run_folder(tmp_path / "torch_run", "torch", {}, peak_mib=300)
    jittor_run = tmp_path / "jittor_run"
    jittor_run.mkdir()  # an empty run folder: no metrics.jsonl, no run.json
    inputs = DatasetInputs("webnlg", torch_run, jittor_run, torch_scores=tmp_path / "absent.json")
    out_md = tmp_path / "report.md"
    [result] = build_report([inputs], out_md, tmp_path / "report.html", tmp_path / "figure", tolerance=TOLERANCE)

    assert result.comparison.status == "not comparable"
    body = report_sections(out_md.read_text())
    assert list(body) == list(report_headings)
    assert "not comparable" in body["Summary"]
    assert "absent.json` does not exist" in body["Summary"]
    assert "Jittor scores: not given" in body["Summary"]
    assert "PyTorch predictions: not given" in body["Beam outputs"]
    assert "No samples: test input: not given; PyTorch outputs: not given; Jittor outputs: not given." \
        in body["Samples"]
    assert "| webnlg | train | 300.0 | n/a |" in body["Peak memory"]
    assert "metrics.jsonl: missing" in body["Inputs"] and "run.json: missing" in body["Inputs"]
    # the PyTorch run alone still gets its curves drawn
    assert (tmp_path / "figure/webnlg_loss_curves.png").exists()


def test_step_exact_runs(tmp_path, run_folder):
    runs = [run_folder(tmp_path / name, name, {}, peak_mib=100) for name in ("torch", "jittor")]
    [result] = build_report([DatasetInputs("dart", *runs)], tmp_path / "r.md", tmp_path / "r.html", tmp_path / "f")
    assert result.comparison.status == "step-exact"
    assert result.comparison.headline.max_abs == 0 and result.comparison.headline.first_over_step is None
    assert "**dart: step-exact**" in (tmp_path / "r.md").read_text()


def test_a_one_sided_nan_loss_is_a_divergence(tmp_path, run_folder):
    runs = [run_folder(tmp_path / "torch", "torch", {}, peak_mib=100),
            run_folder(tmp_path / "jittor", "jittor", {150: math.nan}, peak_mib=100)]
    [result] = build_report([DatasetInputs("e2e", *runs)], tmp_path / "r.md", tmp_path / "r.html", tmp_path / "f")
    assert result.comparison.headline.first_over_step == 150
    assert math.isinf(result.comparison.headline.max_abs)


def test_a_run_that_does_not_exist_is_named_in_the_report(tmp_path, run_folder, report_sections):
    inputs = DatasetInputs("e2e", run_folder(tmp_path / "torch", "torch", {}, peak_mib=1), tmp_path / "nowhere")
    build_report([inputs], tmp_path / "r.md", tmp_path / "r.html", tmp_path / "f")
    body = report_sections((tmp_path / "r.md").read_text())
    assert "Jittor run: `" in body["Summary"] and "nowhere` does not exist" in body["Summary"]
    assert "nowhere` does not exist" in body["Loss curves"]


def test_a_broken_timings_file_is_named_with_its_line(tmp_path, run_folder):
    folder = run_folder(tmp_path / "torch_run", "torch", {}, peak_mib=300)
    (folder / "timings.tsv").write_text("train\t40\t0\nbeam\tfive\t0\n")
    with pytest.raises(ValueError, match=r"timings\.tsv:2: expected"):
        build_report([DatasetInputs("e2e", folder)], tmp_path / "report.md", tmp_path / "report.html",
                     tmp_path / "figure")


def test_samples_are_refused_when_the_outputs_do_not_follow_the_test_input(planted_runs, tmp_path):
    write_lines(planted_runs.jittor_pred, ["a b c", "d e", "f | g"])
    with pytest.raises(ValueError, match=r"Jittor outputs: 3 lines for the 4 contexts of .*test_formatted\.jsonl"):
        build_report([planted_runs], tmp_path / "r.md", tmp_path / "r.html", tmp_path / "f")


@pytest.mark.parametrize("context, output, named", [
    ("name : The Vaults | Type : pub | near : Café Adriatic", "The Vaults is a pub near Café Adriatic .", True),
    ("name : The Vaults | Type : pub", "Vaults is a pub .", False),
    ("Abel_Caballero : birthPlace : Ponteareas | Abel_Caballero : party : PSOE", "abel caballero was born in ponteareas .",
     True),
    ('Alan_Bean : "status" : "Retired"', "alan was an astronaut .", False),
    ("[TABLECONTEXT] : title : American Playhouse | American Playhouse : role : Jed Jenkins",
     "jed jenkins played in american playhouse .", True),
    ("Allan_Shivers : party : Democratic_Party_(United_States)", "allan shivers, a democrat .", True),
])
def test_an_output_names_the_records_first_entity_word_for_word(context, output, named):
    assert names(output, first_entity(context)) is named
