"""Every device path, once per device of `tests.conftest.DEVICES` (the CPU always, CUDA where
present): the engine against the CPU, each adapter's reset and step under random masked actions,
each classical controller, and an evaluation batch. On a machine without CUDA only the CPU cases
run; on one with CUDA the same tests compare the GPU with the CPU."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

import envs
from agents.classical import CONTROLLERS, SOTL, AdvancedMaxPressure, EfficientMaxPressure, MaxPressure
from envs.engine import Simulator
from envs.engine.intersections import intersection_layout
from envs.evaluation.metrics import METRIC_NAMES
from envs.evaluation.runner import EvaluationBatch
from envs.incidents.perturbations import DetectorFaults, DetectorFaultSpec, Perturbation
from envs.engine.state import EngineParams
from envs.scenario.splits import DemandSpec, sample_trips
from tests.engine_checks import check_all
from tests.scenarios import small_grid, uneven_grid

DISCRETE = ("trip_enter", "trip_finish", "lane_count", "phase", "phase_timer", "veh_lane")
CONTINUOUS = ("veh_pos", "veh_speed", "trip_delay")


def _real(state, name: str) -> torch.Tensor:
    """A field without its scratch cell (the last slot / trip, where masked writes land: never read,
    and on CUDA written in an unspecified order)."""
    value = getattr(state, name).cpu()
    return value[:, :-1] if name.startswith(("veh_", "trip_")) else value


def assert_same_state(cpu: Simulator, other: Simulator) -> None:
    """Integer fields equal, float fields within float tolerance (CUDA kernels may round apart)."""
    assert cpu.num_slots == other.num_slots
    for name in DISCRETE:
        assert torch.equal(_real(cpu.state, name), _real(other.state, name)), name
    for name in CONTINUOUS:
        torch.testing.assert_close(_real(cpu.state, name), _real(other.state, name), rtol=1e-4, atol=1e-3)


def random_masked(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random allowed action per row of a ``[..., A]`` bool mask."""
    draws = np.where(mask, rng.random(mask.shape), -1.0)
    return draws.argmax(-1)


# ---- the engine ----------------------------------------------------------------------------------


def test_the_engine_on_the_device_ends_in_the_cpu_state(device):
    scenario = small_grid(2, 2, rate=600.0, horizon=300, seed=5)
    sims = [Simulator(scenario.network.to(d), scenario.demand(2).to(d)) for d in ("cpu", device)]
    assert sims[1].device.type == device and sims[1].state.t.device.type == device
    controllers = [MaxPressure(min_green_s=5) for _ in sims]
    for sim, controller in zip(sims, controllers):
        controller.reset(sim)
    for _ in range(300):
        before = sims[1].snapshot()
        for sim, controller in zip(sims, controllers):
            sim.step(controller.act(sim))
        check_all(sims[1].network, sims[1].demand, sims[1].params, before, sims[1].state)
    assert_same_state(*sims)


# ---- the adapters --------------------------------------------------------------------------------


def test_gym_vector_env_steps_on_the_device(device):
    venv = gymnasium.make_vec(envs.ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                              scenario=uneven_grid(60, device), episode_s=60)
    assert venv.core.device.type == device
    rng = np.random.default_rng(0)
    obs, info = venv.reset(seed=0)
    for _ in range(8):  # across the 60 s episode's end (autoreset)
        actions = random_masked(info["action_mask"], rng)
        assert actions.shape == (2, 4) and bool(info["action_mask"][0, 0, 3]) is False
        obs, reward, terminated, truncated, info = venv.step(actions)
        assert isinstance(obs, np.ndarray) and obs.shape[:2] == (2, 4) and np.isfinite(obs).all()
        assert reward.shape == (2,) and np.isfinite(reward).all()
    assert venv.core.sim.state.t.device.type == device


def test_gym_single_env_steps_on_the_device(device):
    env = gymnasium.make(envs.ENV_ID, scenario=uneven_grid(60, device), episode_s=60, decision_interval_s=10).unwrapped
    rng = np.random.default_rng(1)
    obs, info = env.reset(seed=0)
    for _ in range(6):
        obs, reward, terminated, truncated, info = env.step(random_masked(env.action_masks(), rng))
        assert obs.shape == env.observation_space.shape and np.isfinite(reward)
    assert truncated and env.core.device.type == device


def test_pettingzoo_env_steps_on_the_device(device):
    env = envs.parallel_env(scenario=uneven_grid(60, device), episode_s=60)
    rng = np.random.default_rng(2)
    obs, infos = env.reset(seed=0)
    while env.agents:
        actions = {a: int(random_masked(infos[a]["action_mask"], rng)) for a in env.agents}
        obs, rewards, terms, truncs, infos = env.step(actions)
        assert set(rewards) == set(env.possible_agents)
    assert env.core.device.type == device


def test_sb3_vec_env_steps_on_the_device(device):
    """The SB3 VecEnv takes numpy actions and compares them with the core's action counts on its
    device (the padded action 3 of the first intersection keeps its phase)."""
    venv = envs.sb3_vec_env(scenario=uneven_grid(60, device), copies=2, episode_s=60, decision_interval_s=10)
    rng = np.random.default_rng(3)
    obs = venv.reset()
    assert obs.shape == (8, venv.core.obs_size)
    for k in range(6):
        actions = random_masked(venv.action_masks(), rng)
        if k == 0:
            actions[0] = 3  # a padded action: kept, not an error
        venv.step_async(actions)
        obs, rewards, dones, infos = venv.step_wait()
        assert obs.shape == (8, venv.core.obs_size) and rewards.dtype == np.float32
    assert dones.all() and all("terminal_observation" in info for info in infos)
    assert venv.core.device.type == device


def test_torchrl_env_rolls_out_on_the_device(device):
    env = envs.torchrl_env(scenario="grid_4x4", copies=2, device=device, episode_s=60)
    data = env.rollout(8, break_when_any_done=False)
    assert data.device.type == device and data["next", "intersections", "reward"].device.type == device
    assert data.batch_size == torch.Size([2, 8])


def test_the_core_observation_bounds_live_on_the_device(device):
    core = envs.sb3_vec_env(scenario=uneven_grid(60, device), episode_s=60).core
    obs, _ = core.reset(0)
    assert core.obs_low.device.type == core.obs_high.device.type == device
    assert bool(((obs >= core.obs_low) & (obs <= core.obs_high)).all())


# ---- the classical controllers -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_each_classical_controller_runs_on_the_device_as_on_the_cpu(device, name):
    scenario = small_grid(2, 2, rate=600.0, horizon=300, seed=3)
    sims = []
    for d in ("cpu", device):
        sim = Simulator(scenario.network.to(d), scenario.demand(2).to(d))
        controller = CONTROLLERS[name]()
        sim.run(300, controller)
        sims.append(sim)
    assert_same_state(*sims)


@pytest.mark.parametrize("cls", [MaxPressure, SOTL, EfficientMaxPressure, AdvancedMaxPressure])
def test_detector_reading_controllers_run_under_faults_on_the_device(device, cls):
    scenario = small_grid(2, 2, rate=600.0, horizon=300, seed=3)
    network = scenario.network.to(device)
    perturbation = Perturbation(seed=1, detectors=DetectorFaultSpec(noise_std=1.0, dropout_p=0.2, stuck_p=0.2,
                                                                     dead_p=0.3, stuck_at_s=60))
    faults = DetectorFaults(perturbation, network, intersection_layout(network).in_lanes, 2)
    faults.start_episode(1, "eval", 0)  # copy 0 stays clean
    sim = Simulator(network, scenario.demand(2).to(device))
    sim.run(300, cls(detectors=faults))
    assert sim.state.t.device.type == device and int(sim.state.t[0]) == 300


# ---- evaluation ----------------------------------------------------------------------------------


def test_an_evaluation_batch_on_the_device_matches_the_cpu(device):
    scenario = small_grid(2, 2, rate=600.0, horizon=200, seed=4)
    trips = [[sample_trips(scenario, DemandSpec("poisson"), "eval", s, horizon=200) for s in range(2)]]
    results = []
    for d in ("cpu", device):
        moved = scenario if d == "cpu" else _scenario_on(scenario, d)
        batch = EvaluationBatch(moved, 2, trips, EngineParams())
        assert batch.sim.device.type == d
        results.append(batch.run([CONTROLLERS["fixed_time"](), CONTROLLERS["max_pressure"]()], 200))
    for name in METRIC_NAMES:
        np.testing.assert_allclose(results[0][name], results[1][name], rtol=1e-4, atol=1e-3, err_msg=name)


def _scenario_on(scenario, device):
    """`scenario` with its network on `device` (its demands are stacked onto the network's device)."""
    from dataclasses import replace

    return replace(scenario, network=scenario.network.to(device))
