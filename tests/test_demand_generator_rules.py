"""Rules of the demand generators that their docstrings state and the counts do not show: the
rush-hour profile is sampled at each second's midpoint and overlapping peaks combine by maximum
(so `peak_rate` is the highest rate); turns whose ratios are all zero at a road are taken with
equal probability (a T-junction without the movement the ratios ask for)."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from envs.scenario.demand_generators import peak_rate_profile, uniform_demand
from tests.minimal_scenario import minimal_roadnet


def test_the_profile_is_taken_at_each_seconds_midpoint() -> None:
    # one peak at t = 0 with a 1 s standard deviation, base 0: the rate at t = 0.5, 1.5, 2.5
    profile = peak_rate_profile(3, 0.0, 3600.0, (0.0,), 1.0)
    assert profile == pytest.approx([3600 * math.exp(-0.5 * t**2) for t in (0.5, 1.5, 2.5)], rel=1e-12)


def test_overlapping_peaks_combine_by_maximum_not_sum() -> None:
    # two peaks 100 s apart, 200 s wide: between them each alone is at ~97% of the peak
    profile = peak_rate_profile(3600, 100.0, 400.0, (1000.0, 1100.0), 200.0)
    assert profile.max() <= 400.0
    # second 1049 (midpoint 1049.5) is 49.5 s from the first peak and 50.5 s from the second
    assert profile[1049] == pytest.approx(100.0 + 300.0 * math.exp(-0.5 * (49.5 / 200.0) ** 2), rel=1e-12)


def test_a_road_without_any_movement_of_nonzero_ratio_picks_its_movements_evenly() -> None:
    # the minimal roadnet: w_a -> a_b (straight only), then a_b -> b_e (straight) or b_n (left);
    # with right turns only asked for, neither exists, so both exits are taken alike
    flow = uniform_demand(minimal_roadnet(), rate_per_origin=3600, horizon=800, turn_ratios=(0, 0, 1), seed=4)
    exits = Counter(entry["route"][-1] for entry in flow)
    assert set(exits) == {"b_e", "b_n"}
    n = len(flow)
    assert abs(exits["b_e"] - n / 2) < 5 * math.sqrt(n / 4)
    assert all(entry["route"][:2] == ["w_a", "a_b"] for entry in flow)
    assert np.all(np.diff([entry["startTime"] for entry in flow]) >= 0)
