"""common_data/scripts/reproduce.sh refuses what it cannot run before it starts any stage."""
import subprocess

import pytest

from common_data.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "common_data/scripts/reproduce.sh"


def run(tmp_path, **variables):
    return subprocess.run([str(SCRIPT)], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **variables})


@pytest.mark.parametrize("variables, message", [
    ({"DATASETS": "e2e wikibio"}, "DATASETS: 'wikibio' is not one of e2e, webnlg, dart"),
    ({"DATASET": "dart2"}, "DATASETS: 'dart2' is not one of e2e, webnlg, dart"),
    ({"DATASETS": " "}, "DATASETS is empty"),
    ({"RUN_DIR": "runs/x"}, "RUN_DIR is set per framework and dataset"),
])
def test_bad_options_stop_with_one_line_and_no_stage_runs(tmp_path, variables, message):
    done = run(tmp_path, **variables)
    assert done.returncode == 2
    assert done.stderr.strip() == f"reproduce.sh: {message}" + ("; unset it" if "RUN_DIR" in variables else "")
    assert "==== reproduce" not in done.stderr


def test_help_names_the_datasets_option(tmp_path):
    done = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert 'DATASETS="e2e webnlg dart"' in done.stdout and "log/alignment_report.md" in done.stdout
