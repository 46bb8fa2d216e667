"""The env's arguments and conventions: bad arguments are ConfigErrors naming the field (never a
TypeError from deep inside, never a silent run elsewhere), a Scenario object's device is the
env's, action -1 keeps the phase in every mode, and the single-agent adapters leave
``info["episode"]`` to the standard wrappers."""

from __future__ import annotations

import gymnasium
import pytest
import torch

import envs  # noqa: F401  (registers the Gymnasium ids)
from envs.engine.intersections import current_action
from envs.errors import ConfigError
from envs.rl.signal_env import BatchedSignalEnv
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import grid_roadnet, uniform_demand
from tests.scenarios import small_grid


@pytest.mark.parametrize("kwargs, field", [
    ({"reward": 5}, "reward"), ({"reward": 1.0}, "reward"),
    ({"observations": None}, "observations"), ({"observations": 5}, "observations"),
    ({"observations": "lane_count"}, "observations"),
    ({"engine": {"max_vehicles": 2.5}}, "max_vehicles"), ({"engine": {"max_vehicles": "many"}}, "max_vehicles"),
    ({"engine": {"halting_speed": "0.1"}}, "halting_speed"), ({"engine": {"yield_gap_s": "2"}}, "yield_gap_s"),
    ({"autoreset": "false"}, "autoreset"),
])
def test_bad_env_arguments_are_config_errors_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError) as error:
        BatchedSignalEnv("grid_1x1", **kwargs)
    assert error.value.field == field


def test_reward_lists_and_mappings_of_any_kind_are_read():
    from omegaconf import OmegaConf

    from envs.rl.env_config import check_reward_weights

    assert check_reward_weights(OmegaConf.create({"queue": 1.0, "delay": 0.5})) == {"queue": 1.0, "delay": 0.5}
    assert check_reward_weights(OmegaConf.create(["queue", "delay"])) == {"queue": 1.0, "delay": 1.0}
    assert BatchedSignalEnv("grid_1x1", observations=OmegaConf.create(["lane_count"])).obs_size > 0


def test_a_reset_seed_must_be_a_whole_number_not_a_bool():
    env = BatchedSignalEnv("grid_1x1")
    with pytest.raises(ConfigError) as error:
        env.reset(seed=True)
    assert error.value.field == "seed"


def test_a_negative_reset_seed_is_refused_naming_the_seed():
    # sample indices start at the seed: a negative one names no sample of a split, and is refused
    # as such even where the demand draws no sample (original mode replays the flow file)
    for mode in ("original", "poisson"):
        with pytest.raises(ConfigError) as error:
            BatchedSignalEnv("grid_1x1", demand={"mode": mode}).reset(seed=-1)
        assert (error.value.field, error.value.value) == ("seed", -1)


def test_a_scenario_object_brings_its_device_and_refuses_loading_options_beside_it():
    scenario = small_grid(1, 1)  # loaded on the CPU
    assert BatchedSignalEnv(scenario).device.type == "cpu"
    assert BatchedSignalEnv(scenario, device="cpu").device.type == "cpu"
    other = "cuda" if not torch.cuda.is_available() else "meta"  # no CUDA here: refused as such; else a mismatch
    for kwargs, field in (({"device": other}, "device"), ({"device": "banana"}, "device"),
                          ({"data_dir": "/nonexistent"}, "data_dir"), ({"scenario_seed": 7}, "scenario_seed")):
        with pytest.raises(ConfigError) as error:
            BatchedSignalEnv(scenario, **kwargs)
        assert error.value.field == field, kwargs


def _with_transition_phase():
    """A 1x1 grid whose program starts with an all-right-turn phase, as CityFlow's datasets do."""
    roadnet = grid_roadnet(1, 1, road_length=150.0)
    inter = next(x for x in roadnet["intersections"] if not x["virtual"])
    rights = [k for k, link in enumerate(inter["roadLinks"]) if link["type"] == "turn_right"]
    inter["trafficLight"]["lightphases"].insert(0, {"time": 5, "availableRoadLinks": rights})
    flow = uniform_demand(roadnet, rate_per_origin=600.0, horizon=300, seed=0)
    return scenario_from_dicts(roadnet, flow, name="transition_first")


@pytest.mark.parametrize("mode", ["phase", "keep_or_switch", "phase_duration"])
def test_action_minus_one_keeps_even_the_transition_phase_in_every_mode(mode):
    env = BatchedSignalEnv(_with_transition_phase(), action_mode=mode, episode_s=60)
    env.reset(seed=0)
    assert current_action(env.layout, env.sim.state).tolist() == [[-1]]  # the transition phase
    env.step(torch.full((1, 1), -1))
    assert env.sim.state.phase.tolist() == [[0]]
    if mode == "keep_or_switch":  # KEEP (0) at the transition phase starts the first signal phase
        env.step(torch.zeros(1, 1, dtype=torch.int64))
        assert env.sim.state.phase.tolist() == [[1]]


def test_single_and_pettingzoo_envs_run_inside_the_standard_episode_statistics_wrappers():
    from gymnasium.wrappers import RecordEpisodeStatistics

    from envs.rl.pettingzoo_env import TrafficSignalParallelEnv

    env = RecordEpisodeStatistics(gymnasium.make("gridlight/TrafficSignal-v0", scenario="grid_1x1", episode_s=20))
    env.reset(seed=0)
    done = False
    while not done:
        *_, terminated, truncated, info = env.step(env.action_space.sample())
        done = terminated or truncated
    assert {"episode", "episode_metrics"} <= set(info) and info["episode"]["l"] == 4  # the wrapper's, and ours
    assert info["episode_metrics"]["length_s"] == 20.0
    parallel = TrafficSignalParallelEnv(scenario="grid_1x1", episode_s=10)
    parallel.reset(seed=0)
    for _ in range(2):
        *_, infos = parallel.step({agent: 0 for agent in parallel.agents})
    assert all("episode" not in info and info["episode_metrics"]["length_s"] == 10.0 for info in infos.values())
