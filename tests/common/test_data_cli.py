"""`nlg-data prepare`: outputs, skipping up-to-date work, and no output at all from broken input."""
import shutil

import pytest

from common_data.cli import nlg_data
from common_data.data.formats import read_e2e_csv
from common_data.util.jsonl import read_jsonl


@pytest.fixture
def e2e_mirror(shared, tmp_path, monkeypatch):
    """A private copy of the E2E part of ../shared, used as the mirror."""
    mirror = tmp_path / "mirror"
    shutil.copytree(shared / "datasets/e2e", mirror / "datasets/e2e")
    shutil.copytree(shared / "vocab", mirror / "vocab")
    monkeypatch.setenv("NLG_SHARED_DIR", str(mirror))
    return mirror


def test_prepare_writes_all_stages_then_skips(e2e_mirror, tmp_path, capsys):
    out = tmp_path / "out"
    nlg_data.main(["prepare", "--datasets", "e2e", "--out-root", str(out)])
    first = capsys.readouterr().out
    assert "passed through, source already sampled" in first and "coffee shop" in first
    files = sorted(path.relative_to(out) for path in out.rglob("*.jsonl"))
    assert [str(f) for f in files] == [f"e2e/{stage}/{split}{suffix}"
                                      for stage, suffix in (("encoded", ".jsonl"), ("formatted", "_formatted.jsonl"),
                                                            ("sampled", "_formatted.jsonl"))
                                      for split in ("test", "train", "valid")]
    formatted = read_jsonl(out / "e2e/formatted/valid_formatted.jsonl")
    assert formatted == read_e2e_csv(e2e_mirror / "datasets/e2e/official_devset.csv")
    sampled = read_jsonl(out / "e2e/sampled/valid_formatted.jsonl")
    encoded = read_jsonl(out / "e2e/encoded/valid.jsonl")
    assert len(encoded) == len(sampled) < len(formatted)
    before = {f: (out / f).stat().st_mtime_ns for f in files}

    nlg_data.main(["prepare", "--datasets", "e2e", "--out-root", str(out)])
    assert "up to date" in capsys.readouterr().out
    assert before == {f: (out / f).stat().st_mtime_ns for f in files}

    nlg_data.main(["prepare", "--datasets", "e2e", "--out-root", str(out), "--seed", "2"])
    assert "up to date" not in capsys.readouterr().out
    assert read_jsonl(out / "e2e/sampled/valid_formatted.jsonl") != sampled


def test_broken_source_stops_with_file_and_line_and_writes_nothing(e2e_mirror, tmp_path, capsys):
    devset = e2e_mirror / "datasets/e2e/official_devset.csv"
    lines = devset.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[99] = lines[99].split('",', 1)[0] + '",\n'
    devset.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "out"
    assert nlg_data.main(["prepare", "--datasets", "e2e", "--out-root", str(out)]) == 1
    assert f"nlg-data: error: {devset}: line 100: row without ref" in capsys.readouterr().err
    assert not out.exists() or not [path for path in out.rglob("*") if path.is_file()]
