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
