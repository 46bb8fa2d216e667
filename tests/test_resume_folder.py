"""A resume into a folder that holds another run is refused naming hydra.run.dir: a new run refuses
a folder holding a run, but a resume took any, replacing that run's last checkpoint and carrying its
progress.csv and TensorBoard curve on as its own (`agents.ppo.run_messages.check_resume_folder`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agents.ppo.sb3_trainer import train
from envs.errors import ConfigError
from tests.conftest import REPO_ROOT
from tests.test_train import tiny_run, train_config

SHORT = dict(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
             eval__steps=100, env__episode_s=100, train__eval_every=40)


def test_a_resume_into_another_runs_folder_is_refused_and_into_its_own_lineage_is_not(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        train(train_config(*tiny_run(**SHORT, train__total_agent_steps=40, seed=seed)), tmp_path / name)
    last = tmp_path / "a" / "checkpoints" / "last.zip"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "train.py", *tiny_run(**SHORT, train__total_agent_steps=80),
                           f"resume={last}", f"hydra.run.dir={tmp_path / 'b'}"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2  # went on, replacing b's last.zip with a's continuation
    assert done.stderr.strip() == (f"error: <config>: field 'hydra.run.dir' = '{tmp_path / 'b'}': holds another run "
                                   f"({tmp_path / 'b' / 'checkpoints' / 'last.zip'} is not one of {last}'s): resume "
                                   "into the checkpoint's own run folder or a new one")
    from agents.ppo.run_messages import check_resume_folder

    check_resume_folder(str(last), tmp_path / "a")  # its own folder
    check_resume_folder(str(tmp_path / "a" / "checkpoints" / "best.zip"), tmp_path / "a")  # an earlier point of it
    check_resume_folder(str(last), tmp_path / "new")  # a new folder
    train(train_config(*tiny_run(**SHORT, train__total_agent_steps=80, resume=last)), tmp_path / "c")
    check_resume_folder(str(last), tmp_path / "c")  # a folder a resume of it wrote: the same run, carried on
    (tmp_path / "a" / "checkpoints" / "last.zip").write_bytes(b"torn")  # its own folder's damaged last: replaced
    check_resume_folder(str(tmp_path / "a" / "checkpoints" / "best.zip"), tmp_path / "a")
    (tmp_path / "d" / "checkpoints").mkdir(parents=True)
    (tmp_path / "d" / "checkpoints" / "last.pt").write_bytes(b"")  # the other trainer's: another run
    with pytest.raises(ConfigError, match="last.pt is not one of"):
        check_resume_folder(str(last), tmp_path / "d")
