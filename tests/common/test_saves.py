"""Saves that a crash, a kill or a full disk cannot tear: common_data/util/atomic.py and common_data/model/checkpoint.py. The
trainers' side (a full disk at a checkpoint, the temporary files of a killed run) is in tests/torch/test_bad_input.py
and tests/jittor/test_jittor_bad_input.py."""
import os

import numpy as np

from common_data.util import atomic
from common_data.model.checkpoint import (load_model_checkpoint, remove_interrupted_saves, save_model_checkpoint,
                                    save_tensors)


def test_the_file_is_synced_before_the_rename_and_its_folder_after(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync",
                        lambda fd: calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd))
    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: calls.append(("replace", str(dst))) or
                        real_replace(src, dst))
    path = tmp_path / "model.3.safetensors"
    save_tensors(path, {"a": np.ones(3, np.float32)})
    assert [call for call, _ in calls] == ["fsync", "replace", "fsync"]
    assert calls[0][1].startswith(str(tmp_path / ".model.3.safetensors.")) and calls[0][1].endswith(".tmp")
    assert calls[1:] == [("replace", str(path)), ("fsync", str(tmp_path))]


def test_the_temporary_files_of_interrupted_saves_are_removed_and_nothing_else(tmp_path):
    save_model_checkpoint(tmp_path, 2, {"a": np.ones(3, np.float32)}, {"step": 2})
    stale = [".model.4.safetensors.k2j4x9_q.tmp", ".model.4.json.a8d0c1ee.tmp", ".trainer.4.safetensors.0a1b2c3d.tmp",
             ".tmpOcNBNy"]
    others = [".predict.jsonl.k2j4x9_q.tmp", ".tmpfile", "notes.tmp"]
    for name in stale + others:
        (tmp_path / name).write_bytes(b"\0" * 64)
    assert sorted(path.name for path in remove_interrupted_saves(tmp_path)) == sorted(stale)
    assert sorted(path.name for path in tmp_path.iterdir()) == \
        sorted(["model.2.safetensors", "model.2.json", *others])
    assert load_model_checkpoint(tmp_path / "model.2.safetensors")[1] == {"step": 2}
