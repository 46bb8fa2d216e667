"""Issue 18, point 2: nothing lost when training is killed. A tiny train.py run is killed with
SIGKILL in the middle of a checkpoint write (GRIDLIGHT_SLOW_WRITES_S holds each write between the
temporary file and the rename), then resumed and killed with SIGTERM, then resumed and
interrupted with SIGINT, at random moments; after each kill the last checkpoint and progress.csv
are whole and the next ``resume=`` carries on from them. Resume restores
the optimiser and the random state (checked at the moment learning continues)."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

from agents.ppo.atomic_files import SLOW_WRITES_ENV, write_text_atomic
from agents.ppo.policy import load_policy, read_meta, read_rng
from agents.ppo.sb3_trainer import train
from tests.conftest import REPO_ROOT
from tests.test_train import train_config, tiny_run

STEPS_PER_ROLLOUT = 30 * 4  # agent.n_steps x env.copies on grid_1x1 (one intersection)
KILL_RUN = dict(env__copies=4, agent__batch_size=120, agent__n_epochs=1, eval__seeds=1, eval__steps=60,
                train__eval_every=0, train__checkpoint_every=STEPS_PER_ROLLOUT)


def _launch(run_dir, total: int, resume=None, slow_s: float = 0.0) -> subprocess.Popen:
    args = tiny_run(**KILL_RUN, train__total_agent_steps=total) + [f"hydra.run.dir={run_dir}"]
    if resume is not None:
        args.append(f"resume={resume}")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), SLOW_WRITES_ENV: str(slow_s)}
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(condition, process, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"train.py ended early ({process.returncode}): {process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("train.py never reached the kill point")
        time.sleep(0.05)


def _partials(checkpoints):
    return [p for p in checkpoints.glob(".last.zip.*")] if checkpoints.is_dir() else []


def _check_whole(run_dir) -> int:
    """The last checkpoint loads and progress.csv parses with one width: returns its step count."""
    last = run_dir / "checkpoints" / "last.zip"
    meta = read_meta(last)
    with zipfile.ZipFile(last) as archive:
        assert archive.testzip() is None
    load_policy(last)
    with open(run_dir / "progress.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) >= 2 and len({len(row) for row in rows}) == 1, rows
    return int(meta["num_timesteps"])


def test_kill_9_mid_write_then_sigterm_and_sigint_at_random_moments_leave_a_loadable_checkpoint(tmp_path):
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    total = 40 * STEPS_PER_ROLLOUT  # never reached: each run is killed first
    first = tmp_path / "run1"
    process = _launch(first, total, slow_s=1.0)
    # mid-write: wait for a checkpoint, then for the next one's temporary file, then SIGKILL
    _wait_for(lambda: (first / "checkpoints" / "last.zip").is_file(), process)
    _wait_for(lambda: _partials(first / "checkpoints"), process)
    process.kill()
    process.wait()
    steps = _check_whole(first)
    resumed_from = first / "checkpoints" / "last.zip"
    for number, sig in enumerate((signal.SIGTERM, signal.SIGINT), 2):
        run = tmp_path / f"run{number}"
        process = _launch(run, total, resume=resumed_from)
        _wait_for(lambda: (run / "checkpoints" / "last.zip").is_file(), process)
        time.sleep(rng.uniform(0.0, 2.0))  # anywhere: in a rollout, an update or a write
        process.send_signal(sig)
        process.wait(timeout=60)
        later = _check_whole(run)
        assert later > steps, f"seed {seed}: resume went back from {steps} to {later}"
        steps, resumed_from = later, run / "checkpoints" / "last.zip"
    assert not _partials(run / "checkpoints"), "SIGINT cleans up its temporary file"


class _Stop(Exception):
    pass


def test_resume_continues_with_the_saved_optimiser_and_random_state(tmp_path, monkeypatch):
    train(train_config(*tiny_run(**KILL_RUN, train__total_agent_steps=2 * STEPS_PER_ROLLOUT)), tmp_path / "a")
    checkpoint = tmp_path / "a" / "checkpoints" / "last.zip"
    saved_rng = read_rng(checkpoint)
    with zipfile.ZipFile(checkpoint) as archive, archive.open("policy.optimizer.pth") as member:
        saved_optimizer = torch.load(member, weights_only=False)
    assert saved_optimizer["state"], "Adam has moments after two updates"
    seen = {}

    def learn(model, *args, **kwargs):  # the moment training would continue
        seen["torch"], seen["numpy"] = torch.get_rng_state(), np.random.get_state()
        seen["optimizer"] = model.policy.optimizer.state_dict()
        raise _Stop

    torch.manual_seed(12345)  # whatever happened before: resume must put the saved state back
    monkeypatch.setattr(MaskablePPO, "learn", learn)
    with pytest.raises(_Stop):
        train(train_config(*tiny_run(**KILL_RUN, train__total_agent_steps=4 * STEPS_PER_ROLLOUT),
                           f"resume={checkpoint}"), tmp_path / "b")
    assert torch.equal(seen["torch"], saved_rng["torch"])
    assert np.array_equal(seen["numpy"][1], saved_rng["numpy"][1])
    for key, moments in saved_optimizer["state"].items():
        for name, value in moments.items():
            assert torch.equal(seen["optimizer"]["state"][key][name], value), (key, name)


def test_torchrl_resume_continues_with_the_saved_optimiser_and_random_state(tmp_path, monkeypatch):
    from agents.ppo.torchrl_policy import read_torchrl_checkpoint
    from agents.ppo.torchrl_trainer import TorchRLTrainer, train_torchrl
    from tests.test_torchrl_trainer import SMALL, torchrl_config

    train_torchrl(torchrl_config(SMALL, train__total_agent_steps=160, train__eval_every=0), tmp_path / "a")
    saved = read_torchrl_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    assert saved["optimizer"]["state"], "Adam has moments after the updates"
    seen = {}

    def iteration(trainer):  # the first step of the continued run
        seen["torch"], seen["optimizer"] = torch.get_rng_state(), trainer.optimizer.state_dict()
        raise _Stop

    torch.manual_seed(12345)
    monkeypatch.setattr(TorchRLTrainer, "iteration", iteration)
    with pytest.raises(_Stop):
        train_torchrl(torchrl_config(SMALL, train__eval_every=0, resume=tmp_path / "a" / "checkpoints" / "last.pt"),
                      tmp_path / "b")
    assert torch.equal(seen["torch"], saved["rng"]["torch"])
    for key, moments in saved["optimizer"]["state"].items():
        for name, value in moments.items():
            assert torch.equal(seen["optimizer"]["state"][key][name], value), (key, name)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_an_atomic_write_gets_the_mode_a_plain_open_would(tmp_path, umask):
    old = os.umask(umask)
    try:
        written = write_text_atomic(tmp_path / "summary.json", "{}")
        (tmp_path / "plain.txt").write_text("{}")
    finally:
        os.umask(old)
    assert oct(written.stat().st_mode & 0o777) == oct(0o666 & ~umask)  # not mkstemp's 0600
    assert written.stat().st_mode == (tmp_path / "plain.txt").stat().st_mode
