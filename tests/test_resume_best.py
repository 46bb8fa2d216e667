"""A run resumed into a new folder carries the best evaluation's travel time on, so it writes a
``best`` checkpoint only when an evaluation beats it: the folder had none while its summary named
that best figure. The resumed checkpoint's own run's ``best`` is copied in
(`agents.ppo.run_setup.carry_best_checkpoint`), with either trainer."""

from __future__ import annotations

import pytest

from agents.ppo.policy import checkpoint_meta
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_trainer import train_torchrl
from tests.test_train import tiny_run, train_config

# grid_1x1, 4 copies x 10 decisions: rollouts of 40 agent-steps, an evaluation after each
SHORT = dict(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
             eval__steps=100, env__episode_s=100, train__eval_every=40)


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_a_run_resumed_into_a_new_folder_holds_the_best_checkpoint_its_summary_names(tmp_path, trainer):
    run = train if trainer == "sb3" else train_torchrl
    suffix = ".zip" if trainer == "sb3" else ".pt"
    run(train_config(*tiny_run(**SHORT, trainer=trainer, train__total_agent_steps=120)), tmp_path / "first")
    first = tmp_path / "first" / "checkpoints"
    resumed = run(train_config(*tiny_run(**SHORT, trainer=trainer, train__total_agent_steps=160,
                                         resume=first / f"last{suffix}")), tmp_path / "second")
    best = tmp_path / "second" / "checkpoints" / f"best{suffix}"
    assert best.is_file()  # was missing: this run's one evaluation did not beat the first run's best
    assert checkpoint_meta(best)["best_eval_travel_time"] == resumed["best_eval_travel_time"]
    assert best.read_bytes() == (first / f"best{suffix}").read_bytes()  # the first run's, copied


def test_a_best_checkpoint_not_found_beside_the_resumed_one_is_said_and_nothing_is_copied(tmp_path, capsys):
    from agents.ppo.run_setup import carry_best_checkpoint

    carry_best_checkpoint(str(tmp_path / "elsewhere" / "last.zip"), tmp_path / "run", {"best_eval_travel_time": 90.0})
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert capsys.readouterr().out == (f"the best evaluation so far (90.0 s) has no best.zip beside the checkpoint to "
                                       f"copy into {tmp_path / 'run' / 'checkpoints'}: one is written there when an "
                                       "evaluation beats it\n")
    carry_best_checkpoint(str(tmp_path / "last.zip"), tmp_path / "run", {})  # no evaluation recorded: nothing
    assert capsys.readouterr().out == ""
