"""CityFlow files that passed the loader although CityFlow refuses them or reads them otherwise,
and files the writer left half-written: each is now one error naming the file, field and value."""

from __future__ import annotations

import numpy as np
import pytest

from envs.errors import ConfigError, ScenarioError
from envs.scenario import generate, load_scenario
from envs.scenario.cityflow import FLOW_FILE, ROADNET_FILE, write_cityflow
from tests.minimal_scenario import (
    JUNCTION_B,
    ROADNET_SOURCE,
    assert_mutation_rejected,
    minimal_flow,
    minimal_roadnet,
    set_path,
)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("a_c", "names an unknown road"), (3, "expected a road id string, got number")],
)
def test_an_intersections_roads_must_name_known_roads(name, reason):
    # CityFlow reads an intersection's "roads" list and refuses a name that is no road
    # ("No such road"); gridlight did not read it, so a stale or misspelt id passed unnoticed
    assert_mutation_rejected(
        lambda r, f: set_path(r, ("intersections", JUNCTION_B, "roads"), ["a_b", name]),
        ROADNET_SOURCE, "intersections[2].roads[1]", name, reason,
    )


def test_an_integer_too_long_for_python_is_one_error(tmp_path):
    # json.loads raised a bare ValueError (Python's 4300-digit limit) out of load_scenario: a traceback
    write_cityflow(tmp_path, minimal_roadnet(), minimal_flow())
    text = (tmp_path / FLOW_FILE).read_text().replace('"interval": 5.0', '"interval": ' + "9" * 5000, 1)
    (tmp_path / FLOW_FILE).write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path)
    assert caught.value.file == str(tmp_path / FLOW_FILE) and caught.value.field == "<json>"
    assert caught.value.value == f"<5000 digits at char {text.index('9' * 5000)}>"
    assert "unreadable number" in caught.value.reason


@pytest.mark.parametrize(
    ("file", "replace", "field", "values"),
    [
        (ROADNET_FILE, ('"maxSpeed": 11.0', '"maxSpeed": 11.0, "maxSpeed": 30'), "roads[0].lanes[0].maxSpeed",
         [11.0, 30]),
        (FLOW_FILE, ('"interval": 5.0', '"interval": 5.0, "interval": 0.5'), "[0].interval", [5.0, 0.5]),
    ],
)
def test_a_key_given_twice_is_refused(tmp_path, file, replace, field, values):
    # Python's json keeps the last value, CityFlow's reader (rapidjson) the first: the same file
    # was a different scenario in each, without a word
    write_cityflow(tmp_path, minimal_roadnet(), minimal_flow())
    (tmp_path / file).write_text((tmp_path / file).read_text().replace(*replace, 1))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path)
    assert (caught.value.file, caught.value.field, caught.value.value) == (str(tmp_path / file), field, values)
    assert "key given twice" in caught.value.reason


@pytest.mark.parametrize("value", [np.float32(5.0), float("nan"), float("inf")])
def test_write_cityflow_refuses_what_json_cannot_hold_before_writing(tmp_path, value):
    # json.dump raised a bare TypeError halfway through flow.json (a numpy number), leaving
    # roadnet.json and a cut-short flow.json; NaN and Infinity were written as tokens CityFlow refuses
    flow = minimal_flow()
    flow[1]["interval"] = value
    with pytest.raises(ConfigError) as caught:
        write_cityflow(tmp_path / "out", minimal_roadnet(), flow)
    assert caught.value.field == "flow_obj[1].interval" and caught.value.value is value
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("out", ["", " "])
def test_generate_refuses_an_empty_out(tmp_path, monkeypatch, capsys, out):
    # --out "$UNSET" wrote roadnet.json and flow.json into the current folder (over any there) and
    # printed "wrote " with nothing after it
    monkeypatch.chdir(tmp_path)
    assert generate.main(["--preset", "grid_1x1", "--out", out]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == f"error: <command line>: field '--out' = {out!r}: empty: name the folder to write\n"
    assert list(tmp_path.iterdir()) == []
