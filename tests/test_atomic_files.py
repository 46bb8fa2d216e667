"""agents/ppo/atomic_files.py: a file is written to a hidden temporary file beside it, flushed to
disk, then renamed over it; a write that fails leaves the old file and no temporary one; and a
checkpoint's random state puts back every generator training draws from."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import agents.ppo.atomic_files as atomic_files
from agents.ppo.atomic_files import atomic_path, rng_state, set_rng_state, write_text_atomic


def test_the_temporary_file_is_beside_the_target_and_on_disk_before_it_takes_the_name(tmp_path, monkeypatch):
    calls = []
    fsync, replace = atomic_files.os.fsync, atomic_files.os.replace

    def recorded_fsync(descriptor):
        calls.append("fsync")
        return fsync(descriptor)

    def recorded_replace(source, target):
        calls.append(("replace", str(source), str(target)))
        return replace(source, target)

    monkeypatch.setattr(atomic_files.os, "fsync", recorded_fsync)
    monkeypatch.setattr(atomic_files.os, "replace", recorded_replace)
    target = tmp_path / "checkpoints" / "last.zip"  # its folder is made
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert calls[0] == "fsync" and calls[1][0] == "replace" and len(calls) == 2
    source = calls[1][1]
    # the same folder (os.replace is atomic on one file system), a hidden name, as the docs say
    assert source.startswith(str(tmp_path / "checkpoints" / ".last.zip.")) and source.endswith(".partial.zip")
    assert calls[1][2] == str(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.zip"]


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = write_text_atomic(tmp_path / "summary.json", "old")
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as partial:
            partial.write_text("half of the new")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_the_random_state_puts_back_torch_numpy_and_python_random():
    def draws():
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]

    state = rng_state()
    first = draws()
    draws()  # moves every generator on
    set_rng_state(state)
    assert draws() == first
