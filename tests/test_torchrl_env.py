"""The TorchRL env (envs/rl/torchrl_env.py): specs, the action mask, autoreset across an
episode boundary, partial resets, seeding and its errors."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torchrl.envs.utils import check_env_specs

import envs
from envs.errors import CommandError, ConfigError
from envs.rl.torchrl_env import GROUP, TrafficSignalTorchRLEnv
from tests.conftest import DEVICES
from tests.scenarios import uneven_grid

DONE = ("done", "terminated", "truncated")


def make(device="cpu", copies=2, **kwargs):
    """60 s episodes of 10 s decisions: the step counts below are worked out for these."""
    kwargs.setdefault("scenario", "grid_4x4")
    kwargs.setdefault("episode_s", 60)
    kwargs.setdefault("decision_interval_s", 10)
    return envs.torchrl_env(copies=copies, device=device, **kwargs)


@pytest.mark.parametrize("device", DEVICES)
def test_check_env_specs_on_a_generated_grid(device):
    env = make(device)
    assert isinstance(env, TrafficSignalTorchRLEnv)
    check_env_specs(env, break_when_any_done="both")


@pytest.mark.datasets
@pytest.mark.parametrize("device", DEVICES)
def test_check_env_specs_on_a_dataset(datasets_dir, device):
    env = make(device, scenario="hangzhou_4x4", data_dir=str(datasets_dir))
    assert env.num_intersections == 16
    check_env_specs(env, break_when_any_done="both", seed=0)


@pytest.mark.parametrize("device", DEVICES)
def test_shapes_dtypes_and_devices(device):
    env = make(device, copies=3)
    B, I, A, F = 3, env.num_intersections, env.max_actions, env.core.obs_size
    assert env.batch_size == torch.Size([B]) and env.device.type == device
    assert env.group_map == {GROUP: list(env.core.layout.ids)}
    td = env.reset()
    obs, mask = td[GROUP, "observation"], td[GROUP, "action_mask"]
    assert obs.shape == (B, I, F) and obs.dtype == torch.float32 and obs.device.type == device
    assert mask.shape == (B, I, A) and mask.dtype == torch.bool
    for key in DONE:
        assert td[key].shape == (B, 1) and not td[key].any()
        assert td[GROUP, key].shape == (B, I, 1) and td[GROUP, key].dtype == torch.bool
    td = env.step(env.rand_action(td))
    action = td[GROUP, "action"]
    assert action.shape == (B, I) and action.dtype == torch.int64 and action.device.type == device
    nxt = td["next"]
    assert nxt[GROUP, "reward"].shape == (B, I, 1) and nxt[GROUP, "reward"].dtype == torch.float32
    assert nxt[GROUP, "observation"].shape == (B, I, F)
    assert nxt[GROUP, "reward"].device.type == device
    for key in DONE:
        assert nxt[key].shape == (B, 1) and nxt[GROUP, key].shape == (B, I, 1)


def test_action_mask_matches_the_layout():
    env = TrafficSignalTorchRLEnv(uneven_grid(), copies=2, episode_s=60)
    layout_mask = env.core.layout.action_mask
    # the intersection that lost a phase
    assert layout_mask[0].tolist() == [True, True, True, False]
    td = env.reset()
    assert torch.equal(td[GROUP, "action_mask"], layout_mask.expand(2, -1, -1))
    spec = env.action_spec[GROUP, "action"]
    assert torch.equal(spec.mask, layout_mask.expand(2, -1, -1))
    draws = torch.stack([env.rand_action(td)[GROUP, "action"] for _ in range(200)])
    assert bool(layout_mask.expand(200, 2, -1, -1).gather(-1, draws.unsqueeze(-1)).all())
    td[GROUP, "action"] = torch.zeros(2, env.num_intersections, dtype=torch.int64)
    td[GROUP, "action"][1, 0] = 3  # a padding action of intersection 0
    with pytest.raises(CommandError, match=r"intersections\.action\[1, 0\]") as info:
        env.step(td)
    assert "action mask" in str(info.value)


@pytest.mark.parametrize("device", DEVICES)
def test_rollout_across_an_episode_boundary(device):
    # 60 s episodes of 10 s decisions: the 6th step truncates, the 7th is the next episode's 1st
    env = make(device)
    data = env.rollout(8, break_when_any_done=False)
    assert data.batch_size == (2, 8)
    trunc = data["next", "truncated"].squeeze(-1)
    assert trunc[:, 5].all() and not trunc[:, :5].any() and not trunc[:, 6:].any()
    assert not data["next", "terminated"].any()
    assert torch.equal(data["next", "done"], data["next", "truncated"])
    for key in DONE:  # every intersection of a copy ends with it; the root entries never say done
        per_agent = data["next", GROUP, key]
        assert torch.equal(per_agent, data["next", key].unsqueeze(-2).expand_as(per_agent))
        assert not data[key].any()
    obs, last = data[GROUP, "observation"], data["next", GROUP, "observation"]
    # the step's "next" is the next root observation, except across the boundary, where it is
    # the finished episode's last one and the root is the new episode's first (= the reset's)
    assert torch.equal(last[:, :5], obs[:, 1:6]) and torch.equal(last[:, 6], obs[:, 7])
    assert not torch.equal(last[:, 5], obs[:, 6])
    assert torch.equal(obs[:, 6], obs[:, 0])
    assert env.core.sim.state.t.tolist() == [20, 20]
    assert last.device.type == device


def test_autoreset_draws_each_demand_sample_once_and_seeds():
    env = make(copies=2, demand={"mode": "poisson"})
    env.set_seed(5)
    env.reset()
    assert env.core.next_sample == 7  # samples 5 and 6
    env.rollout(7, break_when_any_done=False, auto_reset=False, tensordict=env.reset())
    # the reset restarted nothing new (no seed left), the boundary drew one sample per copy
    assert env.core.next_sample == 11
    for bad in (-1, True):  # True would seed 1
        with pytest.raises(ConfigError, match="'seed'"):
            env.set_seed(bad)


def test_a_partial_reset_restarts_only_the_named_copies():
    env = make(copies=2)
    td = env.reset()
    for _ in range(2):
        td = env.step_mdp(env.step(env.rand_action(td)))
    assert env.core.sim.state.t.tolist() == [20, 20]
    td.set("_reset", torch.tensor([[True], [False]]))  # TorchRL keeps the rest of `td` as is
    out = env.reset(td)
    assert env.core.sim.state.t.tolist() == [0, 20]
    assert torch.equal(out[GROUP, "observation"], env.core.observe())
    assert not out["done"].any()
    # the group's own "_reset" works too: any intersection of a copy restarts the copy
    env.step(env.rand_action(out))
    group_reset = torch.zeros(2, env.num_intersections, 1, dtype=torch.bool)
    group_reset[1, 3] = True
    group = TensorDict({"_reset": group_reset}, [2, env.num_intersections])
    env.reset(TensorDict({GROUP: group}, [2]))
    assert env.core.sim.state.t.tolist() == [10, 0]  # copy 0 kept its episode: not a full reset


def test_bad_actions_are_command_errors():
    env = make(copies=2)
    I = env.num_intersections
    td = env.reset()

    def step_with(action):
        return env.step(TensorDict({GROUP: TensorDict({"action": action}, [2])}, [2]))

    with pytest.raises(CommandError, match=r"intersections\.action\.shape"):
        step_with(torch.zeros(2, I + 1, dtype=torch.int64))
    with pytest.raises(CommandError, match=r"intersections\.action\.shape"):
        step_with(torch.zeros(2, I, env.max_actions, dtype=torch.int64))  # one-hot is not taken
    for dtype in (torch.float32, torch.bool):  # a bool mask is not a choice of action either
        with pytest.raises(CommandError, match=r"intersections\.action\.dtype"):
            step_with(torch.zeros(2, I, dtype=dtype))
    with pytest.raises(CommandError, match=r"intersections\.action'"):
        env.step(TensorDict({}, [2]))
    for bad in (-1, env.max_actions):
        td[GROUP, "action"] = torch.zeros(2, I, dtype=torch.int64)
        td[GROUP, "action"][0, 2] = bad
        with pytest.raises(CommandError, match=r"intersections\.action\[0, 2\]"):
            env.step(td)
    assert env.core.sim.state.t.tolist() == [0, 0]  # nothing was stepped


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_config_error():
    with pytest.raises(ConfigError, match="field 'device' = 'cuda'") as info:
        make("cuda")
    assert info.value.field == "device"
    with pytest.raises(ConfigError, match="field 'device'"):
        make("cuda:1")


def test_bad_keywords_are_config_errors():
    with pytest.raises(ConfigError, match="field 'device'"):
        make("not-a-device")
    with pytest.raises(ConfigError, match="field 'autoreset'"):
        make(autoreset=False)
    with pytest.raises(ConfigError, match="field 'colour'"):
        make(colour="red")
    with pytest.raises(ConfigError, match="field 'copies'"):
        make(copies=0)


def test_a_collector_gathers_whole_episodes():
    from torchrl.collectors import Collector

    env = make(copies=2)
    collector = Collector(env, None, frames_per_batch=16, total_frames=16)
    try:
        data = next(iter(collector))
    finally:
        collector.shutdown()
    assert data.batch_size == (2, 8)
    assert data["next", "truncated"].squeeze(-1)[:, 5].all()
    ids = data["collector", "traj_ids"]
    assert (ids[:, :6] == ids[:, :1]).all() and (ids[:, 6:] != ids[:, :1]).all()
    obs, last = data[GROUP, "observation"], data["next", GROUP, "observation"]
    assert torch.equal(last[:, :5], obs[:, 1:6]) and not torch.equal(last[:, 5], obs[:, 6])


def test_a_transform_that_truncates_restarts_the_running_copies():
    from torchrl.envs import StepCounter, TransformedEnv

    env = TransformedEnv(make(copies=2), StepCounter(max_steps=2))
    data = env.rollout(5, break_when_any_done=False)
    assert data["next", "truncated"].squeeze(-1)[0].tolist() == [False, True, False, True, False]
    assert env.base_env.core.sim.state.t.tolist() == [10, 10]  # restarted after steps 2 and 4
    obs = data[GROUP, "observation"]
    assert torch.equal(obs[:, 2], obs[:, 0]) and torch.equal(obs[:, 4], obs[:, 0])


def test_compile_engine_compiles_the_engine_and_torchrl_compile_is_refused():
    # TorchRL's EnvBase metaclass takes a `compile` keyword before __init__ and would wrap the
    # whole step (autoreset's demand sampling included) in torch.compile, leaving the engine eager
    from envs.engine.simulator import _step_in_place

    assert make(copies=1).core.sim._step is _step_in_place
    compiled = make(copies=1, compile_engine=True)
    assert compiled.core.sim._step is not _step_in_place  # torch.compile's wrapper of it
    assert "_compiled_step_and_maybe_reset" not in vars(compiled)
    with pytest.raises(ConfigError) as caught:
        make(copies=1, compile=True)
    assert caught.value.field == "compile" and "compile_engine" in str(caught.value)


def test_the_next_mask_of_a_finished_episode_is_its_last_state_beside_its_last_observation():
    """phase_duration holds: at the final step every intersection holds a 40 s green, so its last
    mask allows the one held action; the new episode's first mask allows them all (before, "next"
    held the new episode's mask beside the old episode's observation)."""
    env = TrafficSignalTorchRLEnv("grid_1x1", copies=1, episode_s=20, decision_interval_s=5,
                                  action_mode="phase_duration", green_durations_s=[40])
    td = env.reset()
    for _ in range(4):
        td[GROUP, "action"] = torch.zeros(1, 1, dtype=torch.int64)  # phase 0 for 40 s: held to the end
        out, td = env.step_and_maybe_reset(td)
    assert bool(out["next", "truncated"].all())
    assert out["next", GROUP, "action_mask"].sum(-1).tolist() == [[1]]  # holding: the held action only
    assert td[GROUP, "action_mask"].sum(-1).tolist() == [[4]]  # the new episode: every phase
