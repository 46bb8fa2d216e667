"""`BatchedSignalEnv`: the batched RL environment every adapter wraps (torch in, torch out).

B copies of a scenario, one agent per intersection (SUMO unsignalised junctions too). One `step` is one decision:
each agent picks an action (``action_mode``, `envs.rl.actions`: its next phase by default, or
keep-or-switch, or a phase and its green duration), the engine runs
``decision_interval_s`` seconds, and every agent gets its observation ``[B, I, F]`` and reward
``[B, I]``. The adapters in `envs.rl.gym_env`, `envs.rl.pettingzoo_env` and `envs.rl.sb3_env` only
reshape and convert these arrays; none of them loops over copies.

Timing rules are the engine's, so no action can break them: a chosen phase change starts the
yellow of the movements that lose green, then all-red, then the new green; a change chosen
before the current green has lasted ``min_green_s`` waits until it has (the choice is re-issued
at every second of the interval). Action ``-1`` keeps the current phase. ``info["action_mask"]``
``[B, I, A]`` is the mask of the next decision (it changes only under ``phase_duration``, where an
intersection holding its chosen green may only repeat the action it holds).

Episodes: a copy is *truncated* when its clock reaches ``episode_s`` (a time limit: the traffic
goes on, so a learner should bootstrap) and *terminated* when its demand is exhausted: every
trip has departed and left the network (nothing is left to control). Done copies reset inside
the same `step` (Gymnasium's ``SAME_STEP`` autoreset, also SB3's convention): the returned
observation is the new episode's first (and ``info["t"]`` its clock, 0), the last one is in
``info["final_obs"]`` (its action mask in ``info["final_action_mask"]``) and the finished
episodes' metrics (the metrics hub's, ``length_s`` its clock) in ``info["episode"]``, both with a
``[B]`` mask under the key with a leading underscore. With ``autoreset=False`` done copies are
left as they are until `reset`.

Each new episode of a copy draws its demand from the configured `DemandSpec` and split (see
`envs.scenario.splits`): sample indices are handed out in order from the ``seed`` given to
`reset`, so a run is reproducible; with a resampling mode (poisson, jitter) the train split
never draws an evaluation demand. The default mode, ``original``, replays the flow file in
every episode (both splits then hold the same trips). Copies that run the same sample share its
demand tables (`envs.rl.episode_demand`); ``demand_pool=K`` makes episodes cycle through K
samples (episode n after ``reset(seed=s)`` runs sample ``s + n % K``), so a large batch holds K
samples' tables instead of one per copy, and autoresets only re-index them. The stream of samples
(`envs.rl.demand_stream`) is what a training checkpoint keeps (`demand_state`, `resume_demand`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch

from envs.engine.simulator import Simulator
from envs.engine.state import EngineParams
from envs.errors import CommandError, ConfigError, flag, is_whole
from envs.rl.features import (
    shortest_spacing,
    OBSERVATIONS, REWARDS, FeatureContext, check_observation_names,
    feature_context,
)
from envs.engine.intersections import IntersectionLayout, intersection_layout
from envs.rl.actions import DEFAULT_ACTION_MODE, DEFAULT_GREEN_DURATIONS_S, ActionDecoder
from envs.evaluation.metrics import episode_metrics
from envs.scenario import Scenario, load_scenario
from envs.scenario.demand import DemandShape, Trips
from envs.incidents.perturbations import (
    DetectorFaults, Incident, Perturbation, perturbation_from_config, sample_incidents, with_incidents,
)
from envs.incidents.probes import ProbeSensor, ProbeSpec
from envs.rl.probe_features import check_probe_observations, reads_probes
from envs.scenario.splits import DemandSpec
from envs.rl.demand_stream import DemandStream
from envs.rl.env_config import (
    DEFAULT_OBSERVATIONS, SOURCE, EnvConfig, check_loaded_scenario, check_loading_options, check_reward_weights,
    observation_names_arg,
)
from envs.rl.episode_demand import EpisodeTables
from envs.rl.fault_reach import check_faults_reach
from envs.rl.readout import decision_readout

class BatchedSignalEnv:
    def __init__(
        self,
        scenario: str | os.PathLike | Scenario = "grid_4x4",
        copies: int = EnvConfig.copies,  # the env settings' defaults are EnvConfig's (their one source)
        *,
        decision_interval_s: int = EnvConfig.decision_interval_s,
        episode_s: int = EnvConfig.episode_s,
        action_mode: str = DEFAULT_ACTION_MODE,
        green_durations_s=DEFAULT_GREEN_DURATIONS_S,
        observations=DEFAULT_OBSERVATIONS,
        reward: Any = "queue",
        normalise: bool = EnvConfig.normalise,
        demand: DemandSpec | dict | None = None,
        split: str = EnvConfig.split,
        engine: EngineParams | dict | None = None,
        compile: bool = False,
        device: str | None = None,  # a name loads on it (None: the CPU); a Scenario object brings its own
        data_dir: str | None = None,
        scenario_seed: int = 0,
        autoreset: bool = True,
        perturbation: Perturbation | dict | None = None,
        demand_pool: int = EnvConfig.demand_pool,
        probes: ProbeSpec | dict | None = None,
    ) -> None:
        flag(compile, SOURCE, "compile")  # bool("false") is True: it compiled
        self.config = EnvConfig(
            copies=copies, decision_interval_s=decision_interval_s, episode_s=episode_s,
            action_mode=action_mode,
            green_durations_s=tuple(green_durations_s) if isinstance(green_durations_s, (list, tuple))
            else green_durations_s,
            observations=observation_names_arg(observations),
            reward=check_reward_weights(reward, SOURCE), normalise=flag(normalise, SOURCE, "normalise"),
            demand=_as_dataclass(demand, DemandSpec, "demand"), split=split, demand_pool=demand_pool,
            probes=_as_dataclass(probes, ProbeSpec, "probes"),
        )
        self.config.validate()
        self.features = check_observation_names(self.config.observations, SOURCE)
        # a zero weight drops a term (configs merge reward mappings, so this is how to remove one)
        self.reward_terms = {name: REWARDS[name] for name, w in self.config.reward.items() if w != 0}
        if isinstance(scenario, (str, os.PathLike)):  # a name, or a path to one's own files
            check_loading_options(os.fspath(scenario), data_dir, scenario_seed)
            scenario = load_scenario(scenario, seed=scenario_seed, data_dir=data_dir, horizon=episode_s,
                                     device="cpu" if device is None else device)
        else:
            check_loaded_scenario(scenario, device, data_dir, scenario_seed)
        self.scenario = scenario
        self.demand_spec = self.config.demand
        # training under perturbations: each episode's sample also draws its incidents and surge
        # (same split and index as its demand, so evaluation never sees a training draw)
        self.perturbation = (perturbation if isinstance(perturbation, Perturbation)
                             else perturbation_from_config(perturbation, SOURCE))
        if not self.perturbation.is_clean and self.demand_spec.mode == "original":
            raise ConfigError(SOURCE, "perturbation", self.perturbation.name,
                                "perturbed episodes are drawn with the demand: use demand mode poisson or jitter")
        check_faults_reach(self.config.observations, self.perturbation.detectors, SOURCE)
        self.network = scenario.network
        self.layout: IntersectionLayout = intersection_layout(self.network)
        self.params = _as_dataclass(engine, EngineParams, "engine")
        self.copies = copies
        self.autoreset = flag(autoreset, SOURCE, "autoreset")  # False: done copies wait for `reset` (single envs)
        self.demand_pool = self.config.demand_pool
        self.stream = DemandStream(self.scenario, self.config.split, self.perturbation, copies, self.demand_pool)
        self._incidents: list[list[Incident]] = [[] for _ in range(copies)]
        # Until the first `reset` draws the episode demands, every copy holds the scenario's own
        # trips: they size the first tables. The horizon is padded to the episode so that later
        # samples never widen it.
        self.trips: list[Trips] = [scenario.trips] * copies  # the trip table each copy runs now
        self.tables = EpisodeTables(self.network)
        demand_tensors = self.tables.install(self.trips, None, DemandShape(0, 0, episode_s))
        # commands() checks every action once per decision; the engine need not re-check each second
        self.sim = Simulator(
            self.network, demand_tensors, self.params, compile=compile, validate_commands=False
        )
        # the network's side of every feature (lane storage, bounds, detector faults); context()
        # binds it to the current state
        self.feature_base = feature_context(self.network, self.layout, self.params, shortest_spacing(demand_tensors))
        self.detectors = DetectorFaults(self.perturbation, self.network, self.layout.in_lanes, copies)
        if self.detectors.active:  # faulty detectors change the detector-based observations, nothing else
            self.feature_base = replace(self.feature_base, detectors=self.detectors)
        self.probes = ProbeSensor(self.config.probes, self.network, copies, split)
        check_probe_observations([f.name for f in self.features], self.config.probes.p, SOURCE, unread_ok=True)
        self.feature_base = replace(self.feature_base, probes=self.probes)
        self.obs_size = sum(f.size(self.layout) for f in self.features)
        bounds = [(f.bounds(self.feature_base, self.config.normalise), f.size(self.layout)) for f in self.features]
        dev = self.device
        self.obs_low = torch.cat([torch.full((size,), low, device=dev) for (low, _), size in bounds])
        self.obs_high = torch.cat([torch.full((size,), high, device=dev) for (_, high), size in bounds])
        self.actions = ActionDecoder(self.layout, self.network, self.params, self.config.action_mode,
                                     self.config.green_durations_s, copies, SOURCE)
        stateful = self.detectors.active or any(reads_probes(f.name) for f in self.features)
        self._readout = decision_readout(self.features, self.reward_terms, self.config.reward, self.config.normalise,
                                         self.feature_base, compile=compile, stateful=stateful)

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def num_intersections(self) -> int:
        return self.layout.num_intersections

    @property
    def max_actions(self) -> int:
        """A: the width of the action mask (the most actions of any intersection, in this mode)."""
        return self.actions.max_actions

    @property
    def num_actions(self) -> torch.Tensor:
        """``[I]`` int64: each intersection's number of actions in this mode."""
        return self.actions.num_actions

    @property
    def action_mask(self) -> torch.Tensor:
        """``[B, I, A]`` bool: the actions allowed at the next decision (`envs.rl.actions`)."""
        return self.actions.mask(self.sim.state)

    @property
    def device(self) -> torch.device:
        return self.network.device

    # ---- demand ---------------------------------------------------------------------------
    @property
    def next_sample(self) -> int:
        """The index (in the config's split) of the next demand sample a reset draws."""
        return self.stream.next_sample

    @property
    def resume_sample(self) -> int:
        """The lowest demand sample an episode under way holds, else `next_sample`."""
        return self.stream.resume_sample

    @property
    def demand_state(self) -> dict:
        """Where a resumed training run picks the demand stream up (`DemandStream.state`)."""
        return self.stream.state

    def resume_demand(self, state: dict, source: str) -> None:
        """The next `reset` restarts each copy on the sample it held in `state` (a checkpoint's
        `demand_state`), whatever seed it is given, and continues the stream from there."""
        self.stream.resume(state, source)

    def _draw(self, copy: int) -> Trips:
        """Copy `copy`'s next episode: its demand sample (and incidents, kept for install)."""
        index, trips = self.stream.draw(copy, self.demand_spec)
        split = self.config.split
        self._incidents[copy] = sample_incidents(self.perturbation, self.network, split, index, trips=trips)
        self.detectors.start_episode(copy, split, index)
        self.probes.start_episode(copy, split, index)
        return trips

    def restart_copies(self, copies: torch.Tensor) -> None:
        """Start a new episode in the copies of the ``[B]`` bool mask, each on its next demand
        sample (what the step's autoreset does for copies whose episode ended)."""
        self._redraw(copies)
        self.sim.reset_copies(copies)
        self.actions.reset_copies(copies)
        self.probes.restart(copies, self.sim.state)

    def _redraw(self, copies: torch.Tensor) -> None:
        """New demand samples for the copies in the ``[B]`` mask (original demand: unchanged)."""
        if self.demand_spec.mode == "original":
            return
        for b in torch.nonzero(copies).flatten().tolist():
            self.trips[b] = self._draw(b)
        self._install_demand()

    def _install_demand(self) -> None:
        """Hand every copy's current trips to the engine (`EpisodeTables.install`: shared
        tables, re-indexed when they hold every copy's sample, else rebuilt with sizes that only
        grow, so that a run reallocates and recompiles only a few times)."""
        demand = self.tables.install(self.trips, self.sim.demand)
        if self.perturbation.incidents is not None and self.perturbation.incidents.count:
            demand = with_incidents(demand, self._incidents)
        self.sim.set_demand(demand)

    # ---- the RL interface -----------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, dict]:
        """Reset every copy. A `seed` restarts the demand sample indices at `seed`; after
        `resume_demand` (which wins over a seed) each copy restarts on the sample it held."""
        if seed is not None:
            if not is_whole(seed) or seed < 0:
                raise ConfigError(SOURCE, "seed", seed, "must be an integer >= 0")
            self.stream.restart(int(seed))
        if self.demand_spec.mode != "original":
            self.trips = [self._draw(b) for b in range(self.copies)]
            self._install_demand()
        self.stream.finish_resume()
        self.sim.reset()
        self.actions.reset(self.copies)
        self.probes.restart(torch.ones(self.copies, dtype=torch.bool, device=self.device), self.sim.state)
        return self.observe(), self._info()

    def observe(self) -> torch.Tensor:
        """Observations ``[B, I, F]`` float32 (the configured features, concatenated)."""
        return self._readout(self.sim.state)[0]

    def commands(self, actions: torch.Tensor, *, keep: bool = True, source: str = SOURCE,
                 field: str = "actions") -> torch.Tensor:
        """Phase commands ``[B, I]`` for action indices ``[B, I]`` at this decision, checked
        against each intersection's actions in this mode (padding excluded) with one host read;
        ``keep`` allows -1 (keep the phase). An adapter passes its own `source` and `field` for
        the error. Under ``phase_duration`` this starts the holds of the intersections that are
        free (`envs.rl.actions`), so call it once per decision, right before `step_commands`."""
        expected = (self.copies, self.num_intersections)
        if not isinstance(actions, torch.Tensor) or actions.dtype == torch.bool or actions.is_floating_point():
            given = str(actions.dtype) if isinstance(actions, torch.Tensor) else type(actions).__name__
            raise CommandError(source, field, given, f"expected an integer tensor of action indices {expected} "
                               "(lists and numpy arrays: the Gymnasium, PettingZoo and SB3 adapters)")
        if tuple(actions.shape) != expected:
            raise CommandError(source, f"{field}.shape", tuple(actions.shape), f"expected {expected}")
        actions = actions.to(device=self.device, dtype=torch.int64)
        bad = (actions < (-1 if keep else 0)) | (actions >= self.num_actions.unsqueeze(0))
        if bool(bad.any()):
            b, i = (int(x) for x in torch.nonzero(bad)[0])
            n = int(self.num_actions[i])
            reason = f"must be -1 (keep) or in [0, {n})" if keep else f"outside the action mask: must be in [0, {n})"
            raise CommandError(source, f"{field}[{b}, {i}] ({self.layout.ids[i]})", int(actions[b, i]), reason)
        return self.actions.commands(actions, self.sim.state)

    def step(self, actions: torch.Tensor):
        """One decision for every agent of every copy.

        Returns ``obs [B, I, F], reward [B, I], terminated [B], truncated [B], info``; see the
        module docstring for autoreset and `info`'s keys."""
        return self.step_commands(self.commands(actions))

    def step_commands(self, command: torch.Tensor):
        """`step` for phase commands already checked by `commands` (an adapter that checked
        its actions its own way)."""
        weights = self.config.reward
        reward = torch.zeros(self.copies, self.num_intersections, device=self.device)
        per_step = [(name, term) for name, term in self.reward_terms.items() if term.per_step]
        for _ in range(self.config.decision_interval_s):
            self.sim.step(command)
            self.probes.observe(self.sim.state)
            if per_step:
                ctx = self.context()
                for name, term in per_step:
                    reward += weights[name] * term.compute(ctx)
        obs, at_decision = self._readout(self.sim.state)  # observations, weighted decision-time terms
        for term in at_decision:
            reward += term
        state = self.sim.state
        demand = self.sim.demand
        drained = (state.entry_ptr.sum(1) >= demand.num_trips) & (
            state.lane_count[:, :-1].sum(1) == 0
        )
        terminated = drained
        truncated = (state.t >= self.config.episode_s) & ~terminated
        done = terminated | truncated
        info = self._info()
        if bool(done.any()):
            info["episode"] = dict(episode_metrics(demand, state, self.params))
            info["episode"]["length_s"] = state.t.to(torch.float32)
            info["_episode"] = done
            if self.autoreset:
                info["final_obs"] = obs.clone()
                info["_final_obs"] = done
                info["final_action_mask"] = info["action_mask"]  # the finished episodes' last state's
                self.restart_copies(done)
                obs = torch.where(done.view(-1, 1, 1), self.observe(), obs)
                info["action_mask"] = self.action_mask  # the new episodes' first decision (no holds)
                info["t"] = self.sim.state.t  # the new episodes' clock, as the observation is theirs
        return obs, reward, terminated, truncated, info

    # ---- helpers --------------------------------------------------------------------------
    def context(self) -> FeatureContext:
        """What observations and rewards are computed from: `feature_base` at the current state."""
        return self.feature_base.at(self.sim.state)

    def _info(self) -> dict:
        return {"action_mask": self.action_mask, "t": self.sim.state.t}

    def describe(self) -> dict:
        """A JSON-able description of the observation and action layout (for export)."""
        offsets, start = {}, 0
        for f in self.features:
            size = f.size(self.layout)
            offsets[f.name] = {"start": start, "size": size, "doc": f.doc}
            start += size
        return {
            "scenario": self.scenario.name,
            "intersections": list(self.layout.ids),
            "observation_size": self.obs_size,
            "observations": offsets,
            "normalise": self.config.normalise,
            "reward": self.config.reward,
            "actions": [
                [int(p) for p in row if p >= 0] for row in self.layout.action_phase.tolist()
            ],
            "decision_interval_s": self.config.decision_interval_s,
            "action_mode": self.config.action_mode,
            "green_durations_s": list(self.config.green_durations_s),
            "episode_s": self.config.episode_s,
            "engine": asdict(self.params),
            "demand": asdict(self.demand_spec),
            "perturbation": asdict(self.perturbation),
            "probes": asdict(self.config.probes),
        }


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A tensor as a numpy array on the host (the adapters' output type)."""
    return x.detach().cpu().numpy()


def _as_dataclass(value, cls, field: str):
    """`value` as a `cls` instance: None -> defaults, an instance as is, a mapping -> fields
    (an unknown key is an error naming it)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                SOURCE, f"{field}.{unknown[0]}", value[unknown[0]], f"unknown key; known: {sorted(known)}"
            )
        return cls(**value)
    raise ConfigError(SOURCE, field, value, f"expected {cls.__name__} or a mapping")


__all__ = ["BatchedSignalEnv", "DEFAULT_OBSERVATIONS", "EnvConfig", "OBSERVATIONS"]
