"""envs.errors' own helpers: the one-line message, the switch and duration checks, the config path
an error is re-raised under, the entry points' exit and a checkpoint meta's missing key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from envs.errors import (
    DEBUG_ENV,
    EXIT_STATUS,
    CheckpointError,
    ConfigError,
    ScenarioError,
    config_path,
    exit_on_error,
    flag,
    positive_or_none,
    recorded,
)
from tests.minimal_scenario import assert_names_everything


def test_a_long_value_is_cut_to_200_characters_ending_in_dots_and_kept_whole_on_the_error():
    long, short = "x" * 300, "y" * 198  # repr adds the two quotes: 200 characters, not cut
    error = ScenarioError("big.json", "roads", long, "too long")
    assert str(error) == f"big.json: field 'roads' = {repr(long)[:197]}...: too long"
    assert error.value == long
    assert str(ScenarioError("big.json", "roads", short, "ok")) == f"big.json: field 'roads' = {short!r}: ok"


def test_a_source_given_as_a_path_is_kept_as_its_string():
    error = ScenarioError(Path("data") / "roadnet.json", "roads", 3, "bad")
    assert error.source == error.file == str(Path("data") / "roadnet.json")


@pytest.mark.parametrize("value", [True, False])
def test_a_switch_is_taken_only_as_a_bool_and_returned_unchanged(value):
    assert flag(value, "<engine>", "compile") is value


@pytest.mark.parametrize("value", [1, 0, "false", None])
def test_a_switch_given_as_a_number_string_or_null_is_refused_naming_it(value):
    with pytest.raises(ConfigError, match="expected true or false") as refused:
        flag(value, "<engine>", "compile")
    assert_names_everything(refused.value, "<engine>", "compile", value)


@pytest.mark.parametrize("value", [None, 0.5, 30, 1e9])
def test_a_positive_finite_duration_or_null_passes_unchanged(value):
    assert positive_or_none(value, "<config>", "max_green_s", "seconds") is value


@pytest.mark.parametrize("value", [0, 0.0, -1.0, math.inf, math.nan, True, "5"])
def test_a_duration_that_is_not_a_positive_finite_number_is_refused_naming_it_and_its_unit(value):
    with pytest.raises(ConfigError, match="must be a finite number of seconds > 0, or null") as refused:
        positive_or_none(value, "<config>", "max_green_s", "seconds")
    assert_names_everything(refused.value, "<config>", "max_green_s", value)


def test_a_config_error_comes_out_under_the_typed_path_and_own_prefix_is_dropped_only_where_present():
    def refuse(field: str) -> ConfigError:
        with pytest.raises(ConfigError) as caught, config_path("<config>", "env.probes.", own_prefix="probes."):
            raise ConfigError("<probes>", field, 1.5, "bad")
        return caught.value

    assert (refuse("probes.p").source, refuse("probes.p").field) == ("<config>", "env.probes.p")
    assert refuse("xprobes.p").field == "env.probes.xprobes.p"  # no prefix: nothing cut
    with pytest.raises(ScenarioError), config_path("<config>", "env."):
        raise ScenarioError("a.json", "roads", 1, "not a config error: passes through")


def test_an_entry_point_prints_the_error_in_one_line_and_exits_2(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as exited, exit_on_error():
        raise ScenarioError("a.json", "roads", 1, "bad")
    assert exited.value.code == EXIT_STATUS == 2
    assert capsys.readouterr().err == "error: a.json: field 'roads' = 1: bad\n"


@pytest.mark.parametrize("debug", [True, False])
def test_debug_or_the_hydra_switch_lets_the_error_through(debug, monkeypatch):
    if debug:
        monkeypatch.delenv(DEBUG_ENV, raising=False)
    else:
        monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(ScenarioError), exit_on_error(debug=debug):
        raise ScenarioError("a.json", "roads", 1, "bad")


@pytest.mark.parametrize("meta", [{}, {"config": None}, {"config": "scenario"}, {"config": {"scenario": 3}}])
def test_a_meta_lacking_a_recorded_key_or_holding_no_dict_on_its_way_names_the_whole_key(meta):
    with pytest.raises(CheckpointError, match="export needs it") as refused:
        recorded(meta, "p.zip", "config.scenario.name", "export needs it")
    assert_names_everything(refused.value, "p.zip", "config.scenario.name", None)
    assert recorded({"config": {"scenario": {"name": "grid_1x1"}}}, "p.zip", "config.scenario.name", "") == "grid_1x1"
