"""alignment.method_losses: the per-method summary of the 200-step Jittor-against-PyTorch runs."""
import pytest

from alignment import method_losses
from common_data.runlog import MetricsLog


def write_run(folder, losses, ranks=()):
    folder.mkdir(parents=True)
    log = MetricsLog(folder / "metrics.jsonl")
    for step, loss in enumerate(losses, start=1):
        log.write("train", step=step, loss=loss)
    for step, kept in ranks:
        log.write("rank_allocation", step=step, budget=sum(kept.values()), ranks=kept)
    log.close()


@pytest.mark.parametrize("jittor_ranks, aligned", [({"a": 2, "b": 1}, True), ({"a": 1, "b": 2}, False)])
def test_kept_ranks_must_be_identical(tmp_path, capsys, jittor_ranks, aligned):
    write_run(tmp_path / "torch_lora", [3.0, 2.5, 2.0])
    write_run(tmp_path / "jittor_lora", [3.0, 2.50002, 2.0])
    write_run(tmp_path / "torch_adalora", [3.0, 2.0], ranks=[(2, {"a": 2, "b": 1})])
    write_run(tmp_path / "jittor_adalora", [3.0, 2.0], ranks=[(2, jittor_ranks)])
    status = method_losses.main(["--runs", str(tmp_path), "--methods", "lora", "adalora"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["lora", "3", "steps", "max", "|dloss|", "2.00e-05", "ok"]
    assert ("kept ranks identical" in lines[1]) == aligned and lines[1].endswith("ok" if aligned else "NOT ALIGNED")
    assert status == (0 if aligned else 1)


def test_a_loss_beyond_the_tolerance_is_not_aligned(tmp_path, capsys):
    write_run(tmp_path / "torch_dora", [3.0, 2.5])
    write_run(tmp_path / "jittor_dora", [3.0, 2.5002])
    assert method_losses.main(["--runs", str(tmp_path), "--methods", "dora"]) == 1
    assert "max |dloss| 2.00e-04" in capsys.readouterr().out
