"""A run interrupted in its first rollout saves ``last`` at 0 agent-steps, with the start's
evaluation in its history; resumed, it evaluated at 0 again, doubling that entry in eval_history
(summary.json) and the row at step 0 in progress.csv. Either trainer."""

from __future__ import annotations

import csv

import pytest

import agents.ppo.sb3_callback as sb3_callback
from agents.ppo.atomic_files import STEP_COLUMN
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_trainer import TorchRLTrainer, train_torchrl
from tests.test_train import tiny_run, train_config

# grid_1x1, 4 copies x 10 decisions: rollouts of 40 agent-steps
SHORT = dict(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
             eval__steps=100, env__episode_s=100, train__eval_every=0)


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_a_run_resumed_at_zero_agent_steps_evaluates_its_start_once(tmp_path, monkeypatch, trainer):
    run, suffix = (train, "zip") if trainer == "sb3" else (train_torchrl, "pt")
    with monkeypatch.context() as patch:  # Ctrl-C in the first rollout
        if trainer == "sb3":
            patch.setattr(sb3_callback.TrainingCallback, "_on_step", _interrupt)
        else:
            patch.setattr(TorchRLTrainer, "collect", _interrupt)
        with pytest.raises(KeyboardInterrupt):
            run(train_config(*tiny_run(**SHORT, trainer=trainer, train__total_agent_steps=40)), tmp_path)
    last = tmp_path / "checkpoints" / f"last.{suffix}"
    result = run(train_config(*tiny_run(**SHORT, trainer=trainer, train__total_agent_steps=40, resume=last)),
                 tmp_path)
    assert [entry["agent_steps"] for entry in result["eval_history"]] == [0, 40]  # was [0, 0, 40]
    with open(tmp_path / "progress.csv", newline="") as table:
        steps = [row[STEP_COLUMN] for row in csv.DictReader(table)]
    assert steps.count("0") == 1
