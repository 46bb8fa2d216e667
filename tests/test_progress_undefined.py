"""A figure that is undefined (a mean over no finished trip: ``travel_time/finished_mean`` of a short
episode) is absent from the run's log, with either trainer: an empty ``progress.csv`` cell (as
evaluate.py's metrics.csv writes it) and no TensorBoard point, where both wrote ``nan``; and a
training rollout's mean over its episodes skips the episodes where it is undefined (one such episode
made the whole rollout's figure NaN)."""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agents.ppo.sb3_trainer import train
from agents.ppo.torchrl_logging import EpisodeStats
from agents.ppo.torchrl_trainer import train_torchrl
from envs.evaluation.metrics import METRIC_NAMES
from tests.tensorboard_points import scalar_events
from tests.test_torchrl_trainer import torchrl_config
from tests.test_train import tiny_run, train_config

# grid_1x1, 60 s episodes and evaluations: trips depart, none finishes (a trip takes ~28 s from an
# entry that waits), so travel_time/finished_mean is undefined in the rollouts, the evaluations and
# the baselines
SHORT = dict(env__copies=2, agent__n_steps=12, agent__batch_size=24, agent__n_epochs=1, eval__seeds=1,
             eval__steps=60, env__episode_s=60, train__total_agent_steps=48, train__eval_every=24)
UNDEFINED = ["rollout/travel_time/finished_mean", "eval/travel_time/finished_mean",
             "baseline/fixed_time/travel_time/finished_mean"]


@pytest.mark.parametrize("trainer", ["sb3", "torchrl"])
def test_an_undefined_figure_is_an_empty_cell_and_no_tensorboard_point(tmp_path, trainer):
    overrides = tiny_run(**SHORT)
    if trainer == "sb3":
        train(train_config(*overrides), tmp_path)
    else:
        train_torchrl(torchrl_config(dict(item.split("=", 1) for item in overrides)), tmp_path)
    text = (tmp_path / "progress.csv").read_text()
    assert "nan" not in text.lower(), text
    rows = list(csv.DictReader(text.splitlines()))
    tags = {tag: {e.step: e.value for e in events} for tag, events in scalar_events(tmp_path / "tb").items()}
    for name in UNDEFINED:
        assert all(row.get(name, "") == "" for row in rows), name
        assert name not in tags, name
    # the evaluations' figures are recorded at every evaluation: the column is kept, its cells empty
    assert "eval/travel_time/finished_mean" in rows[0]
    # a defined figure beside it is written in both, at the same steps
    defined = [row for row in rows if row["rollout/travel_time/mean"] != ""]
    assert defined
    for row in defined:
        step = int(row["time/total_timesteps"])
        assert tags["rollout/travel_time/mean"][step] == pytest.approx(float(row["rollout/travel_time/mean"]))


def test_sb3_rollout_means_skip_the_episodes_where_a_figure_is_undefined():
    from agents.ppo.sb3_callback import episode_means

    metrics = {name: 1.0 for name in METRIC_NAMES}
    episodes = [{**metrics, "travel_time/finished_mean": math.nan}, {**metrics, "travel_time/finished_mean": 30.0},
                {**metrics, "travel_time/finished_mean": 40.0}]
    means = episode_means(episodes)
    assert means["travel_time/finished_mean"] == 35.0 and means["travel_time/mean"] == 1.0
    assert "travel_time/finished_mean" not in episode_means(episodes[:1])  # defined in none: absent


def test_torchrl_rollout_means_skip_the_episodes_where_a_figure_is_undefined():
    core = SimpleNamespace(copies=3, num_intersections=2, device=torch.device("cpu"))
    stats = EpisodeStats(core, interval_s=5)
    episode = {name: torch.ones(3) for name in METRIC_NAMES}
    episode["travel_time/finished_mean"] = torch.tensor([math.nan, 30.0, 50.0])
    episode["length_s"] = torch.full((3,), 60.0)
    # copies 0 and 1 end (copy 2, still running, holds a figure that must not count)
    stats.observe(torch.ones(3, 2), {"episode": episode, "_episode": torch.tensor([True, True, False])})
    read = stats.read()
    assert read["rollout/travel_time/finished_mean"] == 30.0 and read["rollout/travel_time/mean"] == 1.0
    assert read["rollout/episodes"] == 2 and read["rollout/ep_len_mean"] == 12.0
    stats.observe(torch.ones(3, 2), {"episode": episode, "_episode": torch.tensor([True, False, False])})
    assert "rollout/travel_time/finished_mean" not in stats.read()  # defined in no episode: absent


@pytest.mark.parametrize("nan", [np.float32("nan"), np.float64("nan"), math.nan], ids=["float32", "float64", "float"])
def test_a_numpy_nan_is_an_empty_cell_and_no_tensorboard_point(tmp_path, nan):
    """SB3 records ``train/approx_kl`` as np.float32 (the mean of its 0-d float32 arrays), no Python float:
    a diverged update's NaN there was written as 'nan' and sent to TensorBoard."""
    from agents.ppo.sb3_logging import AtomicCSVOutput, PurgingTensorBoardOutput

    values, excluded = {"train/approx_kl": nan, "train/loss": np.float32(0.5)}, {"train/approx_kl": None,
                                                                                 "train/loss": None}
    AtomicCSVOutput(tmp_path / "progress.csv").write(values, excluded, step=8)
    board = PurgingTensorBoardOutput(str(tmp_path / "tb"))
    board.write(values, excluded, step=8)
    board.close()
    rows = list(csv.DictReader((tmp_path / "progress.csv").read_text().splitlines()))
    assert rows == [{"train/approx_kl": "", "train/loss": "0.5"}]
    tags = scalar_events(tmp_path / "tb")
    assert "train/approx_kl" not in tags and [e.value for e in tags["train/loss"]] == [0.5]
