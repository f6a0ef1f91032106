"""METEOR through the official jar (Java): the files it reads keep every line, empty ones included."""
import pytest

from nlg_eval.java import meteor_on_files


def test_missing_references_of_the_last_hypothesis_keep_their_lines():
    hypotheses = ["the cat sat on the mat", "a dog barked loudly"]
    padded = meteor_on_files(hypotheses, ["the cat sat on a mat", "", "", "a dog barked", "", ""], 3)
    repeated = meteor_on_files(hypotheses, ["the cat sat on a mat"] * 3 + ["a dog barked"] * 3, 3)
    assert 0 < padded < 1 and padded == pytest.approx(repeated)


def test_an_empty_last_hypothesis_keeps_its_line():
    score = meteor_on_files(["the cat sat on the mat", ""], ["the cat sat on the mat", "a dog barked"], 1)
    assert 0 < score < meteor_on_files(["the cat sat on the mat"], ["the cat sat on the mat"], 1)
