"""Reading the official file layouts."""
import pytest

from nlg_eval.errors import EvalError
from nlg_eval.inputs import read_e2e, read_e2e_references, read_generationeval


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_e2e_references_are_grouped_by_blank_lines(tmp_path):
    path = write(tmp_path / "ref.txt", "a one\n a two \n\nb one\n\nc one\nc two\n\n\n")
    assert read_e2e_references(path) == [["a one", "a two"], ["b one"], ["c one", "c two"]]


def test_e2e_references_without_blank_lines_are_one_per_input(tmp_path):
    assert read_e2e_references(write(tmp_path / "ref.txt", "a\nb\nc\n")) == [["a"], ["b"], ["c"]]


def test_e2e_double_blank_line_names_the_line(tmp_path):
    path = write(tmp_path / "ref.txt", "a\n\n\nb\n")
    with pytest.raises(EvalError, match=r"ref\.txt: line 3"):
        read_e2e_references(path)


def test_e2e_blank_prediction_lines_are_empty_predictions(tmp_path):
    references = write(tmp_path / "ref.txt", "a\n\nb\n\nc\n")
    predictions = write(tmp_path / "pred.txt", "x\n\nz\n")
    assert read_e2e(references, predictions) == ([["a"], ["b"], ["c"]], ["x", "", "z"])


def test_generationeval_columns_become_reference_groups(tmp_path):
    write(tmp_path / "reference0", "a0\nb0")
    write(tmp_path / "reference1", "a1\n")
    write(tmp_path / "hyp", "ha\nhb")
    references, hypotheses = read_generationeval(tmp_path / "reference", tmp_path / "hyp", 2)
    assert references == [["a0", "a1"], ["b0", ""]]
    assert hypotheses == ["ha", "hb"]


def test_generationeval_single_reference_file_is_the_prefix_itself(tmp_path):
    write(tmp_path / "ref", "a\n")
    write(tmp_path / "hyp", "h\n")
    # text.split("\n") as GenerationEval: a final newline adds an empty line to every file.
    assert read_generationeval(tmp_path / "ref", tmp_path / "hyp", 1) == ([["a"], [""]], ["h", ""])
