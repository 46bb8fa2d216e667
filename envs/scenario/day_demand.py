"""A city-day: a scenario's one-hour origin-destination pattern spread over 24 hours by a
time-of-day profile (night low, a morning and an evening peak).

`DAY_PROFILE` gives the traffic of each hour relative to the busiest (1.0), at the hour's
midpoint; between midpoints the rate is linear, and it wraps from 23:30 to 00:30, so the rate is
a periodic piecewise-linear curve whose integral over the day is exactly the knots' sum in peak
hours (12.27 for these knots). Peaks: **08:30** (1.00) and **17:30** (0.95); minimum 0.06 at
03:30; a daytime plateau around 0.60-0.70. *Assumption*, not a measured count: the shape of the
typical urban weekday hourly volume distributions in traffic-monitoring practice (e.g. the US
FHWA Traffic Monitoring Guide's urban weekday profiles: about 1% of the daily traffic per night
hour, 7-8% in each peak hour): here the peak *rate* (08:30) is 1 / 12.27 = 8.1% of the day per
hour; the busiest hour, 07:52-08:52 around the peak of the linear curve, carries 0.953 of that
(7.8% of the day) and a night hour 0.5-1.1%.

`day_trips(scenario, spec, split, index)`: the scenario's own trips (``scenario.trips``, e.g.
``grid_16x8``'s generated hour or ``manhattan_28x7``'s SUMO routes for one hour) are the
*origin-destination pattern*: each day trip takes the route and vehicle of a trip drawn
uniformly from them. The departures are a Poisson process of rate
``peak_scale * N * profile(t) / 3600`` per second, N the scenario's trips in its hour: the
scenario's hour is taken as the peak *rate* (scale 1), so the busiest hour holds 0.953 N. Its time profile *within* the
hour is dropped (grid_16x8's own 10-minute peak is not repeated 24 times). Seeds: per split and
index, as every demand sample (`envs.scenario.splits.split_seed`), on a stream of its own.

`DaySpec` (checked; a bad field is a `ConfigError` naming ``day.<field>`` and the value):
``peak_scale`` (> 0), ``start_hour`` (in [0, 24): the clock time of step 0) and ``hours`` (in
(0, 24]: the simulated span).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.errors import ConfigError
from envs.scenario.demand import Trips
from envs.scenario.splits import finite_number, split_seed

SOURCE = "<day demand>"
DAY_S = 86_400
DAY_STREAM = 7  # spawn key of the day-demand stream (the resampling modes use 0-2)
# relative traffic at each hour's midpoint (00:30, 01:30, ... 23:30); the busiest hour is 1.0
DAY_PROFILE = (
    0.14, 0.09, 0.07, 0.06, 0.08, 0.18, 0.45, 0.85, 1.00, 0.75, 0.62, 0.62,
    0.66, 0.63, 0.64, 0.70, 0.84, 0.95, 0.90, 0.66, 0.48, 0.38, 0.30, 0.22,
)
PEAK_HOURS = (8.5, 17.5)  # the two local maxima of DAY_PROFILE (clock hours)


@dataclass(frozen=True)
class DaySpec:
    peak_scale: float = 1.0  # the peak rate (08:30), in units of the scenario's own hour
    start_hour: float = 0.0  # clock time (hours) of step 0
    hours: float = 24.0  # simulated span (hours)

    def __post_init__(self) -> None:
        if not finite_number(self.peak_scale) or self.peak_scale <= 0:
            raise ConfigError(SOURCE, "day.peak_scale", self.peak_scale, "must be a number > 0")
        if not finite_number(self.start_hour) or not 0.0 <= self.start_hour < 24.0:
            raise ConfigError(SOURCE, "day.start_hour", self.start_hour, "must be a clock hour in [0, 24)")
        if not finite_number(self.hours) or not 0.0 < self.hours <= 24.0 or (
                abs(self.hours * 3600 - round(self.hours * 3600)) > 1e-6):  # 1.1 h is 3960.0000000000005 s
            raise ConfigError(SOURCE, "day.hours", self.hours, "must be in (0, 24] and a whole number of seconds")

    @property
    def steps(self) -> int:
        return int(round(self.hours * 3600))


def day_profile(clock_s: np.ndarray) -> np.ndarray:
    """Relative traffic (busiest hour = 1) at clock times `clock_s` (seconds since midnight,
    any value: the day wraps), linear between hour midpoints (module doc)."""
    hours = np.mod(np.asarray(clock_s, dtype=np.float64) / 3600.0, 24.0)
    knots_at = np.arange(-0.5, 25.0)  # 23:30 of the day before .. 00:30 of the next
    knots = np.concatenate([DAY_PROFILE[-1:], DAY_PROFILE, DAY_PROFILE[:1]])
    return np.interp(hours, knots_at, knots)


def day_rates(spec: DaySpec, peak_trips_per_hour: float) -> np.ndarray:
    """``[steps]`` expected departures per second of the simulated span (at each second's midpoint)."""
    clock = spec.start_hour * 3600.0 + np.arange(spec.steps) + 0.5
    return spec.peak_scale * peak_trips_per_hour * day_profile(clock) / 3600.0


def day_trips(scenario, spec: DaySpec, split: str, index: int) -> Trips:
    """Day sample `index` of `split` over ``spec``'s span (module doc), as a `Trips` table sorted
    by (departure, flow index)."""
    base = scenario.trips
    rng = np.random.default_rng(np.random.SeedSequence(split_seed(split, index), spawn_key=(DAY_STREAM,)))
    counts = rng.poisson(day_rates(spec, base.num_trips))
    depart = np.repeat(np.arange(spec.steps, dtype=np.int64), counts)
    if depart.size == 0:
        raise ConfigError(SOURCE, "day.peak_scale", spec.peak_scale, f"day {split}#{index} has no trip")
    rows = rng.integers(0, base.num_trips, size=depart.size)
    order = np.lexsort((base.flow_index[rows], depart))
    rows, depart = rows[order], depart[order]
    return Trips(f"{base.source}+day", depart, np.ascontiguousarray(base.routes[rows]),
                 np.ascontiguousarray(base.vehicle[rows]), base.flow_index[rows].astype(np.int64))


__all__ = ["DAY_PROFILE", "DAY_S", "DaySpec", "PEAK_HOURS", "day_profile", "day_rates", "day_trips"]
