"""PettingZoo `ParallelEnv` over `BatchedSignalEnv`: one agent per intersection (a SUMO
scenario's unsignalised junctions included, with one action under the default action mode).

Agents are named by their roadnet intersection ids. Each agent observes ``Box[F]`` (the
configured features of its intersection) and acts in ``Discrete(n)`` over its own actions in the
``action_mode`` (`envs.rl.actions`: its signal phases, keep/switch, or phase x green duration;
intersections may differ; ``infos[agent]["action_mask"]`` gives the padded mask a shared
policy would use). ``state()`` is every agent's observation concatenated, ``[I * F]``.
When the episode ends every agent is done together and leaves ``agents``; call `reset`.
Stepping with no episode running (or after `close`, which also ends `reset`), or without an
action for every agent, is a `CommandError`; an unknown keyword argument or render mode a
`ConfigError`.
"""

from __future__ import annotations

import functools

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from envs.errors import CommandError
from envs.rl.adapters import action_tensor, check_render_mode, single_copy_kwargs
from envs.rl.signal_env import BatchedSignalEnv
from envs.rl.signal_env import to_numpy as _numpy

SOURCE = "<env:pettingzoo>"


class TrafficSignalParallelEnv(ParallelEnv):
    metadata = {"name": "gridlight_traffic_signal_v0", "render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, **kwargs) -> None:
        check_render_mode(render_mode, SOURCE)
        self.core = BatchedSignalEnv(copies=1, autoreset=False, **single_copy_kwargs(kwargs, SOURCE))
        self.render_mode = render_mode
        self.possible_agents = list(self.core.layout.ids)
        self.agents: list[str] = []
        self._num_actions = _numpy(self.core.num_actions)
        low = _numpy(self.core.obs_low).astype(np.float32)
        high = _numpy(self.core.obs_high).astype(np.float32)
        self._obs_space = spaces.Box(low=low, high=high, dtype=np.float32)
        inter = self.core.num_intersections
        self.state_space = spaces.Box(
            low=np.tile(low, inter), high=np.tile(high, inter), dtype=np.float32
        )
        self.observation_spaces = {a: self._obs_space for a in self.possible_agents}
        self.action_spaces = {
            a: spaces.Discrete(int(n)) for a, n in zip(self.possible_agents, self._num_actions)
        }
        self._obs = np.zeros((inter, self.core.obs_size), dtype=np.float32)
        self._closed = False

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        if self._closed:  # the core stepped on after close
            raise CommandError(SOURCE, "reset", None, "closed: make a new environment")
        obs, info = self.core.reset(seed)
        self.agents = list(self.possible_agents)
        self._obs = _numpy(obs[0])
        return self._by_agent(self._obs), self._infos(info)

    def step(self, actions: dict):
        if not self.agents:
            why = "closed: make a new environment" if self._closed else "no episode is running: call reset() first"
            raise CommandError(SOURCE, "agents", [], why)
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise CommandError(SOURCE, "actions", missing[:5], "no action for these agents")
        unknown = [a for a in actions if a not in self.agents]  # was ignored (a typo's action lost)
        if unknown:
            raise CommandError(SOURCE, "actions", unknown[:5], "not agents of this environment")
        for agent in self.possible_agents:  # one whole number each (an array was numpy's ValueError)
            if np.ndim(actions[agent]) != 0 or isinstance(actions[agent], (bool, np.bool_)):  # True was action 1
                raise CommandError(SOURCE, f"actions[{agent}]", np.asarray(actions[agent]).tolist(),
                                   "expected one action (a whole number)")
        chosen = action_tensor([actions[a] for a in self.possible_agents], len(self.possible_agents), SOURCE,
                               self.core.device)
        chosen = chosen.reshape(1, -1)
        obs, reward, terminated, truncated, info = self.core.step(chosen)
        self._obs = _numpy(obs[0])
        rewards = dict(zip(self.possible_agents, _numpy(reward[0]).astype(float).tolist()))
        term, trunc = bool(terminated[0]), bool(truncated[0])
        infos = self._infos(info)
        if "episode" in info:
            episode = {name: float(value[0]) for name, value in info["episode"].items()}
            for agent in self.agents:
                infos[agent]["episode_metrics"] = episode  # "episode" is the wrappers' key (as the single env)
        observations = self._by_agent(self._obs)
        terminations = {a: term for a in self.agents}
        truncations = {a: trunc for a in self.agents}
        if term or trunc:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        return self._obs.reshape(-1).copy()

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from envs.rl.render import render_frame

        return render_frame(self.core, copy=0)

    def close(self) -> None:
        self._closed = True
        self.agents = []

    def _by_agent(self, obs: np.ndarray) -> dict:
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}

    def _infos(self, info: dict) -> dict:
        mask = _numpy(info["action_mask"][0])
        t = int(info["t"][0])
        return {a: {"action_mask": mask[i].copy(), "t": t} for i, a in enumerate(self.possible_agents)}
