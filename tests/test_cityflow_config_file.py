"""A user's own CityFlow folder as other tools leave it: CityFlow's ``config.json`` beside the two
files (`envs/scenario/cityflow_config.py`), routes written as CityFlow's anchor points, and a phase
that greens crossing links. Each is honoured where it says what gridlight does anyway, else refused
naming the file, the field and the value."""

from __future__ import annotations

import json

import pytest

from envs.errors import ConfigError, ScenarioError
from envs.scenario import load_scenario
from envs.scenario.cityflow import write_cityflow
from envs.scenario.presets import PRESETS
from tests.minimal_scenario import assert_names_everything, minimal_flow, minimal_roadnet

# what CityFlow's own examples/config.json holds (its documented keys)
CITYFLOW_CONFIG = {"interval": 1.0, "seed": 0, "dir": "examples/", "roadnetFile": "roadnet.json",
                   "flowFile": "flow.json", "rlTrafficLight": False, "laneChange": False, "saveReplay": True,
                   "roadnetLogFile": "frontend/web/roadnetLogFile.json", "replayLogFile": "frontend/web/replay.txt"}


def folder_with_config(tmp_path, config, roadnet=None, flow=None):
    folder = tmp_path / "city"
    write_cityflow(folder, roadnet or minimal_roadnet(), flow or minimal_flow())
    text = config if isinstance(config, str) else json.dumps(config)
    (folder / "config.json").write_text(text, encoding="utf-8")
    return folder


def test_cityflow_config_that_says_what_gridlight_runs_is_accepted(tmp_path):
    plain = tmp_path / "plain"
    write_cityflow(plain, minimal_roadnet(), minimal_flow())
    expected = load_scenario(str(plain)).trips.depart
    for config in (CITYFLOW_CONFIG, {**CITYFLOW_CONFIG, "roadnetFile": "./roadnet.json", "interval": 1},
                   {"some_other_tool": 1}):  # a config.json that is not CityFlow's is not read
        folder = folder_with_config(tmp_path, config)
        assert (load_scenario(str(folder)).trips.depart == expected).all()


@pytest.mark.parametrize("key, value, says", [
    ("interval", 0.5, "steps 1 s"),
    ("interval", 2, "steps 1 s"),
    ("interval", "1", "expected a number"),
    ("laneChange", True, "no lane changes"),
    ("roadnetFile", "roadnet_4X4.json", "reads the folder's roadnet.json"),
    ("flowFile", "anon_4_4_hangzhou_real.json", "reads the folder's flow.json"),
    ("flowFile", 3, "expected a string"),
])
def test_cityflow_config_that_asks_for_what_gridlight_does_not_run_is_refused(tmp_path, key, value, says):
    folder = folder_with_config(tmp_path, {**CITYFLOW_CONFIG, key: value})
    with pytest.raises(ScenarioError) as refused:
        load_scenario(str(folder))
    assert_names_everything(refused.value, str(folder / "config.json"), key, value)
    assert says in refused.value.reason


def test_malformed_cityflow_config_is_refused_naming_it(tmp_path):
    folder = folder_with_config(tmp_path, '{"interval": 1.0, "roadnetFile": "roadnet.json",}')
    with pytest.raises(ScenarioError, match="malformed JSON") as refused:
        load_scenario(str(folder))
    assert refused.value.file == str(folder / "config.json")


def test_folder_with_only_cityflow_config_and_other_file_names_says_which_files_it_names(tmp_path):
    folder = tmp_path / "libsignal"
    write_cityflow(folder, minimal_roadnet(), minimal_flow())
    (folder / "roadnet.json").rename(folder / "roadnet_4X4.json")
    (folder / "flow.json").rename(folder / "hangzhou.json")
    (folder / "config.json").write_text(json.dumps({**CITYFLOW_CONFIG, "roadnetFile": "roadnet_4X4.json",
                                                   "flowFile": "hangzhou.json"}))
    with pytest.raises(ConfigError) as refused:
        load_scenario(str(folder))
    assert_names_everything(refused.value, "<scenario path>", "scenario.name", str(folder))
    assert ("its config.json (CityFlow's) names roadnetFile 'roadnet_4X4.json' and flowFile 'hangzhou.json'"
            in refused.value.reason)


def test_route_with_a_gap_says_cityflow_would_fill_it_and_gridlight_needs_every_road(tmp_path):
    flow = minimal_flow()
    flow[0]["route"] = ["w_a", "b_e"]  # CityFlow's anchor points: it would drive a_b between them
    folder = tmp_path / "anchors"
    write_cityflow(folder, minimal_roadnet(), flow)
    with pytest.raises(ScenarioError) as refused:
        load_scenario(str(folder))
    assert_names_everything(refused.value, str(folder / "flow.json"), "[0].route[1]", "b_e")
    assert "CityFlow reads a route as anchor points" in refused.value.reason


def test_phase_greening_crossing_links_is_named_by_its_json_path_and_says_how_to_allow_it(tmp_path):
    roadnet, flow, _ = PRESETS["grid_1x1"](0)
    index, junction = next((k, x) for k, x in enumerate(roadnet["intersections"]) if not x["virtual"])
    every_link = list(range(len(junction["roadLinks"])))
    junction["trafficLight"]["lightphases"] = [{"time": 30, "availableRoadLinks": every_link}]
    write_cityflow(tmp_path / "all_green", roadnet, flow)
    with pytest.raises(ScenarioError) as refused:
        load_scenario(str(tmp_path / "all_green"))
    field = f"intersections[{index}].trafficLight.lightphases[0].availableRoadLinks"
    assert_names_everything(refused.value, str(tmp_path / "all_green" / "roadnet.json"), field, every_link)
    assert junction["id"] in refused.value.reason and "permissiveRoadLinks" in refused.value.reason


def test_an_index_written_as_a_float_says_to_drop_the_decimal_point(tmp_path):
    roadnet = minimal_roadnet()  # exporters that pass numbers through numpy write 1.0 for 1
    roadnet["intersections"][2]["trafficLight"]["lightphases"][0]["availableRoadLinks"] = [0.0]
    write_cityflow(tmp_path / "floats", roadnet, minimal_flow())
    with pytest.raises(ScenarioError) as refused:
        load_scenario(str(tmp_path / "floats"))
    field = "intersections[2].trafficLight.lightphases[0].availableRoadLinks[0]"
    assert_names_everything(refused.value, str(tmp_path / "floats" / "roadnet.json"), field, 0.0)
    assert "without a decimal point" in refused.value.reason
