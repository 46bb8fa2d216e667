"""Demand resampling: disjoint train/eval seeds, Poisson and jitter samples, determinism, errors."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from agents.ppo.config import demand_spec
from envs.engine import Simulator
from envs.errors import ConfigError
from envs.scenario import load_scenario, scenario_from_dicts
from envs.scenario.demand import Trips
from envs.scenario.generate import DEFAULT_VEHICLE, grid_roadnet
from envs.scenario.splits import DemandSpec, demand_for, sample_trips, split_seed

ROUTES = [
    ["road_0_1_0", "road_1_1_0"], ["road_1_2_3", "road_1_1_3"], ["road_2_1_2", "road_1_1_1"],
    ["road_1_0_1", "road_1_1_2"],
]
WIDE = 2**62 - 1
_GRID_1X1 = load_scenario("grid_1x1", horizon=600)  # module level: hypothesis reuses it


@pytest.fixture(scope="module")
def grid():
    """Per-vehicle flow entries (one entry per vehicle), like the datasets."""
    return load_scenario("grid_4x4", horizon=900)


def periodic(flows: int = 200, interval: float = 20.0, end: int = 599, horizon: int | None = None):
    """A 1x1 grid with `flows` periodic entries, each active over steps 0..end."""
    vehicle = dict(DEFAULT_VEHICLE)
    entries = []
    for j in range(flows):
        v = dict(vehicle, maxSpeed=8.0 + j % 5)  # vehicle parameters differ per flow
        entries.append({"vehicle": v, "route": ROUTES[j % 4], "interval": interval,
                        "startTime": 0, "endTime": end})
    return scenario_from_dicts(grid_roadnet(1, 1), entries, name="periodic", horizon=horizon)


def is_sorted(trips: Trips) -> bool:
    key = trips.depart * (trips.flow_index.max() + 1) + trips.flow_index
    return bool(np.all(np.diff(key) >= 0))


# --------------------------------------------------------------------------------------------
# seeds


@given(a=st.integers(0, WIDE), b=st.integers(0, WIDE))
def test_train_and_eval_seeds_never_collide(a, b):
    assert split_seed("train", a) != split_seed("eval", b)
    assert (split_seed("train", a) == split_seed("train", b)) == (a == b)
    assert (split_seed("eval", a) == split_seed("eval", b)) == (a == b)
    assert 0 <= split_seed("eval", a) < 2**63


def test_seed_sets_are_disjoint_over_many_indices():
    train = {split_seed("train", k) for k in range(20_000)}
    evaluation = {split_seed("eval", k) for k in range(20_000)}
    assert len(train) == len(evaluation) == 20_000 and not train & evaluation


@settings(max_examples=10, deadline=None)
@given(index=st.integers(0, 10_000), mode=st.sampled_from(["poisson", "jitter"]))
def test_same_seed_same_trips_and_the_splits_differ(index, mode):
    scenario = _GRID_1X1
    spec = DemandSpec(mode, jitter_s=20.0) if mode == "jitter" else DemandSpec(mode)
    a, b = sample_trips(scenario, spec, "train", index), sample_trips(scenario, spec, "train", index)
    for field in ("depart", "routes", "vehicle", "flow_index"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    other = sample_trips(scenario, spec, "eval", index)
    assert a.num_trips != other.num_trips or not np.array_equal(a.depart, other.depart)


def test_original_is_the_scenario_trips_for_every_split(grid):
    for split in ("train", "eval"):
        for index in (0, 7):
            assert sample_trips(grid, DemandSpec(), split, index) is grid.trips
    demand = demand_for(grid, DemandSpec(), "eval", [0, 1])
    assert demand.batch_size == 2 and demand.num_trips.tolist() == [grid.trips.num_trips] * 2


# --------------------------------------------------------------------------------------------
# poisson


def test_poisson_counts_match_the_expected_rate_over_many_flows():
    scenario = periodic()  # 200 flows x 600 steps / 20 s = 6000 vehicles expected (CityFlow: 6000)
    assert scenario.trips.num_trips == 6000
    for scale in (1.0, 2.5):
        expected = scale * 6000
        counts = [sample_trips(scenario, DemandSpec("poisson", scale=scale), "train", k).num_trips
                  for k in range(5)]
        assert abs(np.mean(counts) - expected) < 4 * math.sqrt(expected / 5)
        assert len(set(counts)) > 1  # random counts, not a deterministic expansion
    trips = sample_trips(scenario, DemandSpec("poisson"), "eval", 0)
    assert is_sorted(trips)
    assert trips.depart.min() >= 0 and trips.depart.max() <= 599
    assert abs(trips.depart.mean() - 299.5) < 4 * 173 / math.sqrt(trips.num_trips)  # uniform
    # each trip carries its flow's route and vehicle
    for row in np.flatnonzero(trips.flow_index == 7)[:3]:
        original = np.flatnonzero(scenario.trips.flow_index == 7)[0]
        assert np.array_equal(trips.routes[row], scenario.trips.routes[original])
        assert np.array_equal(trips.vehicle[row], scenario.trips.vehicle[original])


def test_poisson_departures_are_uniform_over_the_whole_window_last_step_included():
    scenario = periodic(interval=2.0, end=1)  # 200 flows, one vehicle each over steps 0 and 1
    depart = np.concatenate([sample_trips(scenario, DemandSpec("poisson"), "train", k).depart for k in range(5)])
    assert depart.size > 800 and set(depart.tolist()) == {0, 1}
    assert abs((depart == 1).mean() - 0.5) < 4 * 0.5 / math.sqrt(depart.size)


def test_the_samples_are_the_same_on_any_machine():
    """The streams are pinned: a sample is a function of (split, index, mode) alone, the modes drawing
    from their own streams. A change here changes every recorded result."""
    trips = sample_trips(periodic(), DemandSpec("poisson"), "eval", 0)
    assert (trips.num_trips, int(trips.depart.sum()), int(trips.flow_index.sum())) == (6092, 1866270, 611788)
    jittered = sample_trips(load_scenario("grid_4x4", horizon=900), DemandSpec("jitter"), "train", 3)
    assert (jittered.num_trips, int(jittered.depart.sum())) == (1913, 850149)


def test_poisson_keeps_the_flow_files_mean_where_the_window_is_not_a_whole_number_of_intervals():
    scenario = periodic(flows=100, interval=300.0, end=600)  # each flow: 0, 300, 600 s (CityFlow: 3)
    assert scenario.trips.num_trips == 300
    counts = [sample_trips(scenario, DemandSpec("poisson"), "train", k).num_trips for k in range(40)]
    # 601 steps / 300 s gave 2.003 a flow: 200 on average, a third low
    assert abs(np.mean(counts) - 300) < 4 * math.sqrt(300 / 40)


def test_poisson_keeps_the_flow_files_mean_for_an_interval_that_is_not_a_binary_fraction():
    """Interval 0.1 s over steps 0..1: CityFlow's float accumulator makes 11 vehicles a flow, the
    closed form 10; the rate took the closed form, so poisson ran ~10% low (79 for 88)."""
    scenario = periodic(flows=40, interval=0.1, end=1)
    assert scenario.trips.num_trips == 40 * 11
    counts = [sample_trips(scenario, DemandSpec("poisson"), "train", k).num_trips for k in range(40)]
    assert abs(np.mean(counts) - 440) < 4 * math.sqrt(440 / 40)


def test_poisson_keeps_to_the_horizon_the_scenario_was_loaded_with():
    scenario = periodic(horizon=300)
    assert scenario.trips.num_trips == 200 * 15
    for horizon in (None, 300):  # inferred from the cut expansion, or given
        trips = sample_trips(scenario, DemandSpec("poisson"), "train", 0, horizon=horizon)
        assert trips.depart.max() < 300
        assert abs(trips.num_trips - 3000) < 4 * math.sqrt(3000)
    longer = sample_trips(scenario, DemandSpec("poisson"), "train", 0, horizon=10_000)
    assert longer.depart.max() > 500  # a given horizon overrides the inference (flows end at 599)
    # an endless flow (no endTime) needs the horizon it was loaded with: inferred as the first
    # departure the load dropped (every 7 s: 0 .. 497 kept, 504 dropped)
    endless = [{"vehicle": DEFAULT_VEHICLE, "route": ROUTES[0], "interval": 7.0}] * 20
    scenario = scenario_from_dicts(grid_roadnet(1, 1), endless, name="endless", horizon=500)
    for mode in ("poisson", "jitter"):
        trips = sample_trips(scenario, DemandSpec(mode, **({"jitter_s": 60.0} if mode == "jitter" else {})), "eval", 2)
        assert 400 < trips.depart.max() < 504


def test_poisson_reads_the_flow_entries_once_per_scenario_and_horizon(monkeypatch):
    """The per-entry windows, routes and vehicles are built once (a Python loop over every
    entry, most of a sample's time before), and later samples draw exactly what they drew."""
    import envs.scenario.splits as splits

    scenario, calls = periodic(flows=50), []
    real = splits.active_steps
    monkeypatch.setattr(splits, "active_steps", lambda *a: calls.append(1) or real(*a))
    first = [sample_trips(scenario, DemandSpec("poisson"), "train", k) for k in range(3)]
    assert len(calls) == 50  # one pass over the 50 entries for three samples
    sample_trips(scenario, DemandSpec("poisson"), "train", 0, horizon=300)
    assert len(calls) == 100  # another horizon, other windows
    splits._ENTRIES.clear()
    again = [sample_trips(scenario, DemandSpec("poisson"), "train", k) for k in range(3)]
    for a, b in zip(first, again):
        for name in ("depart", "routes", "vehicle", "flow_index"):
            assert np.array_equal(getattr(a, name), getattr(b, name))


def test_poisson_on_per_vehicle_entries_is_a_poisson_bootstrap(grid):
    n = grid.trips.num_trips
    trips = sample_trips(grid, DemandSpec("poisson", scale=0.5), "train", 1)
    assert abs(trips.num_trips - 0.5 * n) < 4 * math.sqrt(0.5 * n)
    original = dict(zip(grid.trips.flow_index.tolist(), grid.trips.depart.tolist()))
    assert all(original[f] == d for f, d in zip(trips.flow_index.tolist(), trips.depart.tolist()))
    assert np.bincount(trips.flow_index).max() >= 2  # some vehicles drawn more than once


# --------------------------------------------------------------------------------------------
# jitter


def test_jitter_keeps_counts_routes_and_bounds_the_shift(grid):
    trips = sample_trips(grid, DemandSpec("jitter", jitter_s=30.0), "train", 0)
    assert is_sorted(trips) and trips.num_trips == grid.trips.num_trips
    # one vehicle per flow entry here: match trips by flow index
    a = np.argsort(grid.trips.flow_index, kind="stable")
    b = np.argsort(trips.flow_index, kind="stable")
    assert np.array_equal(grid.trips.flow_index[a], trips.flow_index[b])
    assert np.array_equal(grid.trips.routes[a], trips.routes[b])
    assert np.array_equal(grid.trips.vehicle[a], trips.vehicle[b])
    shift = trips.depart[b] - grid.trips.depart[a]
    assert np.abs(shift).max() <= 30 and np.abs(shift).max() >= 25 and (shift != 0).mean() > 0.9
    assert trips.depart.min() >= 0 and trips.depart.max() < 900  # clipped to the inferred horizon


@pytest.mark.parametrize("jitter_s", [0.0, 0.5, 0.99])
def test_a_jitter_that_moves_nothing_is_refused_rather_than_replaying_the_eval_demand_in_training(grid, jitter_s):
    # shifts are whole seconds: below 1 s nothing moved, and train sample k and eval sample j were both the
    # flow file (a run with env.demand and eval.demand so set trained on the demand it was evaluated on)
    with pytest.raises(ConfigError, match="moves no departure") as refused:
        DemandSpec("jitter", jitter_s=jitter_s)
    assert refused.value.field == "jitter_s" and refused.value.value == jitter_s
    node = OmegaConf.create({"mode": "jitter", "scale": 1.0, "jitter_s": jitter_s})  # as train.py / evaluate.py
    with pytest.raises(ConfigError, match="moves no departure") as refused:
        demand_spec(node, "eval.demand")
    assert refused.value.field == "eval.demand.jitter_s"
    # one second and up moves departures: the splits differ again
    spec = DemandSpec("jitter", jitter_s=1.0)
    train, held_out = (sample_trips(grid, spec, split, 0) for split in ("train", "eval"))
    assert not np.array_equal(train.depart, held_out.depart)
    # with a scale the copies themselves are drawn per sample: allowed, the splits differ in what they hold
    scaled = DemandSpec("jitter", scale=1.5, jitter_s=0.0)
    assert sample_trips(grid, scaled, "train", 0).num_trips != sample_trips(grid, scaled, "eval", 0).num_trips


def test_jitter_scale_thins_and_duplicates(grid):
    n = grid.trips.num_trips
    double = sample_trips(grid, DemandSpec("jitter", scale=2.0), "train", 0)
    assert double.num_trips == 2 * n and np.bincount(double.flow_index).max() == 2
    half = sample_trips(grid, DemandSpec("jitter", scale=0.5), "train", 0)
    assert abs(half.num_trips - n / 2) < 4 * math.sqrt(n / 4)
    assert np.bincount(half.flow_index).max() == 1
    more = sample_trips(grid, DemandSpec("jitter", scale=1.5), "train", 0)
    per_vehicle = np.bincount(more.flow_index, minlength=n)
    assert set(per_vehicle.tolist()) == {1, 2}
    assert abs(more.num_trips - 1.5 * n) < 4 * math.sqrt(n / 4)


# --------------------------------------------------------------------------------------------
# batching and errors


def test_demand_for_stacks_samples_that_run(grid):
    demand = demand_for(grid, DemandSpec("poisson"), "eval", [0, 1, 2])
    samples = [sample_trips(grid, DemandSpec("poisson"), "eval", k) for k in range(3)]
    assert demand.num_trips.tolist() == [s.num_trips for s in samples]
    sim = Simulator(grid.network, demand)
    sim.run(60)
    assert bool((sim.state.entry_ptr.sum(1) > 0).all())
    assert len(set(demand.num_trips.tolist())) > 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"mode": "bootstrap"}, "mode"),
        ({"mode": "poisson", "scale": 0.0}, "scale"),
        ({"mode": "poisson", "scale": -1.0}, "scale"),
        ({"mode": "poisson", "scale": float("nan")}, "scale"),
        ({"mode": "jitter", "scale": float("inf")}, "scale"),
        ({"mode": "poisson", "scale": True}, "scale"),
        ({"mode": "jitter", "jitter_s": -1.0}, "jitter_s"),
        ({"mode": "poisson", "jitter_s": 999.0}, "jitter_s"),  # only jitter reads it: it was ignored
        ({"mode": "jitter", "jitter_s": float("nan")}, "jitter_s"),
        ({"mode": "jitter", "jitter_s": 1e30}, "jitter_s"),  # a ValueError traceback from numpy's integers
        ({"mode": "jitter", "jitter_s": 1e12}, "jitter_s"),  # departures past int32: an error naming 'depart'
        ({"mode": "original", "scale": 2.0}, "scale"),
    ],
)
def test_bad_specs_raise_naming_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        DemandSpec(**kwargs)
    assert err.value.field == field
    value = err.value.value
    assert value == kwargs[field] or (isinstance(value, float) and math.isnan(value))
    if kwargs.get("mode") == "original":
        assert "poisson" in str(err.value)


@pytest.mark.parametrize(
    "split, index, field",
    [("test", 0, "split"), ("Train", 0, "split"), ("train", -1, "index"), ("eval", 1.5, "index"),
     ("eval", True, "index"), ("train", 2**62, "index"), ("train", "3", "index")],
)
def test_bad_split_or_index_raise(grid, split, index, field):
    for spec in (DemandSpec(), DemandSpec("poisson")):  # "original" checks them too
        with pytest.raises(ConfigError) as err:
            sample_trips(grid, spec, split, index)
        assert err.value.field == field
        assert err.value.value == (index if field == "index" else split)
    with pytest.raises(ConfigError) as err:
        split_seed(split, index)
    assert err.value.field == field


def test_other_bad_inputs_raise(grid):
    with pytest.raises(ConfigError) as err:
        sample_trips(grid, DemandSpec("poisson"), "train", 0, horizon=0)
    assert err.value.field == "horizon" and err.value.value == 0
    with pytest.raises(ConfigError) as err:
        demand_for(grid, DemandSpec("poisson"), "train", [])
    assert err.value.field == "indices"
    with pytest.raises(ConfigError) as err:
        sample_trips(grid, {"mode": "poisson"}, "train", 0)
    assert err.value.field == "spec"
    tiny = periodic(flows=1, interval=50.0, end=99)  # 2 vehicles expected at scale 1
    with pytest.raises(ConfigError) as err:
        for k in range(200):  # some sample at scale 0.01 has no trip at all
            sample_trips(tiny, DemandSpec("poisson", scale=0.01), "train", k)
    assert err.value.field == "scale" and "no trip" in str(err.value)


def test_poisson_samples_of_a_per_vehicle_file_are_bootstraps_of_the_same_vehicles(grid):
    # what docs/scenarios.md says of the held-out demand: no eval sample is a training sample, yet its
    # vehicles (departure second, route, vehicle row) are the file's, most of them in any training sample
    spec = DemandSpec("poisson")

    def rows(trips: Trips) -> set:
        return {(int(d), r.tobytes(), v.tobytes()) for d, r, v in zip(trips.depart, trips.routes, trips.vehicle)}

    train = [rows(sample_trips(grid, spec, "train", k)) for k in range(3)]
    held_out = [rows(sample_trips(grid, spec, "eval", j)) for j in range(2)]
    for trips in held_out:
        assert all(trips != seen for seen in train)
        assert 0.55 < len(trips & train[0]) / len(trips) < 0.7  # 1 - 1/e of the file per sample
        assert len(trips & set().union(*train)) / len(trips) > 0.9


@pytest.mark.parametrize("mode", ["poisson", "jitter"])
def test_a_scale_past_the_engines_trip_ids_is_refused_before_drawing(mode, monkeypatch):
    """scale=1e9 asked numpy for ~2e12 trips: a MemoryError traceback after the scenario had loaded."""
    import envs.scenario.splits as splits

    monkeypatch.setattr(splits, "_poisson", lambda *a: pytest.fail("drawn"))
    monkeypatch.setattr(splits, "_rescale_rows", lambda *a: pytest.fail("drawn"))
    spec = DemandSpec(mode=mode, scale=1e9)
    at_scale_1 = _GRID_1X1.trips.num_trips if mode == "jitter" else None
    with pytest.raises(ConfigError, match=r"more than the 2,147,483,646 trips a sample can hold \(the engine numbers "
                                          r"them in int32\)") as refused:
        sample_trips(_GRID_1X1, spec, "eval", 0)
    assert (refused.value.source, refused.value.field, refused.value.value) == ("<demand spec>", "scale", 1e9)
    assert re.search(r"would hold about [\d,]+ trips \([\d,.]+ TiB of trip and engine tables\)",
                     refused.value.reason)
    if at_scale_1 is not None:
        assert f"at scale 1 it holds about {at_scale_1:,}" in refused.value.reason
    with pytest.raises(ConfigError, match="trips a sample can hold"):
        splits.check_scale(_GRID_1X1, spec)  # the same refusal, nothing drawn


def test_a_sample_larger_than_the_machines_memory_is_refused_and_one_within_both_bounds_is_drawn(monkeypatch):
    import envs.scenario.demand_size as demand_size
    from envs.scenario.demand_size import MAX_TRIPS, trip_table_bytes

    trips = _GRID_1X1.trips.num_trips
    size = 1000 * trips * trip_table_bytes(_GRID_1X1.trips.routes.shape[1])
    assert 1000 * trips < MAX_TRIPS
    monkeypatch.setattr(demand_size, "physical_memory", lambda: size // 2)  # a machine with half that memory
    with pytest.raises(ConfigError, match=r"more than this machine's [\d.]+ (MiB|KiB) of memory") as refused:
        sample_trips(_GRID_1X1, DemandSpec(mode="jitter", scale=1000.0), "eval", 0)
    assert refused.value.field == "scale" and refused.value.value == 1000.0
    monkeypatch.setattr(demand_size, "physical_memory", lambda: None)  # an OS that does not say: the id bound only
    assert sample_trips(_GRID_1X1, DemandSpec(mode="jitter", scale=3.0), "eval", 0).num_trips > 2 * trips
