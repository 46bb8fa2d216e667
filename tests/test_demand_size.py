"""The memory bound on a demand scale (envs/scenario/demand_size.py) counts the engine's per-trip tables
beside the drawn trip table, and its bytes per trip are checked against the tables built for a sample."""

from __future__ import annotations

import pytest

from envs.engine import Simulator
from envs.errors import ConfigError
from envs.scenario import load_scenario
from envs.scenario.splits import DemandSpec, sample_trips

_GRID_1X1 = load_scenario("grid_1x1", horizon=600)


def test_the_memory_bound_counts_the_engines_per_trip_tables_too(monkeypatch):
    """Only the drawn trip table was counted: a scale just under the bound passed, then the engine's
    per-trip tables (about as large again) exhausted the memory. A machine whose memory holds the trip
    table of the sample but not its engine tables as well: refused."""
    import envs.scenario.demand_size as demand_size
    from envs.scenario.demand_size import engine_table_bytes, trip_table_bytes

    width = _GRID_1X1.trips.routes.shape[1]
    trips = 1000 * _GRID_1X1.trips.num_trips
    memory = trips * (trip_table_bytes(width) + engine_table_bytes(width) // 2)
    monkeypatch.setattr(demand_size, "physical_memory", lambda: memory)
    with pytest.raises(ConfigError, match="of trip and engine tables.*more than this machine's") as refused:
        sample_trips(_GRID_1X1, DemandSpec(mode="jitter", scale=1000.0), "eval", 0)
    assert (refused.value.field, refused.value.value) == ("scale", 1000.0)


@pytest.mark.parametrize("name", ["grid_1x1", "grid_4x4"])
def test_the_engine_tables_per_trip_are_what_engine_table_bytes_counts_at_most(name):
    """The constant against the tables built for a sample: `stack_demand`'s per-trip tables (``[K, T+1, ...]``)
    and the state's per-trip arrays, per trip; within a factor of 2 of it (narrower ids on a small network)."""
    from envs.scenario.demand_size import engine_table_bytes, trip_table_bytes

    scenario = _GRID_1X1 if name == "grid_1x1" else load_scenario(name, horizon=600)
    sample = sample_trips(scenario, DemandSpec(mode="poisson"), "eval", 0)
    sim = Simulator(scenario.network, scenario.demand(trips=[sample]))
    rows, width = sample.num_trips + 1, sample.routes.shape[1]
    demand = sim.demand
    tables = [demand.depart, demand.origin, demand.route_movement, demand.vehicle, demand.entry_order,
              demand.free_flow_time, *([] if demand.sigma is None else [demand.sigma])]
    assert all(table.shape[1] % rows == 0 for table in tables)
    state = [sim.state.trip_enter, sim.state.trip_finish, sim.state.trip_stops, sim.state.trip_delay]
    assert all(array.shape == (1, rows) for array in state)
    built = sum(t.element_size() * t.numel() for t in tables + state) / rows
    assert engine_table_bytes(width) / 2 <= built <= engine_table_bytes(width), (built, engine_table_bytes(width))
    drawn = sum(a.nbytes for a in (sample.depart, sample.routes, sample.vehicle, sample.flow_index))
    assert drawn == sample.num_trips * trip_table_bytes(width)


def _memory_for(samples: float, scale: float) -> int:
    """Physical memory that holds `samples` grid_1x1 jitter samples at `scale` (trip and engine tables)."""
    from envs.scenario.demand_size import engine_table_bytes, trip_table_bytes

    width = _GRID_1X1.trips.routes.shape[1]
    return int(samples * scale * _GRID_1X1.trips.num_trips * (trip_table_bytes(width) + engine_table_bytes(width)))


def test_the_memory_bound_counts_every_sample_held_at_once(monkeypatch):
    """One sample of the scale fit, so it passed; evaluation holds eval.seeds samples side by side (training
    one a copy), and 4 of them did not fit. A machine with room for 1.5 samples: one passes, 4 are refused,
    the error naming the scale, the 4 samples and the trips each."""
    import envs.scenario.demand_size as demand_size
    import envs.scenario.splits as splits

    monkeypatch.setattr(demand_size, "physical_memory", lambda: _memory_for(1.5, 1000.0))
    spec = DemandSpec(mode="jitter", scale=1000.0)
    splits.check_scale(_GRID_1X1, spec)  # one sample fits
    trips = 1000 * _GRID_1X1.trips.num_trips
    with pytest.raises(ConfigError, match=rf"4 jitter samples held at once would hold about {trips:,} trips each "
                                          r"\([\d,.]+ MiB of trip and engine tables in all\), more than this "
                                          r"machine's") as refused:
        splits.check_scale(_GRID_1X1, spec, samples=4)
    assert (refused.value.source, refused.value.field, refused.value.value) == ("<demand spec>", "scale", 1000.0)
    assert "lower the scale or the samples held at once" in refused.value.reason


def test_demand_for_and_the_evaluation_demands_count_the_samples_they_stack(monkeypatch):
    """`demand_for` stacks one sample per index, `eval_demands` one per eval seed: refused before drawing
    when together they would not fit, though each alone does."""
    import envs.scenario.demand_size as demand_size
    import envs.scenario.splits as splits
    from envs.evaluation.runner import eval_demands
    from envs.incidents.perturbation_specs import Perturbation

    monkeypatch.setattr(demand_size, "physical_memory", lambda: _memory_for(1.5, 1000.0))
    monkeypatch.setattr(splits, "_rescale_rows", lambda *a: pytest.fail("drawn"))
    spec = DemandSpec(mode="jitter", scale=1000.0)
    with pytest.raises(ConfigError, match="3 jitter samples held at once") as refused:
        splits.demand_for(_GRID_1X1, spec, "train", [0, 1, 2])
    assert refused.value.field == "scale"
    with pytest.raises(ConfigError, match="2 jitter samples held at once"):
        eval_demands(_GRID_1X1, spec, 2, Perturbation())
