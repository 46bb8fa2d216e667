"""A flow entry's time window and vehicle block as read from a flow file: CityFlow's defaults
(startTime 0), the departures at both ends of the window, and the values refused (a start
before 0, a zero where CityFlow needs a positive quantity, a number past the magnitude limit,
one vehicle more than the per-file limit), each naming the file, the field and the value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envs.errors import ScenarioError
from envs.scenario import scenario_from_dicts
from envs.scenario.cityflow import departure_steps, load_flow, parse_flow, parse_roadnet
from envs.scenario.departures import MAX_VEHICLES, check_departure_counts
from envs.scenario.spec import FlowSpec, VehicleSpec
from tests.minimal_scenario import (
    FLOW_SOURCE,
    FLOW_TO_EAST,
    ROADNET_SOURCE,
    assert_names_everything,
    minimal_flow,
    minimal_roadnet,
)


def _load_written(tmp_path: Path, flow: list[dict]):
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(flow))
    return path, load_flow(path, parse_roadnet(minimal_roadnet(), ROADNET_SOURCE))


def _refusal(flow: list[dict]) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        parse_flow(flow, FLOW_SOURCE, parse_roadnet(minimal_roadnet(), ROADNET_SOURCE))
    return caught.value


def test_a_flow_without_start_time_starts_at_zero_and_its_last_vehicle_leaves_at_end(tmp_path):
    flow = minimal_flow()
    del flow[FLOW_TO_EAST]["startTime"]  # CityFlow's default: 0
    flow[FLOW_TO_EAST]["interval"], flow[FLOW_TO_EAST]["endTime"] = 5, 20
    _, parsed = _load_written(tmp_path, flow)
    assert parsed.flows[FLOW_TO_EAST].start_time == 0
    # by hand: a vehicle at 0 (the accumulator starts full), then every 5 s, 20 included
    assert departure_steps(parsed.flows[FLOW_TO_EAST]).tolist() == [0, 5, 10, 15, 20]


@pytest.mark.parametrize(("start", "end", "interval", "expected"), [
    (3, 13, 5, [3, 8, 13]),  # the window a whole number of intervals: the last vehicle at endTime
    (3, 12, 5, [3, 8]),  # one second short: 13 is outside the window
    (4, 4, 30, [4]),  # startTime == endTime: one vehicle, whatever the interval
])
def test_departures_at_both_ends_of_a_written_window(tmp_path, start, end, interval, expected):
    flow = minimal_flow()
    flow[FLOW_TO_EAST].update(startTime=start, endTime=end, interval=interval)
    _, parsed = _load_written(tmp_path, flow)
    assert departure_steps(parsed.flows[FLOW_TO_EAST]).tolist() == expected
    # a horizon at the last departure cuts exactly that vehicle
    assert departure_steps(parsed.flows[FLOW_TO_EAST], horizon=expected[-1]).tolist() == expected[:-1]


@pytest.mark.parametrize("start", [-1, -0.5])
def test_a_start_time_before_zero_is_refused(tmp_path, start):
    # CityFlow would silently start it at 0 (-1 is endTime's "no end", not startTime's)
    flow = minimal_flow()
    flow[FLOW_TO_EAST]["startTime"] = start
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(flow))
    with pytest.raises(ScenarioError) as caught:
        load_flow(path, parse_roadnet(minimal_roadnet(), ROADNET_SOURCE))
    assert_names_everything(caught.value, str(path), "[0].startTime", start)
    assert ">= 0" in caught.value.reason


POSITIVE_VEHICLE_FIELDS = ["length", "width", "maxPosAcc", "maxNegAcc", "usualPosAcc", "usualNegAcc",
                           "maxSpeed", "headwayTime"]


@pytest.mark.parametrize("key", POSITIVE_VEHICLE_FIELDS)
def test_a_zero_vehicle_quantity_is_refused(key):
    # CityFlow needs each of these > 0 (a zero speed or acceleration never moves the vehicle)
    flow = minimal_flow()
    flow[FLOW_TO_EAST]["vehicle"][key] = 0
    error = _refusal(flow)
    assert_names_everything(error, FLOW_SOURCE, f"[0].vehicle.{key}", 0)
    assert "> 0" in error.reason


def test_a_zero_min_gap_is_taken():
    flow = minimal_flow()
    flow[FLOW_TO_EAST]["vehicle"]["minGap"] = 0
    parsed = parse_flow(flow, FLOW_SOURCE, parse_roadnet(minimal_roadnet(), ROADNET_SOURCE))
    assert parsed.flows[FLOW_TO_EAST].vehicle.min_gap == 0


@pytest.mark.parametrize(("key", "value"), [("interval", 1.5e9), ("endTime", 2e9), ("startTime", 1.1e9)])
def test_a_time_just_past_the_magnitude_limit_is_refused(key, value):
    flow = minimal_flow()
    flow[FLOW_TO_EAST][key] = value
    error = _refusal(flow)
    assert_names_everything(error, FLOW_SOURCE, f"[0].{key}", value)
    assert "beyond 1e+09" in error.reason


def test_a_time_at_the_magnitude_limit_is_taken():
    flow = minimal_flow()
    flow[FLOW_TO_EAST].update(interval=1e9, endTime=1e9)
    parsed = parse_flow(flow, FLOW_SOURCE, parse_roadnet(minimal_roadnet(), ROADNET_SOURCE))
    assert departure_steps(parsed.flows[FLOW_TO_EAST]).tolist() == [0, 1_000_000_000]


def _every_second(last: int) -> FlowSpec:
    return FlowSpec(0, VehicleSpec(), ("w_a",), 1.0, 0.0, float(last))


def test_the_vehicle_limit_takes_exactly_max_vehicles_and_refuses_one_more():
    # counted in closed form: nothing is allocated either way
    assert check_departure_counts([_every_second(MAX_VEHICLES - 1)], None, FLOW_SOURCE) == MAX_VEHICLES
    with pytest.raises(ScenarioError) as caught:
        check_departure_counts([_every_second(MAX_VEHICLES)], None, FLOW_SOURCE)
    assert caught.value.field == "[0].interval" and f"{MAX_VEHICLES + 1:,} vehicles" in str(caught.value)


def test_the_trip_table_is_in_departure_order_then_flow_order():
    # flow 0 every 5 s over 0..20, flow 1 one vehicle at 7 s and flow 2 one at 10 s: by hand
    flow = minimal_flow()
    flow[0].update(interval=5, endTime=20)
    flow.append(dict(flow[1], startTime=10, endTime=10))
    scenario = scenario_from_dicts(minimal_roadnet(), flow)
    assert scenario.trips.depart.tolist() == [0, 5, 7, 10, 10, 15, 20]
    assert scenario.trips.flow_index.tolist() == [0, 0, 1, 0, 2, 0, 0]
