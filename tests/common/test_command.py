"""How commands end on bad input (common_data/cli/command.py): one line, status 1; the traceback when debugging."""
import pytest

from common_data.cli.command import command, output_folder
from common_data.util.errors import DataFormatError, UserError


@command("demo")
def demo(argv=None):
    if argv[0] == "data":
        raise DataFormatError("rows.jsonl", "line 3", "malformed JSON")
    if argv[0] == "file":
        open("/nonexistent/x.txt", encoding="utf-8")
    if argv[0] == "bug":
        raise KeyError("a bug, not bad input")
    return 0


def test_a_user_error_ends_with_one_line_and_status_1(capsys, monkeypatch):
    monkeypatch.delenv("NLG_DEBUG", raising=False)
    assert demo(["data"]) == 1
    assert capsys.readouterr().err == "demo: error: rows.jsonl: line 3: malformed JSON\n"
    assert demo(["file"]) == 1
    assert capsys.readouterr().err == "demo: error: /nonexistent/x.txt: No such file or directory\n"
    assert demo(["ok"]) == 0


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.delenv("NLG_DEBUG", raising=False)
    with pytest.raises(KeyError):
        demo(["bug"])


@pytest.mark.parametrize("argv, variable", [(["data", "--debug"], None), (["data"], "1")])
def test_debugging_raises_the_error(monkeypatch, argv, variable):
    monkeypatch.delenv("NLG_DEBUG", raising=False)
    if variable:
        monkeypatch.setenv("NLG_DEBUG", variable)
    with pytest.raises(DataFormatError):
        demo(argv)


def test_an_output_folder_that_cannot_be_made_names_the_flag(tmp_path):
    (tmp_path / "file").write_text("x")
    assert output_folder(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    with pytest.raises(UserError, match=r"--work_dir .*/file/run: cannot create the folder \(Not a directory\)"):
        output_folder(tmp_path / "file" / "run")
