"""The training budget counts decisions: an intersection with one signal phase (a SUMO scenario's
unsignalised junction) has nothing to decide, so train.total_agent_steps, the minibatches and the logged
agent-step counts are of the intersections that decide (agents.ppo.deciding). Before, every
intersection's step counted, so 1,000,000 agent-steps were 4 PPO updates on resco_cologne8 (8 of 66
decide) and one on resco_ingolstadt21 (21 of 343). The fixture: tests/sumo_fixtures.py's NET with
DETOUR (C decides; E and N have one phase each), as in tests/test_right_turn_junctions.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from agents.ppo.deciding import check_deciding, deciding_intersections
from envs.errors import ConfigError
from tests.sumo_fixtures import DETOUR, NET, write_tiny

RIGHT_TURN_NET = NET.replace("</net>\n", DETOUR.replace("SPEED", "10"))


def tiny_settings(folder, trainer: str) -> dict:
    return {"scenario.name": str(folder / "tiny.sumocfg"), "env.copies": 2, "agent.n_steps": 8,
            "agent.batch_size": 8, "agent.n_epochs": 1, "agent.net_arch": "[8,8]", "train.total_agent_steps": 48,
            "eval.seeds": 1, "eval.steps": 60, "train.progress": "false", "train.threads": 1,
            "train.device": "cpu", "trainer": trainer}


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_the_budget_counts_the_deciding_intersections_decisions(tmp_path, trainer, capsys):
    """48 agent-steps of 2 copies x 8 steps: 3 rollouts of C's 16 decisions (was one rollout of all 3
    intersections' 48 steps, two thirds of them E's and N's forced actions)."""
    from agents.ppo.sb3_trainer import train
    from agents.ppo.torchrl_policy import read_torchrl_checkpoint
    from agents.ppo.torchrl_trainer import train_torchrl
    from tests.test_torchrl_trainer import torchrl_config

    folder = write_tiny(tmp_path / "net", net=RIGHT_TURN_NET)
    result = (train if trainer == "sb3" else train_torchrl)(torchrl_config(tiny_settings(folder, trainer)),
                                                            tmp_path / "run")
    assert result["num_timesteps"] == 48
    if trainer == "sb3":
        assert result["model"].n_envs == 2  # SB3 learns from C's rows alone: (copy, C) pairs
        assert result["model"]._n_updates == 3
    else:
        checkpoint = read_torchrl_checkpoint(str(tmp_path / "run" / "checkpoints" / "last.pt"), torch.device("cpu"))
        assert checkpoint["meta"]["n_updates"] == 3
    out = capsys.readouterr().out
    assert ("2 of 3 intersections have a single signal phase (nothing to decide): train.total_agent_steps and the "
            "agent-step counts count the decisions of the 1 that decide (16 per rollout)") in out


def test_the_own_loss_reads_the_deciding_intersections_rows_alone():
    """TorchRL's own loss: what E's and N's rows hold (their advantages, value targets) changes nothing,
    neither the loss nor the advantage normalisation of C's rows."""
    from agents.ppo.torchrl_update import ACTION, ADVANTAGE, LOGP, MASK, OBS, TARGET, PPOUpdate

    torch.manual_seed(0)
    policy, value = torch.nn.Linear(3, 2), torch.nn.Linear(3, 1)
    agent = OmegaConf.create({"normalize_advantage": True, "clip_range": 0.2, "ent_coef": 0.01, "vf_coef": 0.5})
    update = PPOUpdate(agent, policy, value, None, [], 3, torch.device("cpu"), "own",
                       deciding=torch.tensor([True, False, False]))
    mask = torch.tensor([[True, True], [True, False], [True, False]]).expand(5, 3, 2)
    batch = {OBS: torch.randn(5, 3, 3), MASK: mask, ACTION: torch.zeros(5, 3, dtype=torch.long),
             LOGP: torch.randn(5, 3) * 0.1, ADVANTAGE: torch.randn(5, 3, 1), TARGET: torch.randn(5, 3, 1)}
    loss, stats = update._own_loss(batch)
    changed = {**batch, ADVANTAGE: batch[ADVANTAGE].clone(), TARGET: batch[TARGET].clone()}
    changed[ADVANTAGE][:, 1:] = 100.0
    changed[TARGET][:, 1:] = -50.0
    again, stats_again = update._own_loss(changed)
    assert torch.equal(loss, again) and torch.equal(stats, stats_again)
    # and C's rows alone make the figures: a network of C alone gives the same loss
    alone = PPOUpdate(agent, lambda x: policy(x), lambda x: value(x), None, [], 1, torch.device("cpu"), "own")
    loss_alone, _ = alone._own_loss({key: item[:, :1] for key, item in batch.items()})
    torch.testing.assert_close(loss, loss_alone)


def test_every_intersection_decides_on_a_network_of_lights():
    from envs.engine.intersections import intersection_layout
    from envs.scenario import load_scenario

    phases = intersection_layout(load_scenario("grid_4x4", horizon=60).network).action_phase
    assert bool(deciding_intersections(phases).all()) and check_deciding(phases, "grid_4x4") == 16


def test_a_network_where_none_decides_is_refused_naming_the_scenario():
    with pytest.raises(ConfigError, match=r"scenario\.name.*no intersection has two or more signal phases"):
        check_deciding(torch.tensor([[0, -1], [0, -1]]), "lonely")
    assert np.array_equal(deciding_intersections(torch.tensor([[0, 1], [0, -1]])).numpy(), [True, False])


def test_ep_rew_mean_is_the_return_of_the_intersections_that_decide():
    """TorchRL's rollout/ep_rew_mean, as SB3's from its rows of deciding intersections alone: C's return
    (1 per step), not the mean with E's and N's (10)."""
    from types import SimpleNamespace

    from agents.ppo.torchrl_logging import EpisodeStats
    from envs.evaluation.metrics import METRIC_NAMES

    core = SimpleNamespace(copies=1, num_intersections=3, device=torch.device("cpu"))
    episode = {**{name: torch.tensor([1.0]) for name in METRIC_NAMES}, "length_s": torch.tensor([10.0])}
    for deciding, expected in ((torch.tensor([True, False, False]), 2.0), (None, 14.0)):
        stats = EpisodeStats(core, 5, deciding)
        stats.observe(torch.tensor([[1.0, 10.0, 10.0]]), {})
        stats.observe(torch.tensor([[1.0, 10.0, 10.0]]), {"episode": episode, "_episode": torch.tensor([True])})
        assert stats.read()["rollout/ep_rew_mean"] == pytest.approx(expected)


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_the_training_throughput_benchmark_counts_decisions_as_train_py(tmp_path, trainer, monkeypatch):
    """benchmarks/train_throughput.py: one iteration of 2 copies x 8 steps is C's 16 decisions, in both
    trainers (its SB3 case built the env of all 3 intersections' 48 rows)."""
    from pathlib import Path
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as `python benchmarks/X.py`
    from train_throughput import run_sb3, run_torchrl
    from tests.test_torchrl_trainer import torchrl_config

    folder = write_tiny(tmp_path / "net", net=RIGHT_TURN_NET)
    args = SimpleNamespace(warmup=0, iterations=1, agent_steps=None, seconds=None, override=[])
    record = (run_sb3 if trainer == "sb3" else run_torchrl)(torchrl_config(tiny_settings(folder, trainer)), args)
    assert (record["agent_steps"], record["intersections"]) == (16, 3)


def test_the_deciding_rows_answer_sb3s_calls_per_row_and_refuse_what_the_wrapped_env_refuses(tmp_path):
    """DecidingRows' env_method / get_attr / set_attr speak of its own rows (C's, one per copy): `indices`
    are those rows, one answer each, and a call the wrapped env refuses on some rows (they all share one
    core) is refused, not run on every row. Before, env_method("reset", indices=[0]) reset every copy and
    answered 2 rows, get_attr("action_masks") handed out the wrapped env's masks of all 6 rows, and
    set_attr(..., indices=[0, 1]) (every row of the wrapper) was refused as some of the wrapped rows."""
    from agents.ppo.deciding import DecidingRows
    from envs.errors import CommandError
    from envs.rl.sb3_env import IntersectionVecEnv

    folder = write_tiny(tmp_path / "net", net=RIGHT_TURN_NET)
    venv = IntersectionVecEnv(copies=2, scenario=str(folder / "tiny.sumocfg"), episode_s=60)
    rows = DecidingRows(venv, deciding_intersections(venv.core.layout.action_phase).numpy())
    rows.reset()
    assert rows.num_envs == 2
    assert rows.get_attr("action_masks")[0]().shape == rows.action_masks().shape == (2, venv.action_space.n)
    assert len(rows.get_attr("num_intersections", indices=[1])) == 1
    assert len(rows.env_method("action_masks", indices=[1])) == 1
    with pytest.raises(CommandError, match="indices"):
        rows.env_method("reset", indices=[0])
    with pytest.raises(CommandError, match="indices"):
        rows.get_attr("num_intersections", indices=[2])  # past the wrapper's 2 rows
    rows.set_attr("render_mode", None, indices=[0, 1])  # every row of the wrapper: allowed
    assert len(rows.env_method("describe")) == 2


def test_torchrls_explained_variance_is_of_the_deciding_intersections_rows():
    """train/explained_variance, as SB3's from its rows of deciding intersections alone: the value the
    loss never fits at E and N (their targets, here 100x C's) changes nothing. It read every row."""
    from tensordict import TensorDict

    from agents.ppo.torchrl_update import OBS, PPOUpdate
    from envs.rl.torchrl_env import GROUP

    torch.manual_seed(0)
    value = torch.nn.Linear(3, 1)
    agent = OmegaConf.create({"gamma": 0.9, "gae_lambda": 0.95, "reward_scale": 1.0, "learning_rate": 0.0,
                              "clip_range": 0.2})
    obs, reward = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 1)
    figures = []
    for scale in (1.0, 100.0):
        rewards = reward.clone()
        rewards[:, :, 1:] *= scale
        zeros = torch.zeros(2, 4, 3, 1, dtype=torch.bool)
        data = TensorDict({OBS: obs, ("next", *OBS): obs.roll(-1, 1), ("next", GROUP, "reward"): rewards,
                           ("next", GROUP, "done"): zeros, ("next", GROUP, "terminated"): zeros}, batch_size=[2, 4])
        update = PPOUpdate(agent, None, value, None, [], 3, torch.device("cpu"), "own",
                           deciding=torch.tensor([True, False, False]))
        update.advantages(data)
        figures.append(update.statistics(1)["train/explained_variance"])
    assert figures[0] == pytest.approx(figures[1])
