import subprocess
import sys

import pytest

from alignment.cli import main

SEED = "fixtures/seed_run"
PLANTED = {120: 3.5e-4}


def test_legacy_command_on_the_seed_logs(shared, tmp_path, report_sections, report_headings):
    out_md = tmp_path / "log/legacy.md"
    result = subprocess.run(
        [sys.executable, "-m", "alignment", "legacy", shared / SEED / "torch_e2e_train.log",
         shared / SEED / "jittor_e2e_train.log", "--torch-pred", shared / SEED / "torch_e2e_pred.txt",
         "--jittor-pred", shared / SEED / "jittor_e2e_pred.txt", "--out-md", out_md, "--figures", tmp_path / "figure"],
        capture_output=True, text=True, check=True)
    assert result.stdout.startswith("e2e: incomplete")  # an earlier port: its PyTorch log stops before its Jittor log
    figure = tmp_path / "figure/legacy_e2e_loss_curves.png"
    assert figure.read_bytes().startswith(b"\x89PNG") and figure.stat().st_size > 30_000
    body = report_sections(out_md.read_text())
    assert list(body) == list(report_headings)
    torch_lines = (shared / SEED / "torch_e2e_pred.txt").read_text().splitlines()
    jittor_lines = (shared / SEED / "jittor_e2e_pred.txt").read_text().splitlines()
    identical = sum(a.strip() == b.strip() for a, b in zip(torch_lines, jittor_lines))
    assert f"{identical}/{len(torch_lines)} (" in body["Beam outputs"]
    assert "No peak memory recorded" in body["Peak memory"] and "No runtime recorded" in body["Runtime"]
    assert (tmp_path / "log/legacy.html").read_text().count("data:image/png;base64,") == 2  # summary + detail


def test_report_command_with_two_datasets(tmp_path, capsys, run_folder, report_sections):
    runs = {name: run_folder(tmp_path / name, name, PLANTED if name == "jittor_e2e" else {}, peak_mib=64)
            for name in ("torch_e2e", "jittor_e2e", "torch_dart", "jittor_dart")}
    out_md = tmp_path / "report.md"
    main(["report", "--dataset", "e2e", "--torch", str(runs["torch_e2e"]), "--jittor", str(runs["jittor_e2e"]),
          "--dataset", "dart", "--torch", str(runs["torch_dart"]), "--jittor", str(runs["jittor_dart"]),
          "--torch-scores", "-", "--torch-scores", str(tmp_path / "none.json"),
          "--out-md", str(out_md), "--figures", str(tmp_path / "figure")])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("e2e: not equivalent") and printed[1].startswith("dart: step-exact")
    body = report_sections(out_md.read_text())
    assert "| e2e | not equivalent | 20 | 3.500e-04 | 120 |" in body["Summary"]
    assert "PyTorch scores: not given" in body["Summary"]
    assert "none.json` does not exist" in body["Summary"]
    assert (tmp_path / "report.html").exists()
    assert {path.name for path in (tmp_path / "figure").iterdir()} == \
        {"summary_loss_curves.png", "e2e_loss_curves.png", "dart_loss_curves.png", "peak_memory.png", "runtime.png"}


def test_report_command_rejects_groups_that_do_not_line_up(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["report", "--dataset", "e2e", "--dataset", "dart", "--torch", "a", "--torch", "b", "--jittor", "c",
              "--out-md", str(tmp_path / "r.md")])
    assert stop.value.code == 2
    assert "--jittor is given 1 times for 2 datasets" in capsys.readouterr().err


def cut_line(path, number, keep):
    """Cut line `number` (1-based) of a file to its first `keep` characters; the last line loses its newline."""
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = lines[number - 1][:keep] + ("\n" if number < len(lines) else "")
    path.write_text("".join(lines))


@pytest.mark.parametrize("damage, message", [
    (lambda run: cut_line(run / "metrics.jsonl", 5, 30), "metrics.jsonl: line 5: not a JSON object"),
    (lambda run: (run / "run.json").write_text((run / "run.json").read_text()[:60]), "run.json: line "),
], ids=["metrics_cut_in_the_middle", "run_json_cut"])
def test_report_on_a_damaged_run_stops_with_one_line_naming_the_file_and_line(tmp_path, run_folder, damage, message,
                                                                              capsys, one_error_line):
    runs = [run_folder(tmp_path / name, name, {}, peak_mib=64) for name in ("torch", "jittor")]
    damage(runs[0])
    assert main(["report", "--torch", str(runs[0]), "--jittor", str(runs[1]), "--out-md", str(tmp_path / "r.md"),
                 "--figures", str(tmp_path / "figure")]) == 1
    line = one_error_line(capsys.readouterr().err, "python -m alignment")
    assert line.startswith(f"python -m alignment: error: {runs[0]}/") and message in line, line


def test_report_reads_a_killed_run_up_to_its_torn_last_line_and_says_so(tmp_path, run_folder, capsys):
    runs = [run_folder(tmp_path / name, name, {}, peak_mib=64) for name in ("torch", "jittor")]
    metrics = runs[0] / "metrics.jsonl"
    lines = len(metrics.read_text().splitlines())
    cut_line(metrics, lines, 25)
    main(["report", "--torch", str(runs[0]), "--jittor", str(runs[1]), "--out-md", str(tmp_path / "r.md"),
          "--figures", str(tmp_path / "figure")])
    assert "error" not in capsys.readouterr().err
    assert f"{metrics}: line {lines}: cut off (the run was stopped while writing it), skipped" in \
        (tmp_path / "r.md").read_text()


@pytest.mark.parametrize("command", ["report", "legacy"])
def test_help_describes_each_command(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--out-md" in text and "--figures" in text and "--tolerance" in text


def test_alignment_imports_neither_framework():
    code = ("import sys, alignment.cli, alignment.report; "
            "print(sorted({'torch', 'jittor'} & {name.split('.')[0] for name in sys.modules}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def verify_args(*flags):
    from alignment.cli import build_parser
    return build_parser().parse_args(["verify", "--torch", "t", "--jittor", "j", *flags])


def test_verify_replays_the_recipes_segments_where_they_fit_the_run_and_the_defaults_where_it_changed_its_steps(
        capsys):
    from alignment.cli import verify_settings
    as_recipe = {"config": "recipes/embedded/e2e.yaml", "save_interval": 20, "warmup_step": 50}
    assert list(verify_settings(verify_args(), as_recipe, 1200)["segments"]) == [0, 20, 600, 1180]
    assert capsys.readouterr().err == ""
    # make compare: MAX_STEP 300, a save every 75 steps; the recipe's step 20 is no saved state of that run
    shortened = {**as_recipe, "save_interval": 75}
    assert list(verify_settings(verify_args(), shortened, 300)["segments"]) == [0, 150, 225]
    assert "do not fit this run" in capsys.readouterr().err
    with pytest.raises(ValueError, match="segment 20 must start at 0 or at a multiple of save_interval 75"):
        verify_settings(verify_args("--segments", "0,20"), shortened, 300)
