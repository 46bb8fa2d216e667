"""An interrupt during a PPO update (either trainer) takes effect when the update ends and saves
``last`` with that update in it. The update's log row and an evaluation due at its step used to be
lost for good: the row (``train/*``) was never written, and the resumed run counted its evaluations
from the checkpoint's step on, so the learning curve and ``eval_history`` skipped that point. Now
the interrupted run writes the row before it saves, and the resumed run evaluates first when an
evaluation was due at the checkpoint's step, as the uninterrupted run did."""

from __future__ import annotations

import csv

import pytest

from agents.ppo.atomic_files import STEP_COLUMN
from agents.ppo.policy import read_meta
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_policy import read_torchrl_meta
from agents.ppo.torchrl_trainer import train_torchrl
from envs.errors import ConfigError
from tests.tensorboard_points import scalar_events
from tests.test_interrupts import sigint_in_the_first_optimiser_step
from tests.test_torchrl_trainer import SMALL, torchrl_config
from tests.test_train import tiny_run, train_config


def _sb3(run, total: int, resume=None):
    # rollouts of 4 copies x 10 decisions on grid_1x1 (40 agent-steps), an evaluation every rollout
    tiny = tiny_run(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
                    eval__steps=100, env__episode_s=100, train__eval_every=40, train__checkpoint_every=0)
    extra = [] if resume is None else [f"resume={resume}"]
    return train(train_config(*tiny, f"train.total_agent_steps={total}", *extra), run)


def _torchrl(run, total: int, resume=None):
    # rollouts of 160 agent-steps on grid_4x4, an evaluation every rollout
    extra = {} if resume is None else {"resume": resume}
    return train_torchrl(torchrl_config(SMALL, train__total_agent_steps=total, train__checkpoint_every=0,
                                        **extra), run)


def _rows(path) -> dict[int, dict]:
    with open(path, newline="") as table:
        return {int(float(row[STEP_COLUMN])): row for row in csv.DictReader(table) if row[STEP_COLUMN]}


@pytest.mark.parametrize("trainer, last, rollout, meta_of", [(_sb3, "last.zip", 40, read_meta),
                                                             (_torchrl, "last.pt", 160, read_torchrl_meta)])
def test_an_interrupt_in_the_update_keeps_its_log_row_and_the_resume_runs_the_evaluation_due(
        tmp_path, monkeypatch, trainer, last, rollout, meta_of):
    run = tmp_path / "run"
    calls = sigint_in_the_first_optimiser_step(monkeypatch)  # SIGINT in the first update only
    with pytest.raises(KeyboardInterrupt):
        trainer(run, 2 * rollout)
    assert calls and meta_of(run / "checkpoints" / last)["num_timesteps"] == rollout
    # the update the checkpoint holds is in the log: its train/* row was never written
    assert _rows(run / "progress.csv")[rollout].get("train/value_loss", "") != ""
    trainer(run, 2 * rollout, resume=run / "checkpoints" / last)
    history = meta_of(run / "checkpoints" / last)["eval_history"]
    # as the uninterrupted run: the evaluation due at the first rollout's step was skipped for good
    assert [entry["agent_steps"] for entry in history] == [0, rollout, 2 * rollout]
    points = {tag: [event.step for event in events] for tag, events in scalar_events(run / "tb").items()}
    assert points["eval/travel_time/mean"] == [0, rollout, 2 * rollout]
    assert points["train/value_loss"] == [rollout, 2 * rollout]
    rows = _rows(run / "progress.csv")
    assert sorted(rows) == [0, rollout, 2 * rollout]
    assert all(rows[step]["train/value_loss"] != "" for step in (rollout, 2 * rollout))
    assert all(rows[step]["eval/travel_time/mean"] != "" for step in rows)


@pytest.mark.parametrize("trainer, last, best, rollout, meta_of", [
    (_sb3, "last.zip", "best.zip", 40, read_meta), (_torchrl, "last.pt", "best.pt", 160, read_torchrl_meta)])
def test_an_interrupt_in_the_last_update_leaves_the_final_evaluation_to_the_resume(
        tmp_path, monkeypatch, trainer, last, best, rollout, meta_of):
    """The last update's interrupt saved ``last`` at the run's total, before the final evaluation; its
    resume was refused ("already at N agent-steps"). It now runs that evaluation alone, as the
    uninterrupted run did (its row, the best checkpoint, the history train.py's summary.json has)."""
    whole = trainer(tmp_path / "whole", rollout)  # the same seed, uninterrupted
    run = tmp_path / "run"
    sigint_in_the_first_optimiser_step(monkeypatch)  # the first update is the last
    with pytest.raises(KeyboardInterrupt):
        trainer(run, rollout)
    assert [entry["agent_steps"] for entry in meta_of(run / "checkpoints" / last)["eval_history"]] == [0]
    result = trainer(run, rollout, resume=run / "checkpoints" / last)
    assert result["num_timesteps"] == rollout
    assert result["eval_history"] == meta_of(run / "checkpoints" / last)["eval_history"]
    assert [{k: v for k, v in entry.items() if k != "wall_s"} for entry in result["eval_history"]] == \
        [{k: v for k, v in entry.items() if k != "wall_s"} for entry in whole["eval_history"]]
    assert result["best_eval_travel_time"] == whole["best_eval_travel_time"]
    assert meta_of(run / "checkpoints" / best)["num_timesteps"] == \
        meta_of(tmp_path / "whole" / "checkpoints" / best)["num_timesteps"]
    points = {tag: [event.step for event in events] for tag, events in scalar_events(run / "tb").items()}
    assert points["eval/travel_time/mean"] == [0, rollout]
    rows = _rows(run / "progress.csv")
    assert sorted(rows) == [0, rollout] and rows[rollout]["eval/travel_time/mean"] != ""
    assert rows[rollout]["train/value_loss"] != ""  # the interrupted run's row, the evaluation added to it
    # it owes nothing now: a resume at the total is refused as before
    with pytest.raises(ConfigError, match="already at"):
        trainer(run, rollout, resume=run / "checkpoints" / last)
