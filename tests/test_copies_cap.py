"""``train.max_agents_per_step`` (agents.ppo.run_setup.cap_copies): where env.copies copies of a network
would step more deciding intersections together than the cap, training runs fewer copies, and every
reader of ``env.copies`` sees them. ``train=fast`` caps at 2048: grid_16x8's 128 intersections get 16
copies (64 made rollouts of 524,288 agent-steps: 6 PPO rollouts in 3 M agent-steps), while networks of
32 or fewer deciding intersections keep the preset's 64 copies."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from agents.ppo.config import check_config
from agents.ppo.run_setup import load_scenarios
from envs.errors import ConfigError
from tests.sumo_fixtures import DETOUR, NET, write_tiny
from tests.test_deciding_agents import tiny_settings
from tests.test_torchrl_trainer import torchrl_config

RIGHT_TURN_NET = NET.replace("</net>\n", DETOUR.replace("SPEED", "10"))


def composed(scenario: str, *overrides: str):
    settings = dict(item.split("=", 1) for item in overrides)
    return torchrl_config({"scenario": scenario, **settings})


def test_train_fast_gives_grid_16x8_sixteen_copies_and_says_so(capsys):
    cfg = composed("grid_16x8", "train=fast")
    load_scenarios(cfg)
    assert cfg.env.copies == 16
    assert ("train.max_agents_per_step=2048: 16 copies of grid_16x8 (128 deciding intersections, 2,048 agents a "
            "step) instead of env.copies=64 (8,192)") in capsys.readouterr().out


@pytest.mark.parametrize("overrides, copies", [
    (("train=fast",), 64),  # grid_4x4: 64 x 16 = 1024, under the cap
    (("train=fast", "train.max_agents_per_step=null", "scenario=grid_16x8"), 64),  # no cap
    (("train=fast", "train.max_agents_per_step=100", "scenario=grid_16x8"), 1),  # at least one copy
    (("env.copies=16", "scenario=grid_16x8"), 16),  # the default config: no cap
])
def test_the_cap_leaves_copies_alone_where_it_is_not_passed_and_keeps_one(overrides, copies, capsys):
    cfg = composed("grid_4x4", *overrides)
    load_scenarios(cfg)
    assert cfg.env.copies == copies
    assert ("max_agents_per_step" in capsys.readouterr().out) == (copies == 1)


@pytest.mark.parametrize("value", [0, -3])
def test_a_cap_below_one_is_refused_naming_the_key(value):
    with pytest.raises(ConfigError, match="must be > 0 or null") as error:
        check_config(composed("grid_4x4", f"train.max_agents_per_step={value}"))
    assert (error.value.field, error.value.value) == ("train.max_agents_per_step", value)


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_the_trainers_run_the_capped_copies_and_count_only_deciding_intersections(tmp_path, trainer):
    """The tiny SUMO network: one of its three intersections decides, so a cap of 3 agents a step leaves
    3 of 4 copies (counting every intersection would have left one); the run trains 3 copies' decisions."""
    from agents.ppo.sb3_trainer import train
    from agents.ppo.torchrl_policy import read_torchrl_checkpoint
    from agents.ppo.torchrl_trainer import train_torchrl

    folder = write_tiny(tmp_path / "net", net=RIGHT_TURN_NET)
    settings = {**tiny_settings(folder, trainer), "env.copies": 4, "train.max_agents_per_step": 3,
                "agent.batch_size": 6, "train.total_agent_steps": 48}
    cfg = torchrl_config(settings)
    record = tmp_path / "run" / ".hydra" / "config.yaml"  # as train.py writes it before the trainer starts
    record.parent.mkdir(parents=True)
    record.write_text(OmegaConf.to_yaml(cfg))
    result = (train if trainer == "sb3" else train_torchrl)(cfg, tmp_path / "run")
    assert cfg.env.copies == 3
    assert OmegaConf.load(record).env.copies == 3  # the run's record holds the copies that ran (it said 4)
    assert result["num_timesteps"] == 48  # two rollouts of 3 copies x 8 steps x 1 deciding intersection
    if trainer == "sb3":
        assert result["model"].n_envs == 3  # (copy, deciding intersection) rows
    else:
        meta = read_torchrl_checkpoint(str(tmp_path / "run" / "checkpoints" / "last.pt"), torch.device("cpu"))["meta"]
        assert meta["n_updates"] == 2
