"""The city-day: the 24-hour demand profile and day samples (envs/scenario/day_demand.py), and
incidents at a rate (IncidentSpec.rate_per_hour)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from envs.errors import ConfigError
from envs.incidents.perturbation_specs import stream_rng
from envs.incidents.perturbations import IncidentSpec, Perturbation, sample_incidents
from envs.scenario import scenario_from_dicts
from envs.scenario.day_demand import DAY_PROFILE, PEAK_HOURS, DaySpec, day_profile, day_rates, day_trips
from envs.scenario.demand import VEHICLE_COLUMN
from tests.conftest import REPO_ROOT
from tests.minimal_scenario import minimal_flow, minimal_roadnet
from tests.script_runs import refusal
from tests.scenarios import small_grid

DAY = 86_400


def test_the_profile_integrates_to_the_daily_total():
    # the knots' sum by hand: 0.14+0.09+0.07+0.06+0.08+0.18+0.45+0.85+1.00+0.75+0.62+0.62
    #                       + 0.66+0.63+0.64+0.70+0.84+0.95+0.90+0.66+0.48+0.38+0.30+0.22 = 12.27
    assert sum(DAY_PROFILE) == pytest.approx(12.27)
    # a peak hour of 1000 trips: the day carries 12,270 (periodic linear interpolation between
    # hour midpoints integrates to exactly the knots' sum, in peak hours)
    assert day_rates(DaySpec(), 1000.0).sum() == pytest.approx(12_270.0, rel=1e-9)
    assert day_rates(DaySpec(peak_scale=2.0), 1000.0).sum() == pytest.approx(24_540.0, rel=1e-9)
    # part of the day: 07:00-09:00 is the integral of the lines through (6.5, .45), (7.5, .85),
    # (8.5, 1.0), (9.5, .75): 0.5*(.65+.85)/2 + (.85+1)/2 + 0.5*(1+.875)/2 = 0.375+0.925+0.46875
    morning = DaySpec(start_hour=7, hours=2)
    assert day_rates(morning, 1000.0).sum() == pytest.approx(1768.75, rel=1e-9)


def test_the_profile_peaks_where_documented():
    clock = np.arange(DAY) + 0.5
    rate = day_profile(clock)
    hours = clock / 3600
    morning, evening = hours < 12, hours >= 12
    assert hours[morning][rate[morning].argmax()] == pytest.approx(PEAK_HOURS[0], abs=1 / 3600)
    assert hours[evening][rate[evening].argmax()] == pytest.approx(PEAK_HOURS[1], abs=1 / 3600)
    assert PEAK_HOURS == (8.5, 17.5)
    assert rate.max() == pytest.approx(1.0, abs=1e-3) and hours[rate.argmin()] == pytest.approx(3.5, abs=1 / 3600)
    assert day_profile(np.array([23.5 * 3600 + 1800]))[0] == pytest.approx((0.22 + 0.14) / 2)  # wraps at midnight


def test_day_samples_follow_the_profile_and_the_scenarios_routes():
    scenario = small_grid(rate=300.0, horizon=3600)
    n = scenario.trips.num_trips
    trips = day_trips(scenario, DaySpec(), "eval", 0)
    expected = n * sum(DAY_PROFILE)
    assert abs(trips.num_trips - expected) < 4.5 * math.sqrt(expected)  # Poisson, 4.5 sigma
    per_hour = np.bincount(trips.depart // 3600, minlength=24)
    assert per_hour.argmax() in (8, 17) and per_hour.argmin() in (2, 3, 4)
    assert np.all(np.diff(trips.depart) >= 0) and trips.depart.max() < DAY
    routes = {tuple(r) for r in scenario.trips.routes.tolist()}
    assert {tuple(r) for r in trips.routes.tolist()} <= routes
    again = day_trips(scenario, DaySpec(), "eval", 0)
    assert np.array_equal(again.depart, trips.depart) and np.array_equal(again.routes, trips.routes)
    train = day_trips(scenario, DaySpec(), "train", 0)
    assert not (train.num_trips == trips.num_trips and np.array_equal(train.depart, trips.depart))


def test_every_trip_of_the_pattern_is_drawn_its_route_and_vehicle_kept_together():
    # the pattern's 22 trips: 21 of flow 0 (w_a -> b_e every 5 s, 0..100 s) and, last of all, the one
    # of flow 1 (-> b_n at 200 s) with a vehicle of its own; ~270 day trips each draw one uniformly
    flow = minimal_flow()
    flow[1].update(startTime=200, endTime=200)
    flow[1]["vehicle"] = dict(flow[1]["vehicle"], length=8.0)
    scenario = scenario_from_dicts(minimal_roadnet(), flow)
    assert scenario.trips.num_trips == 22 and scenario.trips.flow_index[-1] == 1
    trips = day_trips(scenario, DaySpec(), "train", 0)
    last = trips.flow_index == 1
    assert 0 < last.sum() < 0.15 * trips.num_trips  # 1 in 22 of the draws, give or take
    b_n = scenario.network.road_ids.index("b_n")
    length = VEHICLE_COLUMN["length"]
    assert np.all((trips.routes[:, 2] == b_n) == last) and np.all((trips.vehicle[:, length] == 8.0) == last)


@pytest.mark.parametrize("field, value", [("peak_scale", 0), ("start_hour", 24), ("hours", 25), ("hours", 0)])
def test_bad_day_specs_name_the_field_and_value(field, value):
    with pytest.raises(ConfigError, match=rf"day\.{field}.*{value}"):
        DaySpec(**{field: value})


@pytest.mark.parametrize("hours, steps", [(1.1, 3960), (0.55, 1980), (2.01, 7236), (24, 86400)])
def test_day_spans_of_whole_seconds_are_taken(hours, steps):
    assert DaySpec(hours=hours).steps == steps  # 1.1 * 3600 is 3960.0000000000005 in floats
    with pytest.raises(ConfigError, match=r"day\.hours.*whole number of seconds"):
        DaySpec(hours=hours + 0.5 / 3600)


def _rate_perturbation(rate: float) -> Perturbation:
    return Perturbation(name="day", seed=3, incidents=IncidentSpec(rate_per_hour=rate, start_s=[0, DAY - 1],
                                                                   position="random"))


def test_the_incident_rate_gives_the_expected_count_within_a_poisson_interval():
    network = small_grid().network
    copies, rate = 40, 25.0
    counts = [len(sample_incidents(_rate_perturbation(rate), network, "eval", k)) for k in range(copies)]
    mean = rate * (DAY - 1) / 3600 * copies  # 23,999.33 expected incidents over the 40 copies
    assert abs(sum(counts) - mean) < 4.0 * math.sqrt(mean)
    assert min(counts) > 0 and len(set(counts)) > 1  # a Poisson number per copy, not a constant
    one = sample_incidents(_rate_perturbation(rate), network, "eval", 0)
    assert all(0 <= i.start < DAY and i.end - i.start == 900 and i.position is not None for i in one)
    assert not sample_incidents(_rate_perturbation(0.0), network, "eval", 0)
    assert _rate_perturbation(0.0).is_clean and not _rate_perturbation(1.0).is_clean


def test_rate_incidents_of_evaluation_copies_never_come_from_training_seeds():
    network = small_grid().network
    drawn = {split: [[(i.lane, i.start) for i in sample_incidents(_rate_perturbation(2.0), network, split, k)]
                     for k in range(30)] for split in ("train", "eval")}
    for evaluation in drawn["eval"]:
        assert all(evaluation != training for training in drawn["train"])
    # each copy's incidents are its own stream's (split seed 2k + 1 for eval copy k): the count first
    rng = stream_rng(_rate_perturbation(2.0), "eval", 4, "incidents")
    assert len(drawn["eval"][4]) == rng.poisson(2.0 * (DAY - 1) / 3600)


def test_count_semantics_are_unchanged_and_exclusive_with_a_rate():
    network = small_grid().network
    perturbation = Perturbation(seed=1, incidents=IncidentSpec(count=2, start_s=[100, 200]))
    got = sample_incidents(perturbation, network, "eval", 5)
    rng = stream_rng(perturbation, "eval", 5, "incidents")  # what the count mode always drew
    lanes = rng.choice(perturbation.incidents.lane_pool(network), size=2, replace=False)
    starts = rng.integers(100, 201, size=2)
    assert [(i.lane, i.start) for i in got] == list(zip(lanes.tolist(), starts.tolist()))
    with pytest.raises(ConfigError, match=r"incidents\.count.*3"):
        IncidentSpec(count=3, rate_per_hour=2.0)
    with pytest.raises(ConfigError, match=r"incidents\.rate_per_hour.*-1"):
        IncidentSpec(rate_per_hour=-1.0)
    # a rate over one onset time has a window of no length: it would draw no incident, silently
    with pytest.raises(ConfigError, match=r"incidents\.start_s.*600.*\[low, high\] window"):
        IncidentSpec(rate_per_hour=25.0, start_s=600)
    assert IncidentSpec(rate_per_hour=0.0, start_s=600).none  # no incident asked for, none drawn


@pytest.mark.parametrize("flag, value", [("--interval-s", "0"), ("--precision", "1.5"), ("--precision", "nan"),
                                         ("--copies", "0"), ("--train-hours", "-1"), ("--hours", "25"),
                                         ("--train-start-hour", "24"), ("--peak-scale", "0"),
                                         # named incidents.* / probes.* after the training scenario was built
                                         ("--rate-per-hour", "-5"), ("--duration-s", "0"), ("--probe-p", "1.5"),
                                         ("--position", "1.5"), ("--placement", "nowhere"), ("--controller", "bogus"),
                                         # the probe-fusion detector with no probes ran as the lane-only gap rule
                                         ("--probe-p", "0")])
def test_the_city_day_benchmark_refuses_a_bad_value_in_one_line_before_any_work(flag, value):
    """--interval-s 0 ended in a ZeroDivisionError after the training run; --precision 1.5 ran,
    its calibration silently falling back to the best F1."""
    done = subprocess.run([sys.executable, "benchmarks/city_day.py", "--scenario", "grid_1x1", flag, value],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"})
    assert done.returncode == 2, done.stderr[-2000:]
    integer = flag in ("--interval-s", "--copies")
    text = flag in ("--placement", "--controller")
    shown = value if integer else repr(value) if text else repr(float(value))
    # the day options were named by DaySpec's own fields (day.hours), which the script has no flag for
    assert done.stderr.strip().splitlines()[0].startswith(f"error: benchmarks/city_day.py: field '{flag}' = {shown}: ")
    assert len(done.stderr.strip().splitlines()) == 1
    if flag == "--probe-p" and value == "0":
        assert "reads probe reports" in done.stderr and "(0, 1]" in done.stderr, done.stderr
    if flag == "--precision" or integer:
        assert done.stderr.strip().endswith("must be in [0, 1]" if flag == "--precision" else "must be >= 1")
    assert done.stdout == ""



SHORT = ["--hours", "0.01", "--train-hours", "0.01"]  # were the checks to pass, the runs stay short


@pytest.mark.parametrize("flags, start", [
    # a ValueError traceback from numpy's SeedSequence, after the options were checked
    (["--scenario", "grid_1x1", "--incident-seed", "-1", *SHORT],
     "field '--incident-seed' = -1: must be an integer >= 0"),
    # ignored by a dataset (its JSON line said scenario_seed 3) and by a generated preset (the data directory)
    (["--scenario", "hangzhou_4x4", "--scenario-seed", "3", *SHORT],
     "field '--scenario-seed' = 3: only a generated preset draws its demand from it"),
    (["--scenario", "grid_1x1", "--data-dir", "/nowhere", *SHORT],
     "field '--data-dir' = '/nowhere': 'grid_1x1' is generated and reads no dataset"),
    # a calibration run without incidents calibrated the detector on nothing and only logged
    # "calibrated on 0 training incidents"
    (["--scenario", "grid_1x1", "--rate-per-hour", "0", *SHORT],
     "field '--rate-per-hour' = 0.0: the calibration run would draw no incident"),
    (["--scenario", "grid_1x1", "--train-rate-per-hour", "0", *SHORT],
     "field '--train-rate-per-hour' = 0.0: the calibration run would draw no incident"),
    (["--scenario", "grid_1x1", "--train-rate-per-hour", "-1", *SHORT],
     "field '--train-rate-per-hour' = -1.0: "),
])
def test_the_city_day_benchmark_refuses_what_it_would_ignore_or_crash_on(flags, start, capsys, monkeypatch):
    error = refusal("city_day.py", flags, capsys, monkeypatch, only_line=True)
    assert error.startswith(f"error: benchmarks/city_day.py: {start}"), error


def test_a_calibration_run_that_drew_no_incident_is_refused_naming_its_flags(capsys, monkeypatch):
    # at 0.01 incidents/h over 36 s its Poisson draw is 0; was logged "calibrated on 0 training incidents"
    error = refusal("city_day.py", ["--scenario", "grid_1x1", "--train-rate-per-hour", "0.01", *SHORT], capsys,
                    monkeypatch)  # after the training run's progress lines
    assert error == ("error: benchmarks/city_day.py: field '--train-hours' = 0.01: the calibration run (1 x 0.01 h "
                     "at 0.01 incidents/h) drew no incident: nothing to calibrate the detector on; give more "
                     "--train-hours or --train-copies, or a higher --train-rate-per-hour"), error


def test_a_perturbation_refuses_a_negative_seed_when_built():
    with pytest.raises(ConfigError, match="must be an integer >= 0") as error:  # numpy's ValueError at the first draw
        Perturbation(seed=-1)
    assert (error.value.field, error.value.value) == ("seed", -1)


def test_a_day_without_incidents_says_its_scores_are_undefined():
    """rate 0: accuracy and recall are 0/0, null in the JSON, and the output says so in words."""
    done = subprocess.run([sys.executable, "benchmarks/city_day.py", "--scenario", "grid_1x1", "--rate-per-hour", "0",
                           "--train-rate-per-hour", "25", "--hours", "0.1", "--train-hours", "0.1"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout.strip().splitlines()[-1])
    assert record["incidents"] == 0 and record["reports"] == 0
    assert record["accuracy"] is None and record["recall"] is None
    assert record["scores_note"] == "no incidents: precision/recall undefined (no incidents and no reports)"
    # the command that re-runs it (the recorded days had none to re-run them by)
    assert record["command"] == ("python benchmarks/city_day.py --scenario grid_1x1 --rate-per-hour 0 "
                                 "--train-rate-per-hour 25 --hours 0.1 --train-hours 0.1")
    assert "no incidents: precision/recall undefined" in done.stderr
