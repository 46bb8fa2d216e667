"""train.py's ``summary.json`` (docs/training.md, "What a run writes"): the agent-steps trained,
the throughput, the best eval travel time, each baseline's travel time and the eval history, the
same figures as the last checkpoint's meta."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from agents.ppo.policy import read_meta
from tests.conftest import REPO_ROOT
from tests.test_train import tiny_run


def test_summary_json_holds_the_runs_figures(tmp_path):
    run = tmp_path / "run"
    args = tiny_run(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
                    eval__steps=100, env__episode_s=100, train__total_agent_steps=80, train__eval_every=40)
    done = subprocess.run([sys.executable, "train.py", *args, f"hydra.run.dir={run}"], cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    meta = read_meta(run / "checkpoints" / "last.zip")
    assert set(summary) == {"num_timesteps", "agent_steps_per_s", "best_eval_travel_time", "baselines_travel_time",
                            "eval_history"}
    assert summary["num_timesteps"] == meta["num_timesteps"] == 80
    assert summary["agent_steps_per_s"] > 0
    assert summary["eval_history"] == meta["eval_history"]
    assert [entry["agent_steps"] for entry in summary["eval_history"]] == [0, 40, 80]
    travel = [entry["travel_time/mean"] for entry in summary["eval_history"]]
    assert summary["best_eval_travel_time"] == meta["best_eval_travel_time"] == min(travel)
    assert summary["baselines_travel_time"] == {
        name: values["travel_time/mean"] for name, values in meta["baselines"].items()}
    assert set(summary["baselines_travel_time"]) == {"fixed_time", "max_pressure"}
    for name in summary["baselines_travel_time"]:
        assert f"baseline {name}: travel time {summary['baselines_travel_time'][name]:.1f} s on 1 eval seed(s)" \
            in (run / "train.log").read_text()
