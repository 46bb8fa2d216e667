"""The figures a training run writes to TensorBoard, with either trainer: ``eval/<metric>`` and
``baseline/<name>/<metric>`` are the periodic evaluation's and the baselines' means on the eval
seeds, ``eval/reduction_vs_<name>`` their paired reduction, ``eval/best_travel_time`` the best
so far (also the checkpoint's ``best_eval_travel_time``), ``rollout/ep_len_mean`` an episode's
decisions and ``rollout/ep_rew_mean`` its unscaled return (agents/ppo/run_setup.py,
sb3_callback.py). The existing tests checked the tags' names and steps, never their values."""

from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from agents.ppo.config import demand_spec, engine_params
from agents.ppo.periodic_eval import Evaluator
from agents.ppo.policy import controller_for_checkpoint, read_meta
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_policy import read_torchrl_meta
from agents.ppo.torchrl_trainer import train_torchrl
from envs.evaluation.metrics import METRIC_NAMES
from envs.scenario import load_scenario
from tests.test_torchrl_trainer import SMALL, torchrl_config
from tests.test_train import tiny_run, train_config

# grid_1x1, 4 copies x 10 decisions (5 s): rollouts of 40 agent-steps, 100 s episodes; 2 eval seeds
SB3 = dict(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=2,
           eval__steps=100, env__episode_s=100)


def _scalars(tb_dir) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir))
    events.Reload()
    return {tag: {event.step: event.value for event in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def _same(logged: float, value: float) -> bool:  # TensorBoard keeps float32
    return (math.isnan(logged) and math.isnan(value)) or logged == pytest.approx(value, rel=1e-5, abs=1e-6)


def _sb3_run(run):
    cfg = train_config(*tiny_run(**SB3, train__total_agent_steps=120, train__eval_every=40))
    return cfg, train(cfg, run), read_meta(run / "checkpoints" / "last.zip"), "last.zip"


def _torchrl_run(run):
    cfg = torchrl_config(SMALL, eval__seeds=2)
    return cfg, train_torchrl(cfg, run), read_torchrl_meta(run / "checkpoints" / "last.pt"), "last.pt"


@pytest.mark.parametrize("trainer", [_sb3_run, _torchrl_run])
def test_eval_and_baseline_tags_hold_the_evaluations_figures(tmp_path, trainer):
    cfg, result, meta, last = trainer(tmp_path)
    tb = _scalars(tmp_path / "tb")
    history = result["eval_history"]
    assert len(history) >= 3
    best = math.inf
    for entry in history:
        step, travel = entry["agent_steps"], entry["travel_time/mean"]
        best = min(best, travel)
        assert _same(tb["eval/travel_time/mean"][step], travel), step
        assert _same(tb["eval/best_travel_time"][step], best), step  # the best so far, not this one
        for name in cfg.eval.baselines:
            assert _same(tb[f"eval/reduction_vs_{name}"][step], entry[f"reduction_vs_{name}"]), (step, name)
    assert result["best_eval_travel_time"] == meta["best_eval_travel_time"] == best
    assert meta["eval_history"] == history

    # the final evaluation was last's: every metric, and the baselines, on the same held-out seeds
    evaluator = Evaluator(load_scenario(cfg.scenario.name), demand_spec(cfg.eval.demand, "eval.demand"),
                          cfg.eval.seeds, cfg.eval.steps, engine_params(cfg))
    metrics = evaluator.evaluate(controller_for_checkpoint(tmp_path / "checkpoints" / last))
    baselines = evaluator.run_baselines(list(cfg.eval.baselines), OmegaConf.to_container(cfg.baseline_params))
    final = history[-1]["agent_steps"]
    for name in METRIC_NAMES:
        assert _same(tb[f"eval/{name}"][final], float(metrics[name].mean())), name
        for base, values in baselines.items():
            assert _same(tb[f"baseline/{base}/{name}"][final], float(values[name].mean())), (base, name)
    for base, values in baselines.items():
        assert meta["baselines"][base]["travel_time/mean"] == pytest.approx(float(values["travel_time/mean"].mean()))
        # paired per seed: 100 x (baseline - policy) / baseline, averaged over the seeds
        paired = 100 * (values["travel_time/mean"] - metrics["travel_time/mean"]) / values["travel_time/mean"]
        assert _same(tb[f"eval/reduction_vs_{base}"][final], float(paired.mean())), base


def test_sb3_episode_length_and_return_are_in_decisions_and_unscaled_reward(tmp_path):
    # 2 copies x 20 decisions of 5 s: each copy's 100 s episode ends with the first rollout, whose
    # actions the reward scale cannot change (it only weighs the update after it)
    one = dict(SB3, env__copies=2, agent__n_steps=20, train__total_agent_steps=40, train__eval_every=0)
    logged = {}
    for scale in (0.05, 1.0):
        run = tmp_path / f"scale{scale}"
        train(train_config(*tiny_run(**one, agent__reward_scale=scale)), run)
        logged[scale] = _scalars(run / "tb")
    assert logged[1.0]["rollout/ep_len_mean"] == logged[0.05]["rollout/ep_len_mean"] == {40: 20.0}
    assert logged[1.0]["rollout/episodes"] == {40: 2.0}
    returns = logged[0.05]["rollout/ep_rew_mean"]
    assert returns.keys() == {40} and returns[40] < 0  # queue reward: minus the halting vehicles
    assert returns[40] == pytest.approx(logged[1.0]["rollout/ep_rew_mean"][40], rel=1e-5)


def test_torchrl_episode_length_is_in_decisions(tmp_path):
    train_torchrl(torchrl_config(SMALL, train__eval_every=0), tmp_path)  # 50 s episodes of 5 s decisions
    lengths = _scalars(tmp_path / "tb")["rollout/ep_len_mean"]
    assert lengths and set(lengths.values()) == {10.0}
