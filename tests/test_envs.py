"""The RL adapters against their checkers, autoreset conventions, masks and timing rules."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pettingzoo.test import parallel_api_test
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from agents.ppo.sb3_logging import silent_logger
from envs.engine.signals import signal_state
from envs.errors import CommandError, ConfigError
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import grid_roadnet, uniform_demand
from envs.rl.signal_env import BatchedSignalEnv
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import small_grid, uneven_grid

ALL_FEATURES = [
    "phase_onehot", "time_in_phase", "lane_count", "lane_halting", "segment_counts", "pressure",
    "intersection_id",
]


# ---- checkers --------------------------------------------------------------------------------


def test_gymnasium_and_sb3_checkers_pass_on_the_single_env_of_a_generated_grid():
    env = gymnasium.make(envs.ENV_ID, scenario="grid_4x4", episode_s=60, observations=ALL_FEATURES)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16 * env.unwrapped.core.obs_size,)


def test_pettingzoo_parallel_api_test_passes_on_a_generated_grid():
    env = envs.parallel_env(scenario="grid_4x4", episode_s=100, observations=ALL_FEATURES)
    parallel_api_test(env, num_cycles=30)
    assert env.possible_agents == list(env.core.network.intersection_ids)
    assert env.state().shape == env.state_space.shape


@pytest.mark.datasets
def test_checkers_pass_on_hangzhou(datasets_dir):
    kwargs = dict(scenario="hangzhou_4x4", episode_s=60, data_dir=str(datasets_dir))
    env = gymnasium.make(envs.ENV_ID, **kwargs)
    gym_check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)
    parallel_api_test(envs.parallel_env(**kwargs), num_cycles=10)
    assert env.unwrapped.core.num_intersections == 16


@pytest.mark.datasets
def test_checkers_pass_on_jinan_with_every_feature(datasets_dir):
    kwargs = dict(scenario="jinan_3x4", episode_s=30, data_dir=str(datasets_dir),
                  observations=ALL_FEATURES, reward={"queue": 1, "delay": 0.1})
    gym_check_env(gymnasium.make(envs.ENV_ID, **kwargs).unwrapped)
    parallel_api_test(envs.parallel_env(**kwargs), num_cycles=5)


# ---- vector env and autoreset ----------------------------------------------------------------


def test_make_vec_builds_the_batched_env_and_keeps_terminated_apart_from_truncated():
    venv = gymnasium.make_vec(
        envs.ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", scenario="grid_4x4",
        episode_s=50, decision_interval_s=10,
    )
    assert venv.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP
    obs, info = venv.reset(seed=0)
    assert obs.shape == (3, 16, venv.unwrapped.core.obs_size)
    assert venv.observation_space.contains(obs)
    for k in range(5):
        obs, reward, terminated, truncated, info = venv.step(venv.action_space.sample())
        assert reward.shape == (3,) and np.allclose(reward, info["agent_rewards"].sum(1))
        assert not terminated.any()  # the grid's demand runs past 50 s: a time limit, not an end
    assert truncated.all() and info["_final_obs"].all()
    assert all(final.shape == obs.shape[1:] for final in info["final_obs"])
    assert info["final_info"]["episode"]["travel_time/mean"].shape == (3,)
    # same-step autoreset: the returned observation is the new episode's first
    assert (venv.unwrapped.core.sim.state.t == 0).all()
    obs, *_ = venv.step(venv.action_space.sample())
    assert (venv.unwrapped.core.sim.state.t == 10).all()


def test_the_observation_returned_by_an_autoreset_step_is_the_new_episodes_first():
    env = BatchedSignalEnv(small_grid(2, 2, rate=900.0), 2, episode_s=20, decision_interval_s=5)
    env.reset(seed=0)
    for _ in range(4):
        obs, _, _, truncated, info = env.step(torch.zeros(2, 4, dtype=torch.int64))
    assert truncated.all() and (info["t"] == 0).all()
    # the last observation of the finished episode is only in final_obs (it has queues and time
    # in phase; the new episode starts empty at time 0), what is returned is the new episode's
    assert not torch.equal(info["final_obs"], obs)
    assert torch.equal(obs, env.observe())


def test_a_copy_whose_demand_is_exhausted_terminates_and_resets_alone():
    roadnet = grid_roadnet(1, 1, road_length=100.0)
    flow = uniform_demand(roadnet, rate_per_origin=300.0, horizon=20, seed=0)
    scenario = scenario_from_dicts(roadnet, flow, name="short_demand")
    env = BatchedSignalEnv(scenario, 2, episode_s=600, decision_interval_s=10)
    env.reset(seed=0)
    ended = None
    for k in range(60):
        obs, reward, terminated, truncated, info = env.step(torch.zeros(2, 1, dtype=torch.int64) + (k // 3) % 4)
        if terminated.any():
            ended = (k, terminated.clone(), truncated.clone(), info)
            break
    assert ended is not None, "the last vehicle should leave within 600 s"
    k, terminated, truncated, info = ended
    assert terminated.all() and not truncated.any()  # identical copies drain together
    assert info["episode"]["throughput"].tolist() == [float(scenario.trips.num_trips)] * 2
    assert (env.sim.state.t == 0).all()


def test_sb3_vec_env_sets_terminal_observation_and_time_limit_flags():
    venv = envs.sb3_vec_env(scenario="grid_4x4", copies=2, episode_s=30, decision_interval_s=10)
    assert venv.num_envs == 2 * 16
    obs = venv.reset()
    assert obs.shape == (32, venv.core.obs_size)
    for k in range(3):
        obs, rewards, dones, infos = venv.step(np.zeros(32, dtype=np.int64))
    assert dones.all() and rewards.shape == (32,)
    assert all("terminal_observation" in info and info["TimeLimit.truncated"] for info in infos)
    assert infos[0]["terminal_observation"].shape == obs[0].shape
    assert "travel_time/mean" in infos[5]["episode_metrics"]


def test_sb3_ppo_trains_a_few_steps_on_the_intersection_vec_env(tmp_path, monkeypatch):
    import tempfile

    from stable_baselines3 import PPO

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where SB3's default logger makes a folder
    venv = envs.sb3_vec_env(scenario="grid_4x4", copies=1, episode_s=100, decision_interval_s=10,
                            observations=["phase_onehot", "lane_count", "intersection_id"])
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.set_logger(silent_logger())
    model.learn(total_timesteps=16 * 16)
    assert model.num_timesteps >= 16 * 16
    assert list(tmp_path.glob("SB3-*")) == []  # the silent logger leaves no SB3-<date-time> folder behind


# ---- action masks ----------------------------------------------------------------------------


def test_heterogeneous_intersections_are_padded_and_masked_everywhere():
    scenario = uneven_grid()
    core = BatchedSignalEnv(scenario, 2, episode_s=100)
    assert core.layout.num_actions.tolist() == [3, 4, 4, 4]
    assert core.action_mask[:, 0].tolist() == [[True, True, True, False]] * 2
    venv = envs.sb3_vec_env(scenario=scenario, copies=2, episode_s=100)
    masks = venv.action_masks()
    assert masks.shape == (8, 4) and not masks[0, 3] and not masks[4, 3] and masks[1].all()
    assert [m.tolist() for m in venv.env_method("action_masks")][:2] == masks[:2].tolist()
    pz = envs.parallel_env(scenario=scenario, episode_s=100)
    first = pz.possible_agents[0]
    assert pz.action_space(first).n == 3 and pz.action_space(pz.possible_agents[1]).n == 4
    _, infos = pz.reset(seed=0)
    assert infos[first]["action_mask"].tolist() == [True, True, True, False]
    single = gymnasium.make(envs.ENV_ID, scenario=scenario, episode_s=100)
    assert single.action_space.nvec.tolist() == [3, 4, 4, 4]
    assert single.unwrapped.action_masks().shape == (4, 4)


def test_a_masked_action_keeps_the_phase_in_the_sb3_adapter_and_is_an_error_in_the_core():
    scenario = uneven_grid()
    venv = envs.sb3_vec_env(scenario=scenario, copies=1, episode_s=100)
    venv.reset()
    venv.step(np.array([1, 1, 1, 1]))
    before = venv.core.sim.state.phase[0, 0].item()
    venv.step(np.array([3, 1, 1, 1]))  # action 3 does not exist at intersection 0
    assert venv.core.sim.state.phase[0, 0].item() == before
    with pytest.raises(CommandError, match=r"actions\[0, 0\]"):
        venv.core.step(torch.tensor([[3, 0, 0, 0]]))


def test_maskable_ppo_never_picks_a_masked_action():
    from sb3_contrib import MaskablePPO

    venv = envs.sb3_vec_env(scenario=uneven_grid(), copies=1, episode_s=100)
    model = MaskablePPO("MlpPolicy", venv, n_steps=8, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.set_logger(silent_logger())
    model.learn(total_timesteps=64)
    obs = venv.reset()
    for _ in range(5):
        actions, _ = model.predict(obs, action_masks=venv.action_masks())
        assert actions[0] < 3
        obs, *_ = venv.step(actions)


# ---- registries ------------------------------------------------------------------------------


def _stepped_env(features=ALL_FEATURES, normalise=True, steps=12, reward="queue"):
    env = BatchedSignalEnv(small_grid(2, 2, rate=900.0), 2, episode_s=600, decision_interval_s=5,
                           observations=features, normalise=normalise, reward=reward)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        env.step(torch.randint(0, 4, (2, 4), generator=gen))
    return env


def test_every_feature_stays_inside_the_declared_bounds_normalised_and_raw():
    for normalise in (True, False):
        env = _stepped_env(normalise=normalise)
        obs = env.observe()
        assert torch.all(obs >= env.obs_low) and torch.all(obs <= env.obs_high)
        assert torch.isfinite(env.obs_high).all()


def test_normalisation_divides_by_the_documented_scales():
    raw = _stepped_env(["lane_count", "time_in_phase", "pressure"], normalise=False)
    norm = _stepped_env(["lane_count", "time_in_phase", "pressure"], normalise=True)
    lanes = raw.layout.max_in_lanes
    storage = raw.feature_base.lane_storage[raw.layout.in_lanes.clamp(min=0)]
    a, b = raw.observe(), norm.observe()
    torch.testing.assert_close(b[..., :lanes], a[..., :lanes] / storage)
    torch.testing.assert_close(b[..., lanes], a[..., lanes] / 120.0)
    torch.testing.assert_close(b[..., lanes + 1:], a[..., lanes + 1:] / 20.0)


def test_lane_features_match_a_direct_count_of_the_vehicles():
    env = _stepped_env(["lane_count", "lane_halting", "segment_counts"], normalise=False)
    state, net = env.sim.state, env.network
    lanes = env.layout.max_in_lanes
    obs = env.observe()
    for b in range(2):
        for i in range(4):
            for j, lane in enumerate(env.layout.in_lanes[i].tolist()):
                on = state.veh_lane[b, :-1] == lane
                assert obs[b, i, j] == on.sum()
                assert obs[b, i, lanes + j] == (on & (state.veh_speed[b, :-1] < 0.1)).sum()
                to_stop = net.lane_length[lane] - state.veh_pos[b, :-1]
                segments = obs[b, i, 2 * lanes + 3 * j: 2 * lanes + 3 * j + 3]
                for s in range(3):
                    inside = on & (to_stop.clamp(min=0) >= 50 * s) & (to_stop.clamp(min=0) < 50 * (s + 1))
                    assert segments[s] == inside.sum()
    assert obs[..., lanes:2 * lanes].sum() > 0  # the check above saw queues


def test_phase_onehot_and_pressure_agree_with_the_engine_and_max_pressure():
    from agents.classical import MaxPressure

    env = _stepped_env(["phase_onehot", "pressure"], normalise=False)
    obs = env.observe()
    phase = env.sim.state.phase
    chosen = env.layout.action_phase[torch.arange(4), obs[..., :4].argmax(-1)]
    assert torch.equal(chosen, phase)
    expected = MaxPressure().phase_pressure(env.sim)  # [B, I, P]
    torch.testing.assert_close(obs[..., 4:],
                               torch.gather(expected, 2, env.layout.action_phase.clamp(min=0).expand(2, -1, -1)))


def test_unknown_feature_reward_or_bad_timing_raise_named_errors():
    with pytest.raises(ConfigError, match="observations.*no_such"):
        BatchedSignalEnv("grid_4x4", observations=["lane_count", "no_such"])
    with pytest.raises(ConfigError, match="reward.*speed"):
        BatchedSignalEnv("grid_4x4", reward={"speed": 1.0})
    with pytest.raises(ConfigError, match="reward.*queue.*twice"):
        BatchedSignalEnv("grid_4x4", reward=["queue", "queue"])
    with pytest.raises(ConfigError, match="reward.delay.*inf"):
        BatchedSignalEnv("grid_4x4", reward={"delay": float("inf")})
    with pytest.raises(ConfigError, match="episode_s.*1000"):
        BatchedSignalEnv("grid_4x4", episode_s=1000, decision_interval_s=15)
    with pytest.raises(ConfigError, match="copies.*0"):
        BatchedSignalEnv("grid_4x4", copies=0)
    with pytest.raises(ConfigError, match="engine.yelow_s"):
        BatchedSignalEnv("grid_4x4", engine={"yelow_s": 3})


def test_adapters_name_bad_arguments_and_calls_they_cannot_take():
    with pytest.raises(ConfigError, match="episodes.*unknown keyword"):
        envs.parallel_env(scenario="grid_4x4", episodes=5)
    with pytest.raises(ConfigError, match="copies.*one copy"):
        gymnasium.make(envs.ENV_ID, scenario="grid_4x4", copies=2)
    with pytest.raises(ConfigError, match="render_mode.*human"):
        envs.sb3_vec_env(scenario="grid_4x4", render_mode="human")
    pz = envs.parallel_env(scenario="grid_1x1", episode_s=20)
    with pytest.raises(CommandError, match=r"call reset\(\) first") as refused:
        pz.step({})
    assert_names_everything(refused.value, "<env:pettingzoo>", "agents", [])
    pz.reset()
    with pytest.raises(CommandError, match="no action"):
        pz.step({})
    venv = envs.sb3_vec_env(scenario="grid_1x1", episode_s=20)
    venv.reset()
    with pytest.raises(CommandError, match=r"call step_async\(actions\) before step_wait\(\)") as refused:
        venv.step_wait()
    assert_names_everything(refused.value, "<env:sb3>", "actions", None)
    with pytest.raises(CommandError, match="whole numbers"):
        venv.step(np.full(venv.num_envs, 0.5))
    with pytest.raises(CommandError, match=r"actions.shape"):
        venv.step(np.zeros(venv.num_envs + 1, dtype=np.int64))

# ---- timing rules ----------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(st.lists(st.integers(-1, 3), min_size=4, max_size=4), min_size=40, max_size=80),
    min_green=st.integers(1, 8), yellow=st.integers(0, 4), all_red=st.integers(0, 3),
)
def test_no_action_sequence_skips_a_yellow_or_cuts_a_min_green(actions, min_green, yellow, all_red):
    """Decide every second with arbitrary actions; watch each movement's light.

    Every green run that ends lasts at least min_green_s (runs that began at reset excepted:
    the initial phase counts as long established), is followed by yellow_s seconds of yellow,
    and no conflicting movement gets green until yellow_s + all_red_s seconds after it ended."""
    env = BatchedSignalEnv(
        small_grid(2, 2, rate=600.0), 1, episode_s=600, decision_interval_s=1,
        engine={"min_green_s": min_green, "yellow_s": yellow, "all_red_s": all_red},
    )
    env.reset(seed=0)
    net = env.network
    history_green, history_yellow = [], []
    for row in actions:
        env.step(torch.tensor([row]))
        s = env.sim.state
        green, yellow_now = signal_state(net, env.params, s.phase, s.prev_phase, s.phase_timer - 1)
        history_green.append(green[0].reshape(4, -1))
        history_yellow.append(yellow_now[0].reshape(4, -1))
    green = torch.stack(history_green)  # [T, I, K]
    amber = torch.stack(history_yellow)
    steps = green.shape[0]
    for i in range(4):
        for k in range(green.shape[2]):
            if not bool(net.movement_valid[i * green.shape[2] + k]):
                continue
            run_start = 0 if green[0, i, k] else None
            for t in range(1, steps):
                if green[t, i, k] and not green[t - 1, i, k]:
                    run_start = t
                if green[t - 1, i, k] and not green[t, i, k]:
                    if run_start is not None and run_start > 0:
                        assert t - run_start >= min_green, (i, k, run_start, t)
                    window = amber[t : t + yellow, i, k]
                    assert bool(window.all()), ("yellow skipped", i, k, t)
                    clear = green[t : t + yellow + all_red, i]
                    assert not bool((clear & net.conflict[i, k]).any()), ("no clearance", i, k, t)
                    run_start = None


# ---- resampled demand per episode ------------------------------------------------------------


def test_each_episode_draws_new_train_demand_and_bigger_samples_grow_the_tables():
    from dataclasses import replace

    from envs.scenario.splits import sample_trips
    from tests.engine_checks import check_conservation, check_lanes

    env = BatchedSignalEnv(small_grid(2, 2, rate=900.0, horizon=200), 2, episode_s=40,
                           decision_interval_s=10, demand={"mode": "poisson"})
    env.reset(seed=0)
    first = [t.num_trips for t in env.trips]
    expected = [sample_trips(env.scenario, env.demand_spec, "train", k).num_trips for k in (0, 1)]
    assert first == expected and first[0] != first[1]  # copies run different train samples
    trips_before = env.sim.demand.max_trips
    env.demand_spec = replace(env.demand_spec, scale=3.0)  # next samples hold ~3x the trips
    for k in range(12):
        env.step(torch.ones(2, 4, dtype=torch.int64) * (k % 4))
        check_conservation(env.sim.demand, env.sim.state)
        check_lanes(env.network, env.sim.state)
    assert env.sim.demand.max_trips > trips_before  # grown when a bigger sample arrived
    assert [t.num_trips for t in env.trips] == [
        sample_trips(env.scenario, env.demand_spec, "train", k).num_trips for k in (6, 7)
    ]  # samples 2..7 went to three episodes of two copies
    grown = env.sim.demand.max_trips
    env.demand_spec = replace(env.demand_spec, scale=1.0)  # smaller samples: the tables stay
    env.reset()
    assert env.sim.demand.max_trips == grown and env.sim.demand.horizon >= 40
    env.step(torch.zeros(2, 4, dtype=torch.int64))
    check_conservation(env.sim.demand, env.sim.state)
