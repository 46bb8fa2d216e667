"""`EnvConfig`: what a `BatchedSignalEnv` is asked for, and the Hydra ``env`` group's schema; and
the checks of the env's arguments that train.py's config check shares (reward weights, the demand
pool) or that only the env sees (the observation list's type, a loaded Scenario beside loading
options)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Dict, Tuple

from envs.errors import ConfigError
from envs.scenario import reads_no_dataset, unread_seed
from envs.scenario.network import check_device
from envs.incidents.probes import ProbeSpec
from envs.rl.features import REWARDS
from envs.rl.actions import DEFAULT_ACTION_MODE, DEFAULT_GREEN_DURATIONS_S, check_action_config, check_durations_read
from envs.scenario.splits import SPLITS, DemandSpec

SOURCE = "<env>"
# The defaults follow the learning ablation (docs/training.md, "Against the best classical
# controller"): lane totals plus the vehicles within 100 m of the stop line, moving and halting,
# decided every 5 s, took 14 s off hangzhou_4x4's travel time against lane totals every 10 s, as
# much as the per-movement features, and are made of what detectors count (so they export).
DEFAULT_OBSERVATIONS = ("phase_onehot", "time_in_phase", "lane_count", "lane_halting", "approach_moving",
                        "approach_halting")
DEFAULT_DECISION_INTERVAL_S = 5


@dataclass(frozen=True)
class EnvConfig:
    """What a `BatchedSignalEnv` is asked for, and the Hydra ``env`` group's schema: these
    defaults are the configs' defaults (configs/env/ holds only what a preset changes)."""

    copies: int = 1  # B copies of the scenario stepped together
    decision_interval_s: int = DEFAULT_DECISION_INTERVAL_S  # simulated seconds between decisions (whole, >= 1)
    action_mode: str = DEFAULT_ACTION_MODE  # phase | keep_or_switch | phase_duration (envs/rl/actions.py)
    green_durations_s: Tuple[int, ...] = DEFAULT_GREEN_DURATIONS_S  # phase_duration's green choices
    episode_s: int = 3600  # reaching it is truncation (bootstrapped)
    observations: Tuple[str, ...] = DEFAULT_OBSERVATIONS  # envs/rl/features.py
    # {term: weight}, envs/rl/features.py; a config override merges (weight 0 drops a term)
    reward: Dict[str, float] = field(default_factory=lambda: {"queue": 1.0})
    normalise: bool = True  # observation features divided by their documented scales
    demand: DemandSpec = field(default_factory=DemandSpec)  # how episodes draw their demand
    # 0: every episode of every copy draws a new sample (its own demand tables); K > 0: episodes
    # cycle through K samples, so a large batch holds K samples' tables (envs/rl/episode_demand.py)
    demand_pool: int = 0
    # probe vehicles (envs/incidents/probes.py): what the probe_* features read; p = 0: none
    probes: ProbeSpec = field(default_factory=ProbeSpec)
    # which demand samples episodes draw: "train" or "eval"; not a config key (training always
    # draws "train", evaluation reads the "eval" split itself)
    split: str = field(default="train", metadata={"omegaconf_ignore": True})

    def validate(self) -> None:
        copies = self.copies
        if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
            raise ConfigError(SOURCE, "copies", copies, "need an integer B >= 1")
        for name in ("decision_interval_s", "episode_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(SOURCE, name, value, "must be an integer >= 1 (seconds)")
        if self.episode_s % self.decision_interval_s:
            raise ConfigError(
                SOURCE, "episode_s", self.episode_s,
                f"must be a multiple of decision_interval_s ({self.decision_interval_s})",
            )
        check_demand_pool(self.demand_pool, self.demand.mode)
        if self.split not in SPLITS:
            raise ConfigError(SOURCE, "split", self.split, f"expected one of {list(SPLITS)}")
        check_action_config(self.action_mode, self.green_durations_s, SOURCE)
        check_durations_read(self.action_mode, self.green_durations_s, SOURCE)


def check_demand_pool(pool, mode: str, source: str = SOURCE) -> None:
    """``demand_pool``: a whole number >= 0, and 0 under demand mode original."""
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 0:
        raise ConfigError(source, "demand_pool", pool, "must be an integer >= 0 (0: a new sample per episode)")
    if pool and mode == "original":  # every sample is the flow file: a pool changed nothing
        raise ConfigError(source, "demand_pool", pool, "demand mode original replays one flow file in every "
                          "episode; a pool cycles samples of poisson or jitter demand")


def observation_names_arg(observations) -> tuple:
    """The ``observations`` argument, a list or tuple of feature names, as a tuple."""
    if isinstance(observations, str) or not isinstance(observations, Sequence):
        raise ConfigError(SOURCE, "observations", observations,
                          "expected a list of feature names (envs/rl/features.py), e.g. ['lane_count']")
    return tuple(observations)


def check_loaded_scenario(scenario, device, data_dir, scenario_seed) -> None:
    """A `Scenario` object is already loaded, on its network's device: a `device` given beside it
    must be that one (never a silent run elsewhere), and `data_dir` and `scenario_seed`, which
    apply to loading a scenario by name, must be left unset."""
    if device is not None:
        want, have = check_device(device, SOURCE), scenario.network.device
        if want.type != have.type or (want.index is not None and want.index != have.index):
            raise ConfigError(SOURCE, "device", str(device), f"the scenario's network is on {have}: "
                              "load it on this device, or pass the scenario's name")
    for name, value, unset in (("data_dir", data_dir, None), ("scenario_seed", scenario_seed, 0)):
        if value != unset:
            raise ConfigError(SOURCE, name, value, "applies to a scenario loaded by name; this Scenario "
                              "object is already loaded (pass its name, or load it with this option)")


def check_loading_options(name, data_dir, scenario_seed) -> None:
    """`data_dir` and `scenario_seed` beside a scenario loaded by name: each must be one that name
    reads (a data directory for a dataset or SUMO scenario, a seed for a generated preset), else
    it was ignored silently."""
    no_dataset = reads_no_dataset(name)
    if data_dir is not None and no_dataset:
        raise ConfigError(SOURCE, "data_dir", data_dir, f"{name!r} is {no_dataset} and reads no dataset")
    unread = unread_seed(name, scenario_seed)
    if unread:
        raise ConfigError(SOURCE, "scenario_seed", scenario_seed,
                          f"{unread} (each episode's demand: the demand argument)")


def check_reward_weights(weights, source: str = "<env>") -> dict[str, float]:
    """Reward config: a name, a list of names (weight 1 each) or a ``{name: weight}`` mapping."""
    if isinstance(weights, str):
        weights = {weights: 1.0}
    elif isinstance(weights, Mapping):
        weights = dict(weights)
    elif not isinstance(weights, Sequence):
        raise ConfigError(source, "reward", weights, "expected a term name, a list of names or {name: weight}")
    else:
        names = list(weights)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ConfigError(source, "reward", repeated[0], "listed twice; give a weight instead")
        weights = {name: 1.0 for name in names}
    if not weights:
        raise ConfigError(source, "reward", weights, "need at least one reward term")
    out = {}
    for name, weight in weights.items():
        if name not in REWARDS:
            raise ConfigError(source, "reward", name, "unknown reward term; known: " + ", ".join(sorted(REWARDS)))
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(source, f"reward.{name}", weight, "weight must be a finite number")
        out[name] = float(weight)
    if not any(out.values()):  # a zero weight drops a term: every one dropped left a reward of 0 always
        raise ConfigError(source, "reward", out, "every weight is 0: keep at least one term with a weight")
    return out
