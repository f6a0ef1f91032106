"""Bad input stops `nlg-eval` with one line naming the file (or Java), exit status 1, no traceback."""
import subprocess
import sys
from pathlib import Path

import pytest

from nlg_eval.cli import main


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def e2e_files(tmp_path):
    return (write(tmp_path / "ref.txt", "a one\na two\n\nb one\n\nc one\n"),
            write(tmp_path / "pred.txt", "a\nb\nc\n"))


@pytest.fixture
def generationeval_files(tmp_path):
    write(tmp_path / "reference0", "a0\nb0\nc0\n")
    write(tmp_path / "reference1", "a1\n\nc1\n")
    return tmp_path / "reference", write(tmp_path / "hypothesis", "a\nb\nc\n")


def generationeval_args(dataset, prefix, hypothesis):
    return [dataset, "--refs", str(prefix), "--hyp", str(hypothesis), "--num-refs", "2"]


def error_of(argv, capsys):
    assert main([str(arg) for arg in argv]) == 1
    message = capsys.readouterr().err
    assert message.startswith("nlg-eval: error: ") and "Traceback" not in message
    return message


def test_e2e_count_mismatch(e2e_files, capsys):
    references, predictions = e2e_files
    write(predictions, "a\nb\n")
    message = error_of(["e2e", references, predictions], capsys)
    assert str(predictions) in message and str(references) in message and "2 predictions" in message


def test_e2e_empty_file(e2e_files, capsys):
    references, predictions = e2e_files
    write(references, "\n\n")
    assert f"{references}: the file is empty" in error_of(["e2e", references, predictions], capsys)


def test_e2e_missing_file(e2e_files, capsys):
    references, predictions = e2e_files
    predictions.unlink()
    assert f"{predictions}: no such file" in error_of(["e2e", references, predictions], capsys)


def test_e2e_without_java(e2e_files, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "`java`" in error_of(["e2e", *e2e_files], capsys)


@pytest.mark.parametrize("dataset", ["webnlg", "dart"])
def test_generationeval_count_mismatch(dataset, generationeval_files, capsys):
    prefix, hypothesis = generationeval_files
    write(Path(f"{prefix}1"), "a1\n")
    message = error_of(generationeval_args(dataset, prefix, hypothesis), capsys)
    assert f"{prefix}1: 2 lines" in message and str(hypothesis) in message


@pytest.mark.parametrize("dataset", ["webnlg", "dart"])
def test_generationeval_empty_file(dataset, generationeval_files, capsys):
    prefix, hypothesis = generationeval_files
    write(hypothesis, "")
    assert f"{hypothesis}: the file is empty" in error_of(generationeval_args(dataset, prefix, hypothesis), capsys)


@pytest.mark.parametrize("dataset", ["webnlg", "dart"])
def test_generationeval_missing_file(dataset, generationeval_files, capsys):
    prefix, hypothesis = generationeval_files
    Path(f"{prefix}0").unlink()
    assert f"{prefix}0: no such file" in error_of(generationeval_args(dataset, prefix, hypothesis), capsys)


@pytest.mark.parametrize("dataset", ["webnlg", "dart"])
def test_generationeval_without_java(dataset, generationeval_files, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "`java`" in error_of(generationeval_args(dataset, *generationeval_files), capsys)


def test_console_script_reports_errors_without_traceback(e2e_files):
    script = Path(sys.executable).with_name("nlg-eval")
    references, predictions = e2e_files
    predictions.unlink()
    result = subprocess.run([str(script), "e2e", str(references), str(predictions)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"nlg-eval: error: {predictions}: no such file\n"
