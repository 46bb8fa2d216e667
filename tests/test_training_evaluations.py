"""When a training run evaluates and checkpoints, with either trainer: at 0, then once per
multiple of ``train.eval_every`` / ``train.checkpoint_every`` agent-steps crossed and at the end,
counted on from a resumed checkpoint's step; a resumed run carries the checkpoint's best eval
travel time (``best`` is only replaced by a better evaluation) and wall clock on; and the
evaluations run evaluate.py's held-out episodes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import agents.ppo.sb3_callback as sb3_callback
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_policy import read_torchrl_meta
from agents.ppo.torchrl_trainer import TorchRLTrainer, train_torchrl
from tests.test_torchrl_trainer import SMALL, torchrl_config
from tests.test_train import tiny_run, train_config

# grid_1x1, 4 copies x 10 decisions: rollouts of 40 agent-steps
SB3 = dict(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=1,
           eval__steps=100, env__episode_s=100)
SB3_ROLLOUT, TORCHRL_ROLLOUT = 40, 160  # SMALL: grid_4x4, 2 copies x 5 decisions x 16 intersections


def _sb3_saves(monkeypatch) -> list[tuple[str, int]]:
    saves, save = [], sb3_callback.save_checkpoint

    def recorded(model, path, meta, **kwargs):
        saves.append((Path(path).name, int(meta["num_timesteps"])))
        return save(model, path, meta, **kwargs)

    monkeypatch.setattr(sb3_callback, "save_checkpoint", recorded)
    return saves


def _torchrl_saves(monkeypatch) -> list[tuple[str, int]]:
    saves, checkpoint = [], TorchRLTrainer.checkpoint

    def recorded(trainer, name):
        saves.append((name, trainer.num_timesteps))
        return checkpoint(trainer, name)

    monkeypatch.setattr(TorchRLTrainer, "checkpoint", recorded)
    return saves


def _sb3(run, total, every, resume=None):
    extra = [] if resume is None else [f"resume={resume}"]
    return train(train_config(*tiny_run(**SB3, train__total_agent_steps=total, train__eval_every=every,
                                        train__checkpoint_every=every), *extra), run)


def _torchrl(run, total, every, resume=None):
    extra = {} if resume is None else {"resume": resume}
    return train_torchrl(torchrl_config(SMALL, train__total_agent_steps=total, train__eval_every=every,
                                        train__checkpoint_every=every, **extra), run)


@pytest.mark.parametrize("trainer, saves, rollout, last", [(_sb3, _sb3_saves, SB3_ROLLOUT, "last.zip"),
                                                           (_torchrl, _torchrl_saves, TORCHRL_ROLLOUT, "last.pt")])
def test_evaluations_and_checkpoints_follow_their_schedule_also_after_a_resume(
        tmp_path, monkeypatch, trainer, saves, rollout, last):
    saved = saves(monkeypatch)
    # every 2 rollouts of 4: evaluated at 0, 2R and 4R (not after each update), last saved at 2R and 4R
    result = trainer(tmp_path / "whole", 4 * rollout, 2 * rollout)
    assert [e["agent_steps"] for e in result["eval_history"]] == [0, 2 * rollout, 4 * rollout]
    assert [step for name, step in saved if name == last] == [2 * rollout, 4 * rollout]

    # every 3 rollouts, resumed after the first: the multiples of 3R are crossed at 3R only (not at
    # 2R, the resumed run's first update), and the run ends at 4R with an evaluation and a save
    trainer(tmp_path / "first", rollout, 3 * rollout)
    saved.clear()
    result = trainer(tmp_path / "second", 4 * rollout, 3 * rollout, resume=tmp_path / "first" / "checkpoints" / last)
    assert [e["agent_steps"] for e in result["eval_history"]] == [0, rollout, 3 * rollout, 4 * rollout]
    assert [step for name, step in saved if name == last] == [3 * rollout, 4 * rollout]


def test_a_resumed_run_keeps_the_checkpoints_best_travel_time_and_wall_clock(tmp_path):
    _torchrl(tmp_path / "first", TORCHRL_ROLLOUT, TORCHRL_ROLLOUT)
    checkpoint = tmp_path / "first" / "checkpoints" / "last.pt"
    data = torch.load(checkpoint, weights_only=False)
    data["meta"]["best_eval_travel_time"] = 1.0  # better than any evaluation can be
    data["meta"]["wall_s"] = 1000.0  # as after a long first run
    torch.save(data, checkpoint)
    result = _torchrl(tmp_path / "second", 2 * TORCHRL_ROLLOUT, TORCHRL_ROLLOUT, resume=checkpoint)
    assert result["eval_history"][-1]["travel_time/mean"] > 1.0
    assert result["best_eval_travel_time"] == 1.0
    assert not (tmp_path / "second" / "checkpoints" / "best.pt").exists()  # no worse policy saved as best
    # the wall clock carries on too, in the history and in the checkpoint a further resume reads
    assert result["eval_history"][-1]["wall_s"] >= 1000.0
    assert read_torchrl_meta(tmp_path / "second" / "checkpoints" / "last.pt")["wall_s"] >= 1000.0


def test_the_periodic_evaluation_runs_the_held_out_episodes_evaluate_py_reports():
    import numpy as np

    from agents.ppo.config import demand_spec, engine_params
    from agents.ppo.periodic_eval import Evaluator
    from envs.evaluation.runner import eval_demands
    from envs.incidents.perturbations import perturbation_from_config
    from envs.scenario import load_scenario
    from envs.scenario.splits import sample_trips

    cfg = train_config(*tiny_run(**SB3))
    scenario, spec = load_scenario("grid_1x1"), demand_spec(cfg.eval.demand, "eval.demand")
    evaluator = Evaluator(scenario, spec, 2, 100, engine_params(cfg))
    reported = eval_demands(scenario, spec, 2, perturbation_from_config(None, "<config>")).trips[0]
    for ours, theirs in zip(evaluator.samples, reported, strict=True):
        assert np.array_equal(ours.depart, theirs.depart) and np.array_equal(ours.routes, theirs.routes)
    trained_on = sample_trips(scenario, spec, "train", 0)  # training's split: other demands
    assert not np.array_equal(trained_on.depart, evaluator.samples[0].depart)


def test_training_demand_is_cut_at_the_episode_and_the_evaluation_keeps_the_scenarios_horizon():
    from agents.ppo.run_setup import load_scenarios

    training, evaluation = load_scenarios(train_config(*tiny_run(env__episode_s=300)))
    assert training.info["horizon"] == 300 and evaluation.info["horizon"] is None  # evaluate.py's load
    assert int(training.trips.depart.max()) < 300 < int(evaluation.trips.depart.max())
    training, evaluation = load_scenarios(train_config(*tiny_run(env__episode_s=300), "scenario.horizon=900"))
    assert training.info["horizon"] == evaluation.info["horizon"] == 900  # a horizon given is both runs'
    assert 300 < int(training.trips.depart.max()) < 900


def test_training_says_which_perturbation_parts_reach_past_its_episode(capsys):
    from agents.ppo.run_setup import load_scenarios

    # mixed's closures start from 300 s and its surge runs 900-1800 s: a 300 s episode trains on neither
    load_scenarios(train_config(*tiny_run(env__episode_s=300), "perturbation=mixed"))
    assert ("warning: perturbation mixed: incidents.start_s + duration_s [300, 3600] s; surge.[start_s, end_s] "
            "[900, 1800] s; detectors.stuck_at_s 600 s reach past the 300 s training episode (env.episode_s): what "
            "falls after its end is never trained on") in capsys.readouterr().out
    load_scenarios(train_config(*tiny_run(env__episode_s=3600), "perturbation=mixed"))  # all inside: no warning
    assert "warning" not in capsys.readouterr().out
