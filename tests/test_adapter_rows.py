"""The SB3 VecEnv, the Gymnasium and the TorchRL environments against the batched core they wrap:
sub-environment ``b * I + i`` is intersection i of copy b in every array the SB3 VecEnv hands out,
a copy that drains its demand ends and resets alone (TorchRL: its "next" holds the finished
episode, a partial reset does not restart it twice), seeds reach the core, and the attribute
plumbing SB3 calls answers per sub-environment. Each is compared with a twin core stepped alike."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from tensordict import TensorDict

import envs
from envs.errors import CommandError, ConfigError
from envs.rl.gym_env import TrafficSignalVectorEnv
from envs.rl.signal_env import BatchedSignalEnv
from envs.rl.torchrl_env import GROUP
from envs.scenario import scenario_from_dicts
from envs.scenario.generate import grid_roadnet, uniform_demand
from tests.scenarios import uneven_grid

COPIES, SETTINGS = 2, {"episode_s": 600, "decision_interval_s": 10, "demand": {"mode": "poisson"}}


def _short_demand_pair():
    """Two junctions, demand over 30 s: each copy draws its own trips, so the copies drain apart."""
    roadnet = grid_roadnet(1, 2, road_length=100.0)
    return scenario_from_dicts(roadnet, uniform_demand(roadnet, rate_per_origin=200.0, horizon=30, seed=0),
                               name="short_pair")


def test_sb3_rows_follow_the_core_through_a_copy_that_ends_alone():
    scenario = _short_demand_pair()
    vec = envs.sb3_vec_env(scenario=scenario, copies=COPIES, **SETTINGS)
    twin = BatchedSignalEnv(scenario, COPIES, **SETTINGS)
    agents = vec.num_intersections
    vec.seed(3)  # SB3 seeds sub-environment 0 with 3: the core's reset seed
    obs = vec.reset()
    twin_obs, _ = twin.reset(3)
    assert np.array_equal(obs, twin_obs.reshape(COPIES * agents, -1).numpy())
    alone = 0
    for k in range(60):
        actions = np.array([(k // 2 + n) % 4 for n in range(COPIES * agents)])
        obs, rewards, dones, infos = vec.step(actions)
        twin_obs, twin_reward, terminated, truncated, info = twin.step(torch.as_tensor(actions).reshape(COPIES, -1))
        assert np.array_equal(obs, twin_obs.reshape(COPIES * agents, -1).numpy()), k
        assert np.array_equal(rewards, twin_reward.reshape(-1).numpy()), k
        ended = (terminated | truncated).tolist()
        assert dones.tolist() == [ended[n // agents] for n in range(COPIES * agents)], k
        for n, row in enumerate(infos):
            b = n // agents
            if not ended[b]:
                assert row == {}, (k, n)
                continue
            assert np.array_equal(row["terminal_observation"], info["final_obs"][b, n % agents].numpy()), (k, n)
            assert row["TimeLimit.truncated"] is bool(truncated[b]), (k, n)
            assert row["episode_metrics"] == {name: float(v[b]) for name, v in info["episode"].items()}, (k, n)
        if ended[0] != ended[1]:
            alone += 1
            assert bool(terminated.any()) and not bool(truncated.any())
    assert alone > 0, "one copy's demand should drain before the other's"


def test_sb3_plumbing_answers_per_sub_environment():
    vec = envs.sb3_vec_env(scenario=uneven_grid(), copies=COPIES, episode_s=100)  # 3 actions at intersection 0
    vec.reset()
    vec.step(np.arange(vec.num_envs) % 3)
    masks = vec.action_masks()
    assert not np.array_equal(masks[0], masks[1])  # so a row mixed up shows
    assert vec.get_attr("num_intersections", indices=5) == [4]
    assert vec.get_attr("num_intersections", indices=[0, 7]) == [4, 4]
    assert len(vec.get_attr("num_intersections")) == vec.num_envs
    for n in (0, 1, 5, 7):
        assert np.array_equal(vec.env_method("action_masks", indices=n)[0], masks[n]), n
    assert [m.tolist() for m in vec.env_method("action_masks", indices=[4, 1])] == [masks[4].tolist(),
                                                                                   masks[1].tolist()]
    assert vec.env_is_wrapped(gymnasium.Wrapper) == [False] * vec.num_envs
    assert vec.env_is_wrapped(gymnasium.Wrapper, indices=[3, 4]) == [False, False]


def test_sb3_refuses_a_method_or_attribute_for_some_rows_of_the_shared_core():
    vec = envs.sb3_vec_env(scenario="grid_1x1", copies=COPIES)
    vec.reset()
    vec.step(np.zeros(vec.num_envs, dtype=np.int64))
    clock = vec.get_attr("sim")[0].state.t.clone()
    # every row is an intersection of one core: reset for row 0 reset every copy
    with pytest.raises(CommandError, match="shares") as refused:
        vec.env_method("reset", indices=[0])
    assert refused.value.field == "indices" and torch.equal(vec.get_attr("sim")[0].state.t, clock)
    with pytest.raises(CommandError, match="shares"):
        vec.set_attr("render_mode", None, indices=1)
    for past in (vec.num_envs, -1, [0, 9]):  # answered with the value of every row
        with pytest.raises(CommandError, match="rows in"):
            vec.get_attr("num_intersections", indices=past)
    assert len(vec.env_method("reset", indices=list(range(vec.num_envs)))) == vec.num_envs


def test_sb3_refuses_the_first_action_past_discrete_a():
    vec = envs.sb3_vec_env(scenario="grid_1x1", copies=COPIES)
    vec.reset()
    with pytest.raises(CommandError, match=r"outside Discrete\(4\)") as refused:  # 4 is past 0..3
        vec.step(np.array([4, 0]))
    assert refused.value.value == 4


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_an_action_that_is_not_finite_is_refused(bad):
    vec = envs.sb3_vec_env(scenario="grid_1x1", copies=COPIES)
    vec.reset()
    with pytest.raises(CommandError, match="whole numbers"):
        vec.step(np.array([0.0, bad]))


def test_the_single_env_reward_is_the_sum_over_its_intersections_and_copies_true_is_refused():
    env = gymnasium.make(envs.ENV_ID, scenario="grid_4x4", episode_s=60, reward={"queue": 1.0, "pressure": 1.0})
    env.reset(seed=0)
    spread = 0
    for k in range(5):
        _, reward, _, _, info = env.step(np.full(16, k % 4))
        assert reward == pytest.approx(float(info["agent_rewards"].astype(np.float64).sum()), rel=1e-6)
        spread += len(set(info["agent_rewards"].tolist())) > 1
    assert spread  # the intersections' rewards differ, so a mean or one row would not pass
    with pytest.raises(ConfigError, match="copies.*one copy") as refused:  # True == 1 in Python
        gymnasium.make(envs.ENV_ID, scenario="grid_1x1", copies=True)
    assert refused.value.value is True


def test_the_vector_info_marks_every_copy_for_each_key_and_render_gives_a_tuple():
    vec = TrafficSignalVectorEnv(num_envs=COPIES, render_mode="rgb_array", scenario="grid_1x1")
    _, info = vec.reset(seed=0)
    _, _, _, _, info = vec.step(np.zeros((COPIES, 1), dtype=np.int64))
    for key in ("action_mask", "t", "agent_rewards"):
        assert info[f"_{key}"].tolist() == [True] * COPIES, key
    assert isinstance(vec.render(), tuple)


def _pair_actions(k: int, intersections: int) -> torch.Tensor:
    return torch.tensor([[(k // 2 + b + i) % 4 for i in range(intersections)] for b in range(COPIES)])


def test_torchrl_env_follows_the_core_through_a_copy_that_ends_alone():
    scenario = _short_demand_pair()
    env = envs.torchrl_env(scenario=scenario, copies=COPIES, **SETTINGS)
    twin = BatchedSignalEnv(scenario, COPIES, **SETTINGS)
    env.set_seed(3)
    td = env.reset()
    twin_obs, _ = twin.reset(3)
    assert torch.equal(td[GROUP, "observation"], twin_obs)
    alone = 0
    for k in range(60):
        actions = _pair_actions(k, env.num_intersections)
        td[GROUP, "action"] = actions
        out, td = env.step_and_maybe_reset(td)
        twin_obs, reward, terminated, truncated, info = twin.step(actions)
        nxt = out["next"]
        assert torch.equal(nxt[GROUP, "reward"], reward.unsqueeze(-1)), k
        assert nxt["terminated"].view(-1).tolist() == terminated.tolist(), k
        assert nxt["truncated"].view(-1).tolist() == truncated.tolist(), k
        # "next" holds the finished episode's last observation, the root the new episode's first
        assert torch.equal(nxt[GROUP, "observation"], info.get("final_obs", twin_obs)), k
        assert torch.equal(td[GROUP, "observation"], twin_obs), k
        ended = (terminated | truncated).tolist()
        if any(ended):
            for name, value in info["episode"].items():
                assert torch.equal(env.last_info["episode"][name], value), (k, name)
        alone += ended[0] != ended[1]
    assert alone > 0, "one copy's demand should drain before the other's"


def test_a_partial_reset_leaves_a_copy_the_step_already_restarted_alone():
    env = envs.torchrl_env(scenario=_short_demand_pair(), copies=COPIES, **SETTINGS)
    td = env.reset()
    for k in range(60):
        td[GROUP, "action"] = _pair_actions(k, env.num_intersections)
        td = env.step(td)
        done = td["next", "done"].view(-1)
        td = env.step_mdp(td)
        if bool(done.any()) and not bool(done.all()):
            break
    else:
        pytest.fail("one copy's demand should drain before the other's")
    ended, running = int(done.int().argmax()), int((~done).int().argmax())
    draws = env.core.next_sample
    env.reset(TensorDict({"_reset": torch.arange(COPIES).eq(running).view(COPIES, 1)}, [COPIES]))
    assert env.core.next_sample == draws + 1 and int(env.core.sim.state.t[running]) == 0
    t_ended = int(env.core.sim.state.t[ended])
    # the autoreset copy is still fresh: naming it now starts no second episode, draws no sample
    env.reset(TensorDict({"_reset": torch.arange(COPIES).eq(ended).view(COPIES, 1)}, [COPIES]))
    assert env.core.next_sample == draws + 1 and int(env.core.sim.state.t[ended]) == t_ended
