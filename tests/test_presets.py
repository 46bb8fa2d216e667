"""The generated presets, their round trip through the loader, and the generator's CLI."""

from __future__ import annotations

import json

import pytest

from envs.errors import ConfigError
from envs.scenario import cityflow, generate, load_scenario, presets
from envs.scenario.presets import DEFAULT_PRESET, PRESETS
from tests.roadnet_dicts import check_flow_format, signalised_intersections

# ------------------------------------------------------------------------------------------
# presets, loader round trip, CLI
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=sorted(PRESETS))
def preset(request) -> tuple[str, dict, list, dict]:
    roadnet, flow, info = PRESETS[request.param](seed=0)
    return request.param, roadnet, flow, info


EXPECTED_SIGNALS = {
    "grid_1x1": 1, "grid_4x4": 16, "grid_4x4_peak": 16, "grid_6x6": 36, "grid_16x8": 128,
}


def test_preset_shapes_and_info(preset) -> None:
    name, roadnet, flow, info = preset
    assert len(signalised_intersections(roadnet)) == EXPECTED_SIGNALS[name]
    assert info["preset"] == name and info["seed"] == 0
    assert info["vehicles"] == len(flow) > 0
    assert info["horizon"] == 3600
    assert json.loads(json.dumps(info)) == info  # provenance must be storable as JSON
    check_flow_format(flow, info["horizon"])


def test_preset_round_trips_through_the_loader(preset, tmp_path) -> None:
    name, roadnet, flow, _ = preset
    roadnet_spec = cityflow.parse_roadnet(roadnet, f"<generated:{name}>")
    flow_spec = cityflow.parse_flow(flow, f"<generated:{name}>", roadnet_spec)
    assert len(flow_spec.flows) == len(flow)
    assert sum(not i.virtual for i in roadnet_spec.intersections) == EXPECTED_SIGNALS[name]
    assert cityflow.count_departures(flow_spec.flows) == len(flow)

    cityflow.write_cityflow(tmp_path, roadnet, flow)
    reloaded_roadnet = json.loads((tmp_path / "roadnet.json").read_text())
    reloaded_flow = json.loads((tmp_path / "flow.json").read_text())
    assert reloaded_roadnet == roadnet
    assert reloaded_flow == flow
    reloaded_spec = cityflow.load_roadnet(tmp_path / "roadnet.json")
    assert reloaded_spec.roads == roadnet_spec.roads
    assert len(cityflow.load_flow(tmp_path / "flow.json", reloaded_spec).flows) == len(flow)


def test_default_preset_is_grid_4x4() -> None:
    assert DEFAULT_PRESET == "grid_4x4"
    roadnet, flow, info = PRESETS[DEFAULT_PRESET]()
    assert (info["rows"], info["cols"], info["road_length"]) == (4, 4, 300.0)
    assert info["lanes"] == ["L", "S", "R"]
    assert info["rate_per_origin"] == presets.UNIFORM_RATE_PER_ORIGIN
    assert PRESETS["grid_4x4"](seed=0)[1] == flow
    assert PRESETS["grid_4x4"](seed=1)[1] != flow


def test_cli_writes_a_loadable_scenario(tmp_path, capsys) -> None:
    out = tmp_path / "scenario"
    assert generate.main(["--preset", "grid_1x1", "--seed", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    roadnet = json.loads((out / "roadnet.json").read_text())
    flow = json.loads((out / "flow.json").read_text())
    _, expected_flow, info = PRESETS["grid_1x1"](seed=3)
    summary, info_line = printed.splitlines()
    assert f"1 signalised intersections, 4 virtual, {len(roadnet['roads'])} roads, {len(flow)} vehicles" in summary
    assert json.loads(info_line) == info
    assert flow == expected_flow


def test_cli_seed_defaults_to_0_and_a_bad_one_is_one_line_on_stderr_exit_2_and_nothing_written(tmp_path, capsys):
    assert generate.main(["--preset", "grid_1x1", "--out", str(tmp_path / "default")]) == 0
    assert json.loads((tmp_path / "default" / "flow.json").read_text()) == PRESETS["grid_1x1"](seed=0)[1]
    capsys.readouterr()
    assert generate.main(["--preset", "grid_1x1", "--seed", "-1", "--out", str(tmp_path / "bad")]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err.startswith("error: <preset grid_1x1>: field 'seed' = -1: ")
    assert printed.err.count("\n") == 1 and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_a_bad_preset_seed_is_a_config_error_naming_the_preset(seed) -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario("grid_1x1", seed=seed)
    assert info.value.source == "<preset grid_1x1>"
    assert info.value.field == "seed" and info.value.value is seed


@pytest.mark.parametrize("below", ["", "sub"])
def test_cli_out_on_a_file_is_one_line_naming_the_option_not_a_traceback(tmp_path, capsys, below) -> None:
    """--out naming a file (or a folder under one) raised FileExistsError / NotADirectoryError
    from mkdir, a traceback."""
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    out = taken / below if below else taken
    assert generate.main(["--preset", "grid_1x1", "--out", str(out)]) == 2
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == (
        f"error: <command line>: field '--out' = '{out}': cannot write roadnet.json and flow.json there: "
        "a file is in the way: not a folder\n")
    assert taken.read_text() == "keep me"


def test_write_cityflow_into_a_file_is_a_config_error_naming_the_directory(tmp_path) -> None:
    from envs.scenario.cityflow import write_cityflow
    from tests.minimal_scenario import assert_names_everything

    taken = tmp_path / "taken"
    taken.write_text("")
    with pytest.raises(ConfigError) as caught:
        write_cityflow(taken, {}, [])
    assert_names_everything(caught.value, "<write_cityflow>", "directory", str(taken))
