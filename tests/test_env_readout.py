"""The decision readout (observations and decision-time rewards) compiled reads what it reads eagerly."""

from __future__ import annotations

import torch

from envs.rl.readout import decision_readout
from envs.rl.signal_env import BatchedSignalEnv

FEATURES = [
    "phase_onehot", "time_in_phase", "lane_count", "lane_halting", "segment_counts", "pressure",
    "approach_moving", "approach_halting", "neighbour_mean:lane_count", "intersection_id",
]


def test_the_compiled_readout_reads_what_the_eager_one_reads_across_an_autoreset():
    env = BatchedSignalEnv("grid_4x4", 3, decision_interval_s=5, episode_s=100, demand={"mode": "poisson"},
                           observations=FEATURES, reward={"queue": 1.0, "pressure": 0.5, "waiting_time": 0.1})
    compiled = decision_readout(env.features, env.reward_terms, env.config.reward, env.config.normalise,
                                env.feature_base, compile=True, stateful=False)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    seen_traffic = resets = 0
    for _ in range(30):  # 150 s: every copy's 100 s episode ends once (autoreset, new demand samples)
        actions = torch.randint(0, 1000, (3, env.num_intersections), generator=gen) % env.num_actions
        _, reward, terminated, truncated, _ = env.step(actions)
        resets += int((terminated | truncated).sum())
        obs, terms = compiled(env.sim.state)
        eager_obs, eager_terms = env._readout(env.sim.state)  # the env's own (compile=False): eager
        assert torch.equal(obs, eager_obs)
        assert len(terms) == len(eager_terms) == 2  # queue and pressure; waiting_time is summed per second
        for term, eager in zip(terms, eager_terms):
            assert torch.equal(term, eager)
        seen_traffic += int(eager_obs.abs().sum() > 0) + int(eager_terms[0].abs().sum() > 0)
    assert resets == 3
    assert seen_traffic > 40  # the readings were not all zero: there was traffic to read
