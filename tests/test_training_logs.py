"""The figures a training run writes to TensorBoard, with either trainer: ``eval/<metric>`` and
``baseline/<name>/<metric>`` are the periodic evaluation's and the baselines' means on the eval
seeds, ``eval/reduction_vs_<name>`` their paired reduction, ``eval/best_travel_time`` the best
so far (also the checkpoint's ``best_eval_travel_time``), ``rollout/ep_len_mean`` an episode's
decisions and ``rollout/ep_rew_mean`` its unscaled return (agents/ppo/run_setup.py,
sb3_callback.py): values, not only the tags' names and steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from agents.classical import CONTROLLERS
from agents.ppo.config import demand_spec, engine_params
from agents.ppo.periodic_eval import Evaluator
from agents.ppo.policy import controller_for_checkpoint, read_meta
from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_policy import read_torchrl_meta
from agents.ppo.torchrl_trainer import train_torchrl
from envs.evaluation.metrics import METRIC_NAMES
from envs.scenario import load_scenario
from tests.tensorboard_points import scalar_events
from tests.test_torchrl_trainer import SMALL, torchrl_config
from tests.test_train import tiny_run, train_config

# grid_1x1, 4 copies x 10 decisions (5 s): rollouts of 40 agent-steps, 100 s episodes; 2 eval seeds
SB3 = dict(env__copies=4, agent__n_steps=10, agent__batch_size=20, agent__n_epochs=1, eval__seeds=2,
           eval__steps=100, env__episode_s=100)


def _scalars(tb_dir) -> dict[str, dict[int, float]]:
    return {tag: {event.step: event.value for event in events} for tag, events in scalar_events(tb_dir).items()}


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

    # the final evaluation was last's: every metric, and the baselines (each run on its own), on the same seeds
    evaluator = Evaluator(load_scenario(cfg.scenario.name), demand_spec(cfg.eval.demand, "eval.demand"),
                          cfg.eval.seeds, cfg.eval.steps, engine_params(cfg))
    metrics = evaluator.evaluate(controller_for_checkpoint(tmp_path / "checkpoints" / last))
    params = OmegaConf.to_container(cfg.baseline_params)
    baselines = {name: evaluator.evaluate(CONTROLLERS[name](**params.get(name, {}))) for name in cfg.eval.baselines}
    travel = {name: values["travel_time/mean"].tolist() for name, values in baselines.items()}
    assert travel["fixed_time"] != travel["max_pressure"]  # a mix-up of the two would show
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


def test_sb3_rollout_figures_average_the_episodes_that_ended_in_that_rollout(tmp_path, monkeypatch):
    """Each copy's return is its rewards summed over the episode, unscaled; rollout/* average the
    rollout's own episodes (SB3's ep_info_buffer keeps a window of 100); lengths are decisions."""
    import agents.ppo.sb3_callback as sb3_callback

    ended: dict[int, list] = {}
    on_step, running = sb3_callback.TrainingCallback._on_step, {}

    def recorded(callback):  # the episodes as the env ends them, keyed by the rollout's last step
        rewards, dones, infos = callback.locals["rewards"], callback.locals["dones"], callback.locals["infos"]
        returns = running.setdefault("returns", np.zeros(len(rewards)))
        returns += rewards / callback.reward_scale  # the learner sees the scaled reward
        for row in np.flatnonzero(dones):
            step = -(-callback.num_timesteps // 40) * 40
            ended.setdefault(step, []).append((float(returns[row]), infos[row]["episode_metrics"]))
            returns[row] = 0.0
        return on_step(callback)

    monkeypatch.setattr(sb3_callback.TrainingCallback, "_on_step", recorded)
    # 2 copies x 20 decisions of 5 s: both copies' 100 s episodes end with each 40-agent-step rollout
    train(train_config(*tiny_run(**dict(SB3, env__copies=2, agent__n_steps=20), train__total_agent_steps=80,
                                 train__eval_every=0)), tmp_path)
    tb = _scalars(tmp_path / "tb")
    assert sorted(ended) == [40, 80] and all(len(episodes) == 2 for episodes in ended.values())
    for step, episodes in ended.items():
        assert tb["rollout/episodes"][step] == 2 and tb["rollout/ep_len_mean"][step] == 20.0
        assert _same(tb["rollout/ep_rew_mean"][step], float(np.mean([r for r, _ in episodes]))), step
        assert tb["rollout/ep_rew_mean"][step] < -1  # minus the halting vehicles, not scaled down
        for name in METRIC_NAMES:
            values = [m[name] for _, m in episodes if name in m]
            if values:
                assert _same(tb[f"rollout/{name}"][step], float(np.mean(values))), (step, name)
    first = [m["travel_time/mean"] for _, m in ended[40]]
    assert first[0] != first[1]  # two demands: a mean, not either copy's figure


def test_torchrl_episode_length_is_in_decisions(tmp_path):
    train_torchrl(torchrl_config(SMALL, train__eval_every=0), tmp_path)  # 50 s episodes of 5 s decisions
    lengths = _scalars(tmp_path / "tb")["rollout/ep_len_mean"]
    assert lengths and set(lengths.values()) == {10.0}
