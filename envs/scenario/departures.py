"""When a flow entry's vehicles depart: CityFlow's vehicle generator (``Flow::nextStep``)
reproduced, so the number and timing of departures match CityFlow's with a 1 s step."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from envs.errors import ScenarioError
from envs.scenario.flow_parser import NO_END_TIME
from envs.scenario.spec import FlowSpec

STEP_SECONDS = 1.0
_EXACT_FLOAT_LIMIT = 2**53  # integers below this are exact in a float64
_INT64_SAFE_LIMIT = 2**62
# Vehicles one flow file may create per copy (docs/reliability.md). The datasets create a few
# thousand; ten million trips already take gigabytes per copy once routes are padded, and a
# mistyped interval (1e-6 for 1e6) would otherwise allocate for minutes before a MemoryError.
MAX_VEHICLES = 10_000_000


def departure_steps(
    flow: FlowSpec, horizon: int | None = None, *, source: str = "<flow>"
) -> np.ndarray:
    """Steps (0-based, 1 s each) at which CityFlow would create this flow's vehicles.

    CityFlow keeps an accumulator that starts at `interval`; at each step whose time t satisfies
    ``startTime <= t <= endTime`` (or no end when endTime == -1) it emits a vehicle while the
    accumulator >= interval (subtracting interval each time), then adds the step length. Steps
    >= `horizon` are excluded. Several vehicles can share a step when interval < 1.
    """
    first, last = active_steps(flow, horizon, source)
    if last < first:
        return np.empty(0, dtype=np.int64)
    _check_count(flow, approximate_count(flow, first, last), source)
    if first == last:
        # One active step (the per-vehicle form startTime == endTime): the accumulator starts full,
        # so exactly one vehicle leaves, whatever the interval.
        return np.array([first], dtype=np.int64)
    steps = _periodic_steps_exact(flow.interval, first, last)
    if steps is None:
        steps = replay_accumulator(flow.interval, first, last)
    return steps


def active_steps(flow: FlowSpec, horizon: int | None, source: str) -> tuple[int, int]:
    """First and last step (inclusive) at which the generator runs; last < first when none."""
    if horizon is not None and (
        isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer))
    ):
        raise ScenarioError(
            source, "horizon", horizon, "horizon must be an integer number of steps"
        )
    if flow.end_time == NO_END_TIME:
        if horizon is None:
            raise ScenarioError(
                source,
                f"[{flow.index}].endTime",
                flow.end_time,
                "endTime -1 (no end) needs a horizon to bound the departures",
            )
        last = int(horizon) - 1
    else:
        last = math.floor(flow.end_time)
        if horizon is not None:
            last = min(last, int(horizon) - 1)
    # The generator's clock starts at 0 and ticks whole seconds; it is active from startTime on.
    first = max(0, math.ceil(flow.start_time))
    return first, last


def approximate_count(flow: FlowSpec, first: int, last: int) -> int:
    """How many vehicles `departure_steps` creates between steps `first` and `last`, computed
    without creating them (exact where the closed form is; within one otherwise): what the
    refusal of a flow that would create too many vehicles reads, before anything is allocated."""
    if last < first:
        return 0
    if first == last:
        return 1
    num, den = flow.interval.as_integer_ratio()
    return (last - first) * den // num + 1


def departure_count(flow: FlowSpec, first: int, last: int) -> int:
    """Exactly how many vehicles `departure_steps` creates between steps `first` and `last`
    (what a resampled demand's mean must equal). Where the closed form may round differently
    from CityFlow's float accumulator (an interval such as 0.1 or 1/3, not a short binary
    fraction) the accumulator is replayed: the closed form was one vehicle off per flow there."""
    count = approximate_count(flow, first, last)
    num, den = flow.interval.as_integer_ratio()
    if first >= last or count > MAX_VEHICLES or num + den < _EXACT_FLOAT_LIMIT:
        return count
    return len(replay_accumulator(flow.interval, first, last))


def _check_count(flow: FlowSpec, count: int, source: str, total: int | None = None) -> None:
    if count > MAX_VEHICLES or (total is not None and total > MAX_VEHICLES):
        scope = f"flow [{flow.index}] alone" if total is None else f"the flows up to [{flow.index}]"
        raise ScenarioError(
            source, f"[{flow.index}].interval", flow.interval,
            f"{scope} would create {total or count:,} vehicles (interval {flow.interval:g} s from "
            f"{flow.start_time:g} s to {flow.end_time:g} s); gridlight's limit is {MAX_VEHICLES:,} per flow file",
        )


def check_departure_counts(flows: Iterable[FlowSpec], horizon: int | None, source: str) -> int:
    """The number of vehicles the flows create before `horizon`, refused before anything is
    allocated when one flow, or all of them, would exceed `MAX_VEHICLES`."""
    total = 0
    for flow in flows:
        first, last = active_steps(flow, horizon, source)
        count = approximate_count(flow, first, last)
        total += count
        _check_count(flow, count, source, total if total > count else None)
    return total


def _periodic_steps_exact(interval: float, first: int, last: int) -> np.ndarray | None:
    """Closed form of the accumulator, or None when float rounding could make it differ.

    In exact arithmetic vehicle n (0-based) leaves at active step ceil(n * interval). A float
    interval is num/den with den a power of two; while num + den < 2**53 every accumulator value
    CityFlow computes (a multiple of 1/den below interval + 1) is exact, so integer arithmetic on
    num/den reproduces it bit for bit.
    """
    num, den = interval.as_integer_ratio()
    if num + den >= _EXACT_FLOAT_LIMIT:
        return None
    span = last - first
    count = span * den // num + 1  # n with ceil(n * num / den) <= span
    if count * num >= _INT64_SAFE_LIMIT:
        return None
    n = np.arange(count, dtype=np.int64)
    return first + (-((-n * num) // den))  # ceil division in integers


def replay_accumulator(interval: float, first: int, last: int) -> np.ndarray:
    """Step-by-step float replay of CityFlow's generator (used when the closed form may round)."""
    steps: list[int] = []
    accumulator = interval
    for step in range(first, last + 1):
        while accumulator >= interval:
            steps.append(step)
            accumulator -= interval
        accumulator += STEP_SECONDS
    return np.asarray(steps, dtype=np.int64)


def count_departures(
    flows: Iterable[FlowSpec], horizon: int | None = None, *, source: str = "<flow>"
) -> int:
    """Total vehicles the flows create before `horizon` (all of them when None)."""
    return sum(len(departure_steps(flow, horizon, source=source)) for flow in flows)
