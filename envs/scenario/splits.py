"""Demand resampling with disjoint train / eval seeds, for honest evaluation.

A `DemandSpec` says how a scenario's demand is resampled; `sample_trips(scenario, spec, split,
index)` draws sample `index` of a split as a `Trips` table (rows sorted by (departure step, flow
index), like ``scenario.trips``), so ``scenario.demand(trips=[...])`` / `demand_for` batch them.

Modes:

- ``"original"``: the scenario's own trips (``scenario.trips``, the same object), for every
  split and index. ``scale`` must be 1 (rescaling needs randomness: use "poisson" or "jitter").
- ``"poisson"``: every flow entry of ``scenario.flows`` becomes a Poisson process over the steps
  at which CityFlow's generator would run it (``startTime..endTime``, whole seconds, cut at the
  horizon, see below): ``Poisson(scale * n)`` vehicles, n the count CityFlow's generator makes
  there (``floor((last - first) / interval) + 1``: its first vehicle leaves at the first step),
  each at a uniformly drawn step of the window, so the mean is the flow file's (``n_steps /
  interval`` was one vehicle low per entry: 800 for syn_1x1's 808). An entry active for a single
  step (``startTime == endTime``, the per-vehicle form of every real dataset and of the
  generators) stands for exactly one vehicle in CityFlow whatever its interval, so it gets
  ``Poisson(scale)`` vehicles at that step: for such files "poisson" is a Poisson bootstrap of the
  departures (the time profile is kept, counts vary). Route and vehicle parameters come from the
  entry.
- ``"jitter"``: the original departures, each shifted by an independent uniform integer in
  ``[-floor(jitter_s), +floor(jitter_s)]``, clipped to ``[0, horizon - 1]`` (only at 0 when no
  horizon applies). With ``scale != 1`` every original trip is first replicated
  ``floor(scale) + Bernoulli(scale - floor(scale))`` times (binomial thinning for scale < 1;
  the smallest-variance rescaling with mean ``scale``), each copy jittered on its own. With
  ``scale == 1`` counts and routes are exactly the original's, and ``jitter_s`` below 1 is refused:
  it would move nothing, every sample of both splits the flow file itself.

Size: a scale whose samples would hold more trips than the engine can number, or whose K samples held
at once (`demand_for`'s indices, `design_samples`' `DESIGN_SAMPLES`, ``check_scale(samples=K)``) trip
tables larger than the machine's memory, is a ConfigError naming ``scale`` before anything is drawn
(`envs.scenario.demand_size`; `check_scale` refuses it without drawing).

Horizon: a scenario loaded with ``horizon=H`` has no trip at or after H, and resampled trips
must not appear there either. `load_scenario` records H in ``scenario.info["horizon"]``, which
is used unless ``horizon=`` is passed; for a `Scenario` built some other way it is inferred from
the flow file and the original trips: if the trips lack some departure the flow file generates, the
load was cut, and H is taken as the earliest such departure (the largest H consistent with the
trips: exact when a departure fell on the true H, else up to one inter-departure gap too long); if
they lack none, no cut applies.

Seeds: ``split_seed("train", k) = 2k`` and ``split_seed("eval", k) = 2k + 1``, so the two splits
never share a seed. The random stream of a sample is ``SeedSequence(seed, spawn_key=(mode,))``:
the same (split, index, mode) always gives the same trips, on any machine; "poisson" and
"jitter" with one seed draw independent streams. The scenario is not part of the seed.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from envs.errors import ConfigError
from envs.scenario.departures import active_steps, departure_count, departure_steps
from envs.scenario.flow_parser import NO_END_TIME
from envs.scenario.demand import NEVER, VEHICLE_FIELDS, Demand, Trips, stack_demand, vehicle_row
from envs.scenario.demand_size import check_sample_size

SOURCE = "<demand spec>"
MODES = ("original", "poisson", "jitter")
SPLITS = ("train", "eval")
MAX_INDEX = 2**62 - 1  # seeds stay below 2**63 (int64)
_MODE_KEY = {mode: k for k, mode in enumerate(MODES)}


@dataclass(frozen=True)
class DemandSpec:
    mode: str = "original"  # "original" | "poisson" | "jitter"
    scale: float = 1.0  # demand multiplier (poisson, jitter)
    jitter_s: float = 30.0  # jitter only (another mode refuses a changed one): maximum shift of a departure, s

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(SOURCE, "mode", self.mode, f"expected one of {MODES}")
        if not finite_number(self.scale) or self.scale <= 0:
            raise ConfigError(SOURCE, "scale", self.scale, "must be a finite number > 0")
        # a shift past int32 departure steps was a ValueError traceback from numpy (1e30) or a ScenarioError
        # naming 'depart' (1e12) after the run had started
        if not finite_number(self.jitter_s) or not 0 <= self.jitter_s < NEVER:
            raise ConfigError(
                SOURCE, "jitter_s", self.jitter_s, f"must be a finite number >= 0 and below {NEVER} (seconds)"
            )
        if self.mode != "jitter" and self.jitter_s != DemandSpec.jitter_s:  # it would be ignored
            raise ConfigError(SOURCE, "jitter_s", self.jitter_s, f"only mode 'jitter' reads it (mode is "
                              f"{self.mode!r}); leave it at {DemandSpec.jitter_s:g}")
        if self.mode == "jitter" and self.scale == 1 and math.floor(self.jitter_s) == 0:
            # it moves no departure: every sample of both splits was the flow file, so a run trained on
            # the very trips it was evaluated on, with none of mode original's notes
            raise ConfigError(
                SOURCE, "jitter_s", self.jitter_s,
                "below 1 s with scale 1, jitter moves no departure (shifts are whole seconds): every sample of "
                "both splits would be the flow file itself, evaluation demand included; use mode='original', "
                "which says so, or jitter_s >= 1",
            )
        if self.mode == "original" and self.scale != 1:
            raise ConfigError(
                SOURCE, "scale", self.scale,
                "mode 'original' replays the file's trips and cannot rescale them; use "
                "mode='poisson' (or 'jitter') to sample a scaled demand",
            )


def finite_number(value) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float, np.integer, np.floating))
        and math.isfinite(value)
    )


def _check_index(index, field: str = "index") -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ConfigError(SOURCE, field, index, "expected an integer sample index")
    if not 0 <= index <= MAX_INDEX:
        raise ConfigError(SOURCE, field, index, f"must be in [0, {MAX_INDEX}]")
    return int(index)


def split_seed(split: str, index: int) -> int:
    """The seed of sample `index` of `split`: 2k for "train", 2k + 1 for "eval" (disjoint)."""
    if split not in SPLITS:
        raise ConfigError(SOURCE, "split", split, f"expected one of {SPLITS}")
    return 2 * _check_index(index) + SPLITS.index(split)


def sample_trips(
    scenario, spec: DemandSpec, split: str, index: int, *, horizon: int | None = None
) -> Trips:
    """Trip table number `index` of `split` under `spec` (see the module doc)."""
    if not isinstance(spec, DemandSpec):
        raise ConfigError(SOURCE, "spec", spec, "expected a DemandSpec")
    seed = split_seed(split, index)
    if spec.mode == "original":
        return scenario.trips
    cut = _horizon(scenario, horizon)
    _check_scale(scenario, spec, cut)  # before drawing: a huge scale was a MemoryError
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_MODE_KEY[spec.mode],)))
    if spec.mode == "poisson":
        entries = _flow_entries(scenario, cut)
        depart, flow_index = _poisson(entries, spec.scale, rng)
        rows = entries.position[flow_index]
        routes, vehicle = entries.routes[rows], entries.vehicle[rows]
    else:
        base = scenario.trips
        rows = _rescale_rows(base.num_trips, spec.scale, rng)
        shift = int(math.floor(spec.jitter_s))
        depart = base.depart[rows] + rng.integers(-shift, shift + 1, size=rows.size)
        depart = np.clip(depart, 0, None if cut is None else cut - 1)
        flow_index = base.flow_index[rows]
        routes, vehicle = base.routes[rows], base.vehicle[rows]
    if depart.size == 0:
        raise ConfigError(
            SOURCE, "scale", spec.scale,
            f"sample {split}#{index} ({spec.mode}) has no trip; raise the scale" + (
                "" if cut is None else f", or simulate longer than its {cut} s (the episode, eval.steps or "
                "export's check.seconds that set it)"),
        )
    order = np.lexsort((flow_index, depart))  # stable: duplicates keep their draw order
    return Trips(
        scenario.trips.source,
        depart[order].astype(np.int64),
        np.ascontiguousarray(routes[order]),
        np.ascontiguousarray(vehicle[order]),
        flow_index[order].astype(np.int64),
    )


def check_scale(scenario, spec: DemandSpec, *, horizon: int | None = None, samples: int = 1) -> None:
    """`sample_trips`'s refusal of a scale whose samples would be too large to draw, without drawing one
    (its mean size is the same for every split and index), so a run can refuse it before any work;
    `samples`: how many distinct samples the caller holds at once (the memory bound counts them all)."""
    if spec.mode != "original":
        _check_scale(scenario, spec, _horizon(scenario, horizon), samples)


def _check_scale(scenario, spec: DemandSpec, cut: int | None, samples: int = 1) -> None:
    """See `envs.scenario.demand_size`: the mean trips of a sample at scale 1 and its route width."""
    if spec.mode == "poisson":
        entries = _flow_entries(scenario, cut)
        check_sample_size(SOURCE, spec.mode, spec.scale, float((entries.rate * entries.steps).sum()),
                          entries.routes.shape[1], samples)
    elif spec.mode == "jitter":
        check_sample_size(SOURCE, spec.mode, spec.scale, scenario.trips.num_trips, scenario.trips.routes.shape[1],
                          samples)


def demand_for(
    scenario, spec: DemandSpec, split: str, indices: list[int], *, horizon: int | None = None
) -> Demand:
    """The batched demand of samples `indices` of `split` (one copy per index)."""
    if isinstance(indices, (str, bytes)) or not hasattr(indices, "__len__") or len(indices) == 0:
        raise ConfigError(SOURCE, "indices", indices, "expected a non-empty list of sample indices")
    check_scale(scenario, spec, horizon=horizon, samples=len(set(indices)))  # stacked together: all of them count
    samples = [sample_trips(scenario, spec, split, k, horizon=horizon) for k in indices]
    return stack_demand(samples, scenario.network)


# --------------------------------------------------------------------------------------------


def _horizon(scenario, horizon: int | None) -> int | None:
    """The step before which every trip departs, or None when nothing cuts the flow file."""
    if horizon is None:
        horizon = scenario.info.get("horizon")  # recorded by load_scenario & co.
    if horizon is not None:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ConfigError(SOURCE, "horizon", horizon, "must be an integer >= 1 (steps)")
        return int(horizon)
    if scenario not in _INFERRED:
        _INFERRED[scenario] = _infer_horizon(scenario)
    return _INFERRED[scenario]


_INFERRED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # scenario -> horizon


def _infer_horizon(scenario) -> int | None:
    """The largest horizon consistent with the original trips: the earliest departure that the
    flow file has and the trips lack (None when they lack none: nothing was cut)."""
    trips = scenario.trips
    last = int(trips.depart.max())
    observed = np.bincount(trips.flow_index, minlength=max(f.index for f in scenario.flows.flows) + 1)
    bound = None
    for flow in scenario.flows.flows:
        count = int(observed[flow.index])
        if flow.end_time == NO_END_TIME:  # endless: look just far enough past the last trip
            steps = departure_steps(flow, last + 3 + math.ceil(flow.interval))
        else:
            steps = departure_steps(flow, None)
        if steps.size > count:
            bound = int(steps[count]) if bound is None else min(bound, int(steps[count]))
    return bound


def _poisson(entries: "_FlowEntries", scale: float, rng) -> tuple[np.ndarray, np.ndarray]:
    first, steps = entries.first, entries.steps
    counts = rng.poisson(scale * entries.rate * steps)
    flow_index = np.repeat(entries.index, counts)
    offset = rng.random(int(counts.sum())) * np.repeat(steps, counts)  # uniform in the window
    depart = np.repeat(first, counts) + offset.astype(np.int64)
    return depart, flow_index


def _rescale_rows(n: int, scale: float, rng) -> np.ndarray:
    """Row ids of the original trips after rescaling: each row floor(scale) + Bernoulli times."""
    whole = math.floor(scale)
    copies = np.full(n, whole, dtype=np.int64) + (rng.random(n) < scale - whole)
    return np.repeat(np.arange(n), copies)


@dataclass(frozen=True)
class _FlowEntries:
    """What "poisson" needs of each flow entry, which depends on the scenario and the horizon
    only: the generator's active steps, the Poisson rate and flow index, and the route (road ids)
    and vehicle rows, found by flow index through `position`."""

    first: np.ndarray
    steps: np.ndarray
    rate: np.ndarray
    index: np.ndarray
    position: np.ndarray
    routes: np.ndarray
    vehicle: np.ndarray


# scenario -> {horizon: _FlowEntries}. Built once per scenario and horizon: the Python loop over
# the entries (thousands in the datasets) took ~10 ms of every sample, ~0.6 s of an autoreset of
# 64 copies, while the random draws take a few ms.
_ENTRIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _flow_entries(scenario, horizon: int | None) -> _FlowEntries:
    by_horizon = _ENTRIES.setdefault(scenario, {})
    if horizon not in by_horizon:
        by_horizon[horizon] = _build_flow_entries(scenario, horizon)
    return by_horizon[horizon]


def _build_flow_entries(scenario, horizon: int | None) -> _FlowEntries:
    flows, network = scenario.flows, scenario.network
    entries = flows.flows
    first = np.empty(len(entries), dtype=np.int64)
    last = np.empty_like(first)
    rate = np.empty(len(entries))
    index = np.empty_like(first)
    road_index = {road_id: r for r, road_id in enumerate(network.road_ids)}
    width = max(len(flow.route) for flow in entries)
    routes = np.full((len(entries), width), -1, dtype=np.int64)
    vehicle = np.zeros((len(entries), len(VEHICLE_FIELDS)), dtype=np.float32)
    position = np.full(max(flow.index for flow in entries) + 1, -1, dtype=np.int64)
    for j, flow in enumerate(entries):  # the windows first, so a bad window is reported first
        first[j], last[j] = active_steps(flow, horizon, flows.source)
        index[j] = flow.index
        # the generator's own count over its active steps (CityFlow's accumulator: the first vehicle at
        # the first step), so the mean is the flow file's; 1 / interval was low by one vehicle a flow
        rate[j] = departure_count(flow, int(first[j]), int(last[j])) / max(int(last[j] - first[j]) + 1, 1)
    for j, flow in enumerate(entries):
        position[flow.index] = j
        routes[j, : len(flow.route)] = [road_index[r] for r in flow.route]
        vehicle[j] = vehicle_row(flow.vehicle)
    built = _FlowEntries(first, np.maximum(last - first + 1, 0), rate, index, position, routes, vehicle)
    for array in vars(built).values():
        array.flags.writeable = False  # shared by every later sample of this scenario
    return built


DESIGN_SAMPLES = 4  # train-split samples a demand-designed plan (Webster's) is designed from


def design_samples(scenario, spec: DemandSpec) -> list:
    """The demand a plan is designed from, as past counts (`Trips` each): samples
    ``0 .. DESIGN_SAMPLES-1`` of the train split, drawn like the evaluated demand (under
    ``original``, the flow file itself). Evaluation never runs them."""
    check_scale(scenario, spec, samples=DESIGN_SAMPLES)  # held together
    return [sample_trips(scenario, spec, "train", s) for s in range(1 if spec.mode == "original" else DESIGN_SAMPLES)]


def design_demand(scenario, spec: DemandSpec):
    """`design_samples` as the `Demand` a demand-designed plan reads (one copy per sample)."""
    return scenario.demand(trips=design_samples(scenario, spec))


__all__ = ["DESIGN_SAMPLES", "DemandSpec", "MODES", "SPLITS", "check_scale", "demand_for", "design_demand",
           "design_samples", "sample_trips", "split_seed"]
