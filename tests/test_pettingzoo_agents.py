"""The PettingZoo adapter hands each agent its own intersection's data: agent k (the k-th
signalised intersection in roadnet order) gets row k of the batched core's observation, reward
and action mask. The API test (tests/test_envs.py) checks shapes and types, which a shuffled
mapping keeps; this compares every agent with a twin core stepped with the same actions."""

from __future__ import annotations

import numpy as np
import torch

import envs
from envs.rl.signal_env import BatchedSignalEnv
from tests.scenarios import uneven_grid


def test_each_agent_gets_its_own_intersections_observation_reward_and_action_mask():
    scenario = uneven_grid()  # intersection 0 has 3 actions, the others 4: the masks differ
    settings = {"episode_s": 100, "reward": {"queue": 1.0, "pressure": 1.0}}
    pz = envs.parallel_env(scenario=scenario, **settings)
    twin = BatchedSignalEnv(scenario, 1, autoreset=False, **settings)
    observations, infos = pz.reset(seed=0)
    core_obs, core_info = twin.reset(0)
    agents = pz.possible_agents
    differing_rewards = 0
    for step in range(12):
        for i, agent in enumerate(agents):
            assert np.array_equal(observations[agent], core_obs[0, i].numpy()), (step, agent)
            assert infos[agent]["action_mask"].tolist() == core_info["action_mask"][0, i].tolist(), (step, agent)
        actions = {agent: (i + step) % (3 if i == 0 else 4) for i, agent in enumerate(agents)}
        observations, rewards, _, _, infos = pz.step(actions)
        core_obs, core_reward, _, _, core_info = twin.step(torch.tensor([[actions[a] for a in agents]]))
        assert [rewards[a] for a in agents] == core_reward[0].tolist(), step
        differing_rewards += len(set(rewards.values())) > 1
    # the rows differ, so a mapping that shuffled them could not pass
    assert differing_rewards > 5 and len({bytes(o.tobytes()) for o in observations.values()}) == len(agents)
