"""scripts/reproduce.sh and compare.sh refuse what they cannot run before they start any stage, and stop
at the first stage that fails, naming it, each error printed once."""
import shutil
import subprocess

import pytest

from common_data.util.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts/reproduce.sh"
COMPARE = REPO_ROOT / "scripts/compare.sh"


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


FAILING_STEP = """#!/usr/bin/env bash
echo "steps.sh: RECIPE=bad.yaml cannot be used (see above)" >&2
exit 2
"""
FAILING_PIPELINE = """#!/usr/bin/env bash
echo "pipeline.sh: RECIPE=bad.yaml cannot be used (see above)" >&2
exit 2
"""


def stub_tree(tmp_path, base_step, pipeline):
    """A copy of the scripts in tmp_path with stubs for what they run: environments/run (succeeds),
    scripts/steps.sh (base_step) and NLG_*/scripts/pipeline.sh (pipeline); each stub appends its
    name to ran.txt."""
    scripts = tmp_path / "scripts"
    scripts.mkdir(parents=True)
    for name in ("reproduce.sh", "compare.sh", "stages.sh"):
        shutil.copy(REPO_ROOT / "scripts" / name, scripts / name)
    stubs = {"environments/run": "#!/usr/bin/env bash\n", "scripts/steps.sh": base_step,
             "NLG_pytorch/scripts/pipeline.sh": pipeline, "NLG_jittor/scripts/pipeline.sh": pipeline}
    for path, text in stubs.items():
        stub = tmp_path / path
        stub.parent.mkdir(parents=True, exist_ok=True)
        lines = text.splitlines(keepends=True)
        stub.write_text("".join([lines[0], f'echo {path} >> "{tmp_path}/ran.txt"\n', *lines[1:]]))
        stub.chmod(0o755)


def ran(tmp_path):
    return (tmp_path / "ran.txt").read_text().split()


def test_reproduce_stops_at_a_failed_base_stage_and_prints_its_error_once(tmp_path):
    stub_tree(tmp_path, FAILING_STEP, "#!/usr/bin/env bash\n")
    done = run(tmp_path, tmp_path / "scripts/reproduce.sh", DATASETS="e2e", RECIPE="bad.yaml")
    assert done.returncode == 2
    assert ran(tmp_path) == ["environments/run", "scripts/steps.sh"]
    assert done.stderr.count("RECIPE=bad.yaml cannot be used") == 1
    assert done.stderr.strip().splitlines()[-1] == \
        "==== reproduce: stage base failed (exit status 2, its error above); no later stage ran"


@pytest.mark.parametrize("parallel", ["1", "0"])
def test_reproduce_stops_at_a_failed_dataset_stage_and_prints_its_error_once(tmp_path, parallel):
    stub_tree(tmp_path, FAILING_STEP, FAILING_PIPELINE)
    done = run(tmp_path, tmp_path / "scripts/reproduce.sh", DATASETS="e2e webnlg", RECIPE="bad.yaml",
               INIT_CHECKPOINT="gpt2-medium.safetensors", PARALLEL=parallel)
    assert done.returncode != 0
    assert ran(tmp_path) == ["environments/run", "NLG_pytorch/scripts/pipeline.sh",
                             *(["NLG_jittor/scripts/pipeline.sh"] if parallel == "1" else [])]
    assert done.stderr.count("RECIPE=bad.yaml cannot be used") == 1
    if parallel == "1":
        assert "== torch failed; the end of runs/torch_e2e_lora.log:" in done.stderr
        assert "== jittor failed the same way (runs/jittor_e2e_lora.log)" in done.stderr
    assert "==== reproduce: webnlg" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("==== reproduce: stage e2e failed (exit status ")


def test_compare_stops_at_a_failed_base_stage(tmp_path):
    stub_tree(tmp_path, FAILING_STEP, "#!/usr/bin/env bash\n")
    done = run(tmp_path, tmp_path / "scripts/compare.sh", METHODS="lora dora")
    assert done.returncode == 2
    assert ran(tmp_path) == ["environments/run", "scripts/steps.sh"]
    assert done.stderr.strip().splitlines()[-1] == \
        "==== compare: stage base failed (exit status 2, its error above); no later stage ran"
