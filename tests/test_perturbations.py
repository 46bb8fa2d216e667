"""Demand surges, bad perturbation configs (which name the field), and perturbations through the
engine, `evaluate.py` and the training environment (envs/incidents/perturbations.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.classical import MaxPressure
from envs.engine import EngineParams, Simulator
from envs.errors import ConfigError
from envs.evaluation.report import PRIMARY, degradation_table
from envs.incidents.perturbation_specs import stream_rng
from envs.incidents.perturbations import (
    IncidentSpec,
    Perturbation,
    SurgeSpec,
    perturbation_from_config,
    sample_incidents,
    surge_trips,
    with_incidents,
)
from tests.minimal_scenario import assert_names_everything
from tests.scenarios import small_grid


def test_a_surge_scales_departures_inside_its_window_only():
    scenario = small_grid(2, 2, rate=1200.0, horizon=1800, seed=0)
    trips = scenario.trips
    spec = Perturbation(seed=1, surge=SurgeSpec(scale=2.5, start_s=600, end_s=1200))
    surged = surge_trips(trips, spec, "eval", 0)
    inside = lambda d: ((d >= 600) & (d < 1200)).sum()  # noqa: E731
    assert (surged.depart[(surged.depart < 600) | (surged.depart >= 1200)]
            == trips.depart[(trips.depart < 600) | (trips.depart >= 1200)]).all()
    assert 2.3 < inside(surged.depart) / inside(trips.depart) < 2.7
    assert (np.diff(surged.depart) >= 0).all()
    sim = Simulator(scenario.network, scenario.demand(trips=[surged]))
    sim.run(200)  # the surged table is a valid demand


def test_a_ramped_surge_follows_its_trapezoid_and_a_step_surge_is_unchanged_by_ramp_zero():
    scenario = small_grid(2, 2, rate=1200.0, horizon=1800, seed=0)
    trips = scenario.trips
    ramped = SurgeSpec(scale=3.0, start_s=0, end_s=1800, ramp_s=600)
    assert ramped.factor(np.array([-1, 0, 300, 600, 900, 1200, 1500, 1800])).tolist() == [
        1.0, 1.0, 2.0, 3.0, 3.0, 3.0, 2.0, 1.0]
    surged = surge_trips(trips, Perturbation(seed=2, surge=ramped), "eval", 0)
    band = lambda d, lo, hi: ((d >= lo) & (d < hi)).sum()  # noqa: E731
    # mean factor on [0, 600) is 2 (the climb), on [600, 1200) 3 (the plateau), [1200, 1800) 2
    for (lo, hi), mean_factor in {(0, 600): 2.0, (600, 1200): 3.0, (1200, 1800): 2.0}.items():
        ratio = band(surged.depart, lo, hi) / band(trips.depart, lo, hi)
        assert abs(ratio - mean_factor) < 0.15, (lo, hi, ratio)
    # the climb is gradual: the first 200 s of it gain far less than its last 200 s
    assert band(surged.depart, 0, 200) / band(trips.depart, 0, 200) < 1.5
    assert band(surged.depart, 400, 600) / band(trips.depart, 400, 600) > 2.5
    # ramp_s 0 is the window's step, draw for draw: each trip inside is kept floor(2.5) + Bernoulli(0.5)
    # times from the surge stream's uniforms, each trip outside once
    step = Perturbation(seed=1, surge=SurgeSpec(scale=2.5, start_s=600, end_s=1200))
    assert step.surge.factor(np.array([599, 600, 1199, 1200])).tolist() == [1.0, 2.5, 2.5, 1.0]
    uniforms = stream_rng(step, "eval", 3, "surge").random(trips.num_trips)
    inside = (trips.depart >= 600) & (trips.depart < 1200)
    kept = np.where(inside, 2 + (uniforms < 0.5), 1)
    assert np.array_equal(surge_trips(trips, step, "eval", 3).depart, np.repeat(trips.depart, kept))


def test_a_surge_of_scale_zero_empties_its_window_and_leaves_the_rest_of_the_demand():
    # scale 0 is allowed (a closure of the demand): the factor is still 1 outside the window
    spec = SurgeSpec(scale=0.0, start_s=600, end_s=1200)
    assert spec.factor(np.array([0, 599, 600, 1199, 1200, 1500])).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    trips = small_grid(2, 2, rate=1200.0, horizon=1800, seed=0).trips
    emptied = surge_trips(trips, Perturbation(seed=1, surge=spec), "eval", 0)
    outside = (trips.depart < 600) | (trips.depart >= 1200)
    assert emptied.depart.tolist() == trips.depart[outside].tolist()


@pytest.mark.parametrize("config, field", [
    ({"incidents": {"lanes": ["road_9_9_9_0"]}}, "incidents.lanes"),
    ({"incidents": {"duration_s": -5}}, "incidents.duration_s"),
    ({"incidents": {"capacity": 1.5}}, "incidents.capacity"),
    ({"incidents": {"count": -1}}, "incidents.count"),
    ({"incidents": {"start_s": [900, 100]}}, "incidents.start_s"),
    ({"incidents": {"start_s": [600, 599.5]}}, "incidents.start_s"),
    ({"incidents": {"start_s": -0.5}}, "incidents.start_s"),
    ({"incidents": {"count": True}}, "incidents.count"),
    ({"incidents": {"duration_s": 0}}, "incidents.duration_s"),
    ({"incidents": {"duration_s": 0.4}}, "incidents.duration_s"),  # rounded to 0 s: an incident that never acts
    ({"incidents": {"capacity": 1.0}}, "incidents.capacity"),  # 1 would be no incident at all
    ({"incidents": {"when": 3}}, "perturbation.incidents.when"),
    ({"incidents": {"placement": "random"}}, "incidents.placement"),
    ({"surge": {"scale": -2}}, "surge.scale"),
    ({"surge": {"start_s": 900, "end_s": 100}}, "surge.[start_s, end_s]"),
    ({"surge": {"start_s": 0, "end_s": 600, "ramp_s": 400}}, "surge.ramp_s"),
    ({"surge": {"ramp_s": -1}}, "surge.ramp_s"),
    ({"seed": -1}, "perturbation.seed"),
    ({"detectors": {"dropout_p": 1.5}}, "detectors.dropout_p"),
    ({"detectors": {"dead_p": -0.1}}, "detectors.dead_p"),
    ({"detectors": {"noise_std": -1}}, "detectors.noise_std"),
    ({"detectors": {"stuck_at_s": -1}}, "detectors.stuck_at_s"),
    ({"colour": "red"}, "perturbation.colour"),
    ({"incidents": 5}, "perturbation.incidents"),
])
def test_bad_perturbation_configs_name_the_field_and_value(config, field):
    scenario = small_grid(2, 2, horizon=100)
    with pytest.raises(ConfigError) as error:
        perturbation = perturbation_from_config(config)
        sample_incidents(perturbation, scenario.network, "eval", 0)
    assert field in str(error.value)
    value = str(list(config.values())[0])
    assert any(str(v) in str(error.value) for v in _leaves(config)), (str(error.value), value)


def test_a_spec_error_from_a_config_names_the_config_path():
    # the spec names its own field (`incidents.capacity`); the user typed `perturbation.incidents.capacity`
    with pytest.raises(ConfigError) as caught:
        perturbation_from_config({"incidents": {"capacity": 1.5}}, "<config>")
    assert (caught.value.source, caught.value.field, caught.value.value) == (
        "<config>", "perturbation.incidents.capacity", 1.5)
    assert "<config>: field 'perturbation.incidents.capacity' = 1.5:" in str(caught.value)


def test_an_empty_incident_lane_list_is_refused_and_random_lanes_are_only_those_ending_at_a_signal():
    with pytest.raises(ConfigError, match=r"incidents\.lanes.*\[\]"):  # not "random lanes", silently
        IncidentSpec(lanes=[])
    network = small_grid(2, 2).network
    ends = network.road_end[network.lane_road].cpu().numpy()
    pool = IncidentSpec().lane_pool(network)
    assert (ends[pool] >= 0).all() and pool.size == (ends >= 0).sum() < ends.size


def test_a_perturbation_keeps_its_configured_name_and_dead_intersections_alone_are_not_clean():
    dead = perturbation_from_config({"name": "blackout", "detectors": {"dead_p": 0.2}})
    assert dead.name == "blackout" and not dead.is_clean
    assert perturbation_from_config({"detectors": {"dead_p": 0.0}}).is_clean


def _leaves(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        yield from value
    else:
        yield value


def test_without_incidents_the_engine_is_unchanged():
    scenario = small_grid(2, 2, rate=700.0, horizon=300, seed=1)
    runs = []
    for demand in (scenario.demand(1), with_incidents(scenario.demand(1), [[]])):
        sim = Simulator(scenario.network, demand, EngineParams())
        controller = MaxPressure()
        controller.reset(sim)
        sim.run(400, controller)
        runs.append(sim.state)
    assert torch.equal(runs[0].veh_pos, runs[1].veh_pos) and torch.equal(runs[0].trip_finish, runs[1].trip_finish)


def test_compiled_engine_matches_eager_under_incidents():
    scenario = small_grid(2, 2, rate=700.0, horizon=300, seed=1)
    spec = Perturbation(seed=5, incidents=IncidentSpec(count=3, start_s=[0, 100], duration_s=120, capacity=0.0))
    demand = with_incidents(scenario.demand(2), [sample_incidents(spec, scenario.network, "eval", k) for k in range(2)])
    states = []
    for compiled in (False, True):
        sim = Simulator(scenario.network, demand, compile=compiled)
        controller = MaxPressure()
        controller.reset(sim)
        sim.run(250, controller)
        states.append(sim.state)
    for name in ("veh_lane", "trip_finish", "lane_count", "phase"):
        assert torch.equal(getattr(states[0], name), getattr(states[1], name)), name
    for name in ("veh_pos", "veh_speed"):  # fused float arithmetic, as in test_engine_compiled
        torch.testing.assert_close(getattr(states[0], name), getattr(states[1], name), rtol=1e-4, atol=1e-3)


def test_evaluate_reports_degradation_under_a_perturbation(tmp_path):
    import csv
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    done = subprocess.run(
        [sys.executable, "evaluate.py", "scenario=grid_1x1", "controllers=[fixed_time,max_pressure]",
         "perturbation=mixed", "perturbation.incidents.start_s=[60,120]", "perturbation.surge.start_s=0",
         "perturbation.surge.end_s=600", "eval.seeds=2", "eval.steps=600", "eval.plots=false",
         "eval.progress=false", f"hydra.run.dir={tmp_path}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Degradation against the clean case" in done.stdout and "travel time change (%)" in done.stdout
    # closures lasting 900 s from 60-120 s, stuck detectors from 600 s: past the 600 s evaluated
    assert ("warning: perturbation mixed: incidents.start_s + duration_s [60, 1020] s; detectors.stuck_at_s 600 s "
            "reach past the 600 s evaluated (eval.steps)") in done.stdout
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert {r["condition"] for r in rows} == {"clean", "mixed"} and len(rows) == 8
    by = {(r["controller"], r["condition"], r["seed"]): float(r["travel_time/mean"]) for r in rows}
    # a closure plus a 1.3x surge slows every controller on every seed
    assert all(by[(c, "mixed", s)] > by[(c, "clean", s)] for c in ("fixed_time", "max_pressure") for s in "01")
    bad = subprocess.run(
        [sys.executable, "evaluate.py", "scenario=grid_1x1", "perturbation=incident",
         "perturbation.incidents.duration_s=-1", f"hydra.run.dir={tmp_path / 'bad'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode != 0 and "incidents.duration_s" in bad.stderr and "-1" in bad.stderr


def test_windows_past_the_episode_are_named():
    incident = perturbation_from_config({"name": "incident", "incidents": {"start_s": [300, 2700]}})
    assert incident.windows_past(3600) == []  # the last closure ends at 2700 + 900 s
    assert incident.windows_past(3000) == ["incidents.start_s + duration_s [300, 3600] s"]  # onsets all inside
    assert incident.windows_past(600) == ["incidents.start_s + duration_s [300, 3600] s"]
    surge = perturbation_from_config({"surge": {"start_s": 900, "end_s": 1800}})
    assert surge.windows_past(1800) == [] and surge.windows_past(1000) == ["surge.[start_s, end_s] [900, 1800] s"]
    assert perturbation_from_config({"detectors": {"stuck_p": 0.1, "stuck_at_s": 600}}).windows_past(600) == [
        "detectors.stuck_at_s 600 s"]
    assert perturbation_from_config(None).windows_past(10) == []


def test_training_env_draws_incidents_and_surges_with_each_episode():
    from envs.rl.signal_env import BatchedSignalEnv

    config = {"name": "mixed", "incidents": {"count": 2, "start_s": [0, 50], "duration_s": 100},
              "surge": {"scale": 2.0, "start_s": 0, "end_s": 300}}
    env = BatchedSignalEnv("grid_1x1", copies=3, episode_s=300, demand={"mode": "poisson"}, perturbation=config)
    clean = BatchedSignalEnv("grid_1x1", copies=3, episode_s=300, demand={"mode": "poisson"})
    env.reset(seed=0)
    clean.reset(seed=0)
    demand = env.sim.demand
    assert demand.incident_lane.shape == (3, 2)
    assert len({tuple(row) for row in demand.incident_lane.tolist()} | {0}) >= 2  # per copy
    assert int(demand.num_trips.sum()) > 1.5 * int(clean.sim.demand.num_trips.sum())  # the surge
    first = demand.incident_start.clone()
    env.reset()  # the next episodes draw new samples, with new incidents
    assert not torch.equal(first, env.sim.demand.incident_start)
    assert env.describe()["perturbation"]["name"] == "mixed"
    with pytest.raises(ConfigError, match="perturbation") as refused:
        BatchedSignalEnv("grid_1x1", demand={"mode": "original"}, perturbation=config)
    assert_names_everything(refused.value, "<env>", "perturbation", "mixed")
    assert 'use demand mode poisson or jitter' in refused.value.reason


def test_each_training_episode_is_surged_with_the_draws_of_its_own_sample():
    from envs.rl.signal_env import BatchedSignalEnv
    from envs.scenario.splits import sample_trips

    # a copy's surge comes from its sample's stream (split, index), as its incidents do: the
    # copies (samples 2, 3, 4) replicate different trips, each exactly as surge_trips draws them
    config = {"name": "surge", "surge": {"scale": 1.5, "start_s": 0, "end_s": 300}}
    scenario = small_grid(2, 2, rate=900.0, horizon=300)
    env = BatchedSignalEnv(scenario, 3, episode_s=300, demand={"mode": "poisson"}, perturbation=config)
    env.reset(seed=2)
    for copy, index in enumerate((2, 3, 4)):
        expected = surge_trips(sample_trips(scenario, env.demand_spec, "train", index), env.perturbation,
                               "train", index)
        assert env.trips[copy].depart.tolist() == expected.depart.tolist()
        assert env.trips[copy].flow_index.tolist() == expected.flow_index.tolist()


# ---- detector faults -------------------------------------------------------------------------------


def test_the_degradation_table_shows_no_change_in_percent_of_a_clean_zero():
    # a short hangzhou_4x4 episode under perturbation=mixed: no trip finished, clean or perturbed
    def rows(throughput):
        return [{"controller": "max_pressure", "seed": seed, PRIMARY: 58.9 + seed, "throughput": value}
                for seed, value in enumerate(throughput)]

    table = degradation_table(rows([0, 2, 1]), rows([0, 1, 1]), ["max_pressure"], 3)
    assert table.splitlines()[2].endswith("| 1 | 1 | — |")
    assert "the clean figure is 0 for some seed" in table
    assert "—" not in degradation_table(rows([3, 2, 1]), rows([3, 1, 1]), ["max_pressure"], 3)


@pytest.mark.parametrize("overrides, field, value", [
    (["perturbation=incident", "perturbation.incidents.count=0"], "perturbation.incidents.count", 0),
    (["perturbation=incident", "perturbation.incidents.rate_per_hour=0"], "perturbation.incidents.rate_per_hour", 0),
    (["perturbation=detector_faults", "perturbation.detectors.noise_std=0", "perturbation.detectors.dropout_p=0",
      "perturbation.detectors.stuck_p=0", "perturbation.detectors.dead_p=0"], "perturbation.detectors", None),
])
def test_a_perturbation_that_draws_nothing_is_refused_in_training_and_evaluation(overrides, field, value):
    """It ran (evaluate.py) or trained (train.py) the clean case only, the perturbation silently nothing."""
    from agents.ppo.config import check_config, check_evaluate_config
    from tests.test_evaluate import evaluate_config
    from tests.test_train import train_config

    for check, cfg in ((check_evaluate_config, evaluate_config("scenario=grid_1x1", *overrides)),
                       (check_config, train_config("scenario=grid_1x1", *overrides))):
        with pytest.raises(ConfigError, match="the perturbation draws nothing: use perturbation=clean") as error:
            check(cfg)
        assert error.value.field == field and (value is None or error.value.value == value)
    mixed = ["perturbation=mixed", "perturbation.incidents.count=0"]  # its surge and faults still draw
    check_evaluate_config(evaluate_config("scenario=grid_1x1", *mixed))
