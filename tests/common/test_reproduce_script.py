"""common_data/scripts/reproduce.sh and compare.sh refuse what they cannot run before they start any stage."""
import subprocess

import pytest

from common_data.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "common_data/scripts/reproduce.sh"
COMPARE = REPO_ROOT / "common_data/scripts/compare.sh"


def run(tmp_path, script=SCRIPT, **variables):
    return subprocess.run([str(script)], capture_output=True, text=True, cwd=tmp_path,
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


@pytest.mark.parametrize("variables, message", [
    ({"METHODS": "lora prefix"}, "METHODS: 'prefix' is not one of lora jelly dora pissa adalora bitfit full rslora loraplus"),
    ({"METHODS": " "}, "METHODS is empty"),
    ({"ADAPTER": "dora"}, "ADAPTER is set per method; unset it"),
    ({"RECIPE": "recipes/embedded/e2e.yaml"}, "RECIPE is set per method; unset it"),
])
def test_compare_refuses_bad_options_before_any_stage(tmp_path, variables, message):
    done = run(tmp_path, COMPARE, **variables)
    assert done.returncode == 2
    assert done.stderr.strip() == f"compare.sh: {message}"
    assert "==== compare" not in done.stderr


def test_compare_help_names_the_methods_and_the_report(tmp_path):
    done = subprocess.run([str(COMPARE), "--help"], capture_output=True, text=True, check=True)
    assert "lora jelly dora pissa adalora bitfit full" in done.stdout and "log/methods_report.md" in done.stdout
