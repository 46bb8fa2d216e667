"""A bad value in one job of a sweep (``train.py -m``, ``evaluate.py -m``) ends that job only: its
``sys.exit(2)`` ended the whole joblib pool, killing the other jobs mid-run with no checkpoint saved
and never starting the rest (`agents.ppo.run_messages.run_errors`)."""

from __future__ import annotations

import os
import subprocess
import sys

from agents.ppo.policy import read_meta
from tests.conftest import REPO_ROOT
from tests.test_train import tiny_run


def test_a_sweep_job_with_a_bad_value_fails_alone_and_the_sweep_says_so(tmp_path):
    tiny = tiny_run(env__copies=2, agent__n_steps=10, agent__batch_size=20, eval__seeds=1, eval__steps=60,
                    env__episode_s=60)
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    done = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=local", *tiny, "train.total_agent_steps=20",
         "train.eval_every=0", "agent.n_epochs=0,1", f"hydra.sweep.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**env, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert read_meta(tmp_path / "1" / "checkpoints" / "last.zip")["num_timesteps"] >= 20, done.stderr[-3000:]
    assert not (tmp_path / "0" / "checkpoints").exists()
    lines = done.stderr.splitlines()
    assert lines.count("error: <config>: field 'agent.n_epochs' = 0: must be >= 1") == 2  # when it failed, at the end
    assert any(line.startswith("Error executing job with overrides: [") and "'agent.n_epochs=0'" in line
               for line in lines)
    assert done.returncode == 1  # Hydra's status for a sweep with a failed job
    # the line printed when it failed names the job, its folder and its overrides: Hydra's summary at the end
    # names the first failed job only, and a refused job's folder holds no record of its settings
    at = lines.index("error: <config>: field 'agent.n_epochs' = 0: must be >= 1")
    assert lines[at + 1].startswith(f"  in sweep job 0 ({tmp_path / '0'}): ") and \
        lines[at + 1].endswith(" agent.n_epochs=0"), lines[at:at + 2]


def test_an_evaluate_sweep_job_with_a_bad_value_fails_alone(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "HYDRA_FULL_ERROR"}
    done = subprocess.run(
        [sys.executable, "evaluate.py", "-m", "scenario=grid_1x1", "eval.seeds=1", "eval.plots=false",
         "eval.progress=false", "controllers=[fixed_time]", "eval.steps=0,300", f"hydra.sweep.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**env, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert (tmp_path / "1" / "summary.json").is_file(), done.stderr[-3000:]  # the job with eval.steps=300
    lines = done.stderr.splitlines()
    at = lines.index("error: <config>: field 'eval.steps' = 0: must be >= 1")
    assert lines[at + 1].startswith(f"  in sweep job 0 ({tmp_path / '0'}): "), lines[at:at + 2]
    assert done.returncode == 1
