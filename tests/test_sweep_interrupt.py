"""SIGTERM to a ``train.py -m`` sweep's own process (``kill PID``, a scheduler's stop) ends its running
jobs as it ends a single run: each saves ``last`` and says how to resume it. It ended the sweep's
process alone, and the jobs in its joblib workers trained on, orphaned, to their end
(`agents.ppo.interrupts.forward_sigterm_to_workers`; Linux: the workers are found under /proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agents.ppo import interrupts
from agents.ppo.policy import read_meta
from tests.conftest import REPO_ROOT
from tests.test_train import tiny_run


def _rows(progress: Path) -> int:
    try:
        return len(progress.read_text().splitlines()) - 1
    except OSError:
        return 0


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("to_group", [False, True], ids=["process", "process-group"])
def test_sigterm_to_a_sweeps_process_stops_its_jobs_each_saving_last(tmp_path, to_group):
    # to its process group, each worker gets it twice: from the kernel and forwarded by the sweep's process
    tiny = tiny_run(env__copies=2, agent__n_steps=10, agent__batch_size=20, eval__seeds=1, eval__steps=60,
                    env__episode_s=60)
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    out = tmp_path / "sweep.out"
    with open(out, "w") as log:  # not a pipe: workers left running held it open
        sweep = subprocess.Popen(
            [sys.executable, "train.py", "-m", "hydra/launcher=local", *tiny, "train.total_agent_steps=10000000",
             "train.eval_every=0", "train.checkpoint_every=0", "seed=0,1,2", f"hydra.sweep.dir={tmp_path / 's'}"],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env={**env, "PYTHONPATH": str(REPO_ROOT)},
            start_new_session=True,  # its own process group, for the cleanup below
        )
    try:
        deadline = time.monotonic() + 120
        while not all(_rows(tmp_path / "s" / job / "progress.csv") >= 2 for job in ("0", "1")):  # both past step 0
            assert sweep.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.5)
        if to_group:
            os.killpg(sweep.pid, signal.SIGTERM)
        else:
            sweep.send_signal(signal.SIGTERM)
        assert sweep.wait(timeout=60) in (143, -signal.SIGTERM)
        deadline = time.monotonic() + 60
        while out.read_text().count("interrupted at") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        said = out.read_text()
        for job in ("0", "1"):
            last = tmp_path / "s" / job / "checkpoints" / "last.zip"
            assert f"resume with resume={last}" in said, said[-3000:]
            assert read_meta(last)["num_timesteps"] > 0
        assert not (tmp_path / "s" / "2").exists()  # the job not started never starts
    finally:
        try:  # the sweep and whatever is left of its workers: its own session's process group
            os.killpg(sweep.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:  # a zombie (ended, not yet reaped by its orphaned parent's successor) counts as ended
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc (Linux)")
def test_sigterm_to_an_evaluate_sweeps_process_ends_its_workers(tmp_path):
    """``evaluate.py -m``: the workers running its jobs end with it, not evaluate on, orphaned, to their end."""
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    out = tmp_path / "sweep.out"
    with open(out, "w") as log:
        sweep = subprocess.Popen(
            [sys.executable, "evaluate.py", "-m", "hydra/launcher=local", "scenario=grid_1x1", "eval.seeds=1",
             "eval.steps=2000000", "controllers=[fixed_time]", "eval.demand.scale=1,2,3",
             f"hydra.sweep.dir={tmp_path / 's'}"],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env={**env, "PYTHONPATH": str(REPO_ROOT)},
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while len(list((tmp_path / "s").glob("*/evaluate.log"))) < 2:  # both workers into a job
            assert sweep.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(2)
        workers = interrupts._children(sweep.pid)  # as the sweep's process finds them
        assert workers, out.read_text()[-3000:]
        sweep.send_signal(signal.SIGTERM)
        assert sweep.wait(timeout=60) in (143, -signal.SIGTERM)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not any(_alive(pid) for pid in workers), [pid for pid in workers if _alive(pid)]
    finally:
        try:
            os.killpg(sweep.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
