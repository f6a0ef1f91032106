"""The official scorers' numbers on ../shared's fixtures, through `nlg-eval` and the real Java scorers."""
import json

import pytest

from nlg_eval.cli import main

# tuetschek/e2e-metrics measure_scores.py on seed_run (../shared/GUIDE.md)
E2E_OFFICIAL = {"BLEU": 0.4184, "NIST": 6.0056, "METEOR": 0.3953, "ROUGE_L": 0.5542, "CIDEr": 1.9999}


def test_e2e_matches_measure_scores(shared, tmp_path, capsys):
    run = shared / "fixtures" / "seed_run"
    out = tmp_path / "scores.json"
    assert main(["e2e", str(run / "e2e_ref.txt"), str(run / "torch_e2e_pred.txt"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for metric, value in E2E_OFFICIAL.items():
        assert f"{metric}: {value:.4f}\n" in printed
    scores = json.loads(out.read_text(encoding="utf-8"))
    assert {metric: round(value, 4) for metric, value in scores.items()} == E2E_OFFICIAL


def test_webnlg_matches_generationeval(shared, tmp_path, capsys):
    example = shared / "fixtures" / "webnlg2020_eval_example"
    out = tmp_path / "scores.json"
    argv = ["webnlg", "--refs", str(example / "reference"), "--hyp", str(example / "hypothesis"),
            "--num-refs", "4", "--json", str(out)]
    assert main(argv) == 0
    assert "BLEU: 51.32\n" in capsys.readouterr().out
    scores = json.loads(out.read_text(encoding="utf-8"))
    assert round(scores["BLEU"], 2) == 51.32
    # GenerationEval tokenizes with nltk.word_tokenize (punkt + Treebank); without punkt METEOR may move a little.
    assert scores["METEOR"] == pytest.approx(0.3233, abs=5e-4)
    assert round(scores["chrF++"], 4) == 0.5434
    assert round(scores["TER"], 4) == 0.4994
