"""Bad scenario input must raise ScenarioError naming the file, the JSON path and the value.

Every case starts from a tiny valid two-junction network (`minimal_roadnet` / `minimal_flow`,
pictured in `tests.minimal_scenario`) and breaks exactly one thing. The roadnet and flow-file
cases are in `tests/test_roadnet_errors.py` and `tests/test_flow_errors.py`; here: the valid
scenario, files and JSON, open-ended flows.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from envs.errors import ScenarioError
from envs.scenario import scenario_from_dicts, scenario_from_files
from envs.scenario.cityflow import (
    departure_steps,
    load_flow,
    load_roadnet,
    parse_flow,
    parse_roadnet,
    write_cityflow,
)
from envs.scenario.spec import FlowSpec, VehicleSpec
from tests.minimal_scenario import (
    FLOW_SOURCE,
    FLOW_TO_EAST,
    JUNCTION_A,
    ROAD_A_B,
    ROADNET_SOURCE,
    assert_names_everything,
    minimal_flow,
    minimal_roadnet,
)


def test_minimal_scenario_is_valid_and_keeps_every_value() -> None:
    roadnet = parse_roadnet(minimal_roadnet(), ROADNET_SOURCE)
    flows = parse_flow(minimal_flow(), FLOW_SOURCE, roadnet)
    assert [i.id for i in roadnet.intersections if not i.virtual] == ["A", "B"]
    assert all(i.phases == () for i in roadnet.intersections if i.virtual)  # trafficLight ignored
    assert [p.road_links for p in roadnet.intersections[JUNCTION_A].phases] == [(0,), ()]
    assert roadnet.roads[ROAD_A_B].length == pytest.approx(280.0)
    lane_links = roadnet.intersections[JUNCTION_A].road_links[0].lane_links
    assert lane_links[0].length == pytest.approx(20.0)  # drawn polyline
    assert lane_links[1].length == pytest.approx(20.0)  # no points: gap between the two roads
    assert [f.route for f in flows.flows] == [("w_a", "a_b", "b_e"), ("w_a", "a_b", "b_n")]
    assert flows.flows[0].vehicle.max_speed == 11.111


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    roadnet_path, flow_path = write_cityflow(
        tmp_path / "generated", minimal_roadnet(), minimal_flow()
    )
    assert json.loads(roadnet_path.read_text()) == minimal_roadnet()
    roadnet = load_roadnet(roadnet_path)
    flows = load_flow(flow_path, roadnet)
    assert roadnet.source == str(roadnet_path) and flows.source == str(flow_path)
    assert len(flows.flows) == 2


def test_malformed_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "roadnet.json"
    path.write_text('{"roads": [],\n "intersections": [,]}')
    with pytest.raises(ScenarioError) as caught:
        load_roadnet(path)
    err = caught.value
    assert err.file == str(path) and str(path) in str(err)
    assert err.field == "<json>"
    assert "line 2 column 20" in err.reason


def test_malformed_flow_json_names_file(tmp_path: Path) -> None:
    roadnet = parse_roadnet(minimal_roadnet(), ROADNET_SOURCE)
    path = tmp_path / "flow.json"
    path.write_text('[{"route": ["w_a"]')
    with pytest.raises(ScenarioError, match=r"flow\.json.*'<json>'.*line 1"):
        load_flow(path, roadnet)


def test_json_nested_past_pythons_stack_names_the_file(tmp_path: Path) -> None:
    roadnet = parse_roadnet(minimal_roadnet(), ROADNET_SOURCE)
    path = tmp_path / "flow.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ScenarioError, match="nested too deeply") as caught:  # was a RecursionError
        load_flow(path, roadnet)
    assert (caught.value.file, caught.value.field) == (str(path), "<json>")


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent" / "roadnet.json"
    with pytest.raises(ScenarioError) as caught:
        load_roadnet(path)
    assert caught.value.file == str(path) and "not found" in caught.value.reason


def test_roadnet_root_must_be_object() -> None:
    with pytest.raises(ScenarioError, match="expected a JSON object"):
        parse_roadnet([1, 2], ROADNET_SOURCE)


def test_valid_input_is_not_mutated() -> None:
    roadnet_obj, flow_obj = minimal_roadnet(), minimal_flow()
    before = copy.deepcopy((roadnet_obj, flow_obj))
    parse_flow(flow_obj, FLOW_SOURCE, parse_roadnet(roadnet_obj, ROADNET_SOURCE))
    assert (roadnet_obj, flow_obj) == before


def test_open_ended_flow_needs_a_horizon() -> None:
    flow = FlowSpec(
        index=4, vehicle=VehicleSpec(), route=("w_a",), interval=2.0, start_time=0.0, end_time=-1.0
    )
    with pytest.raises(ScenarioError) as caught:
        departure_steps(flow, source=FLOW_SOURCE)
    assert_names_everything(caught.value, FLOW_SOURCE, "[4].endTime", -1.0)
    assert departure_steps(flow, horizon=7).tolist() == [0, 2, 4, 6]


def test_open_ended_flow_is_accepted_by_the_parser() -> None:
    flow_obj = minimal_flow()
    del flow_obj[FLOW_TO_EAST]["endTime"]  # CityFlow's default: no end
    flows = parse_flow(flow_obj, FLOW_SOURCE, parse_roadnet(minimal_roadnet(), ROADNET_SOURCE))
    assert flows.flows[FLOW_TO_EAST].end_time == -1


def test_a_generated_scenario_names_its_generated_source_in_roadnet_and_flow_errors() -> None:
    roadnet = minimal_roadnet()
    roadnet["roads"][ROAD_A_B]["lanes"][0]["maxSpeed"] = -1.0
    with pytest.raises(ScenarioError) as refused:
        scenario_from_dicts(roadnet, minimal_flow(), name="mine")
    assert_names_everything(refused.value, "<generated:mine>", f"roads[{ROAD_A_B}].lanes[0].maxSpeed", -1.0)
    flow = minimal_flow()
    flow[FLOW_TO_EAST]["route"][1] = "nowhere"
    with pytest.raises(ScenarioError) as refused:
        scenario_from_dicts(minimal_roadnet(), flow, name="mine")
    assert_names_everything(refused.value, "<generated:mine>", f"[{FLOW_TO_EAST}].route[1]", "nowhere")
    scenario = scenario_from_dicts(minimal_roadnet(), minimal_flow(), name="mine", horizon=50, info={"k": 1})
    assert scenario.name == "mine" and scenario.info == {"k": 1, "horizon": 50}


def test_scenario_from_files_cuts_at_the_horizon_given_and_records_it_with_the_roadnet(tmp_path: Path) -> None:
    roadnet_path, flow_path = write_cityflow(tmp_path, minimal_roadnet(), minimal_flow())
    whole, cut = scenario_from_files(roadnet_path, flow_path), scenario_from_files(roadnet_path, flow_path, horizon=50)
    assert whole.name == cut.name == str(roadnet_path)
    assert cut.info == {"roadnet": str(roadnet_path), "horizon": 50} and whole.info["horizon"] is None
    assert int(whole.trips.depart.max()) == 100 and int(cut.trips.depart.max()) == 45
