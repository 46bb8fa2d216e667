"""The CityFlow loader against the shared datasets, CityFlow's generator emulation, the registry."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.errors import ConfigError
from envs.scenario import registry
from envs.scenario.cityflow import (
    FLOW_FILE,
    ROADNET_FILE,
    count_departures,
    departure_steps,
    load_flow,
    load_roadnet,
)
from envs.scenario.departures import departure_count, replay_accumulator
from envs.scenario.spec import FlowSpec, VehicleSpec
from tests.minimal_scenario import assert_names_everything


@dataclass(frozen=True)
class SourcesRow:
    """One row of ../shared/datasets/SOURCES.md (the external reference for these numbers)."""

    intersections: int  # non-virtual
    vehicles_3600: int  # departures at steps 0..3599
    vehicles_all: int  # departures up to the last endTime
    periodic_flows: int | None  # number of flow entries in the periodic form; None: 1 entry/vehicle


SOURCES_MD = {
    "hangzhou_4x4_gudang_18041610_1h": SourcesRow(16, 2983, 2983, None),
    "anon_4_4_hangzhou_real": SourcesRow(16, 2983, 2983, None),
    "anon_4_4_hangzhou_real_5734": SourcesRow(16, 6538, 6538, None),
    "anon_4_4_hangzhou_real_5816": SourcesRow(16, 6984, 6984, None),
    "anon_3_4_jinan_real": SourcesRow(12, 6295, 6295, None),
    "anon_3_4_jinan_real_2000": SourcesRow(12, 4365, 4365, None),
    "anon_3_4_jinan_real_2500": SourcesRow(12, 5494, 5494, None),
    "anon_16_3_newyork_real": SourcesRow(48, 2824, 2824, None),
    "syn_1x1_uniform_800_1h": SourcesRow(1, 800, 808, 8),
    "syn_1x1_uniform_1600_1h": SourcesRow(1, 1600, 1608, 8),
    "syn_1x1_uniform_2400_1h": SourcesRow(1, 2400, 2408, 8),
    "syn_4x4_gaussian_500_1h": SourcesRow(16, 11231, 11231, None),
    "anon_3_3_300_0.3_bi": SourcesRow(9, 2340, 9372, 12),
    "anon_6_6_300_0.3_bi": SourcesRow(36, 4680, 18744, 24),
    "anon_6_6_300_0.3_uni": SourcesRow(36, 2340, 9372, 12),
}

datasets = pytest.mark.datasets


def _load(directory: Path):
    roadnet = load_roadnet(directory / ROADNET_FILE)
    return roadnet, load_flow(directory / FLOW_FILE, roadnet)


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


@datasets
@pytest.mark.parametrize("folder", sorted(SOURCES_MD))
def test_dataset_matches_sources_md(datasets_dir: Path, folder: str) -> None:
    expected = SOURCES_MD[folder]
    roadnet, flows = _load(datasets_dir / folder)

    signalised = [i for i in roadnet.intersections if not i.virtual]
    assert len(signalised) == expected.intersections
    assert all(i.phases and i.road_links for i in signalised)
    # Every road is attached at both ends; a grid of n junctions has at least 2 roads per junction.
    assert len(roadnet.roads) >= 2 * len(signalised)
    assert all(road.length > 0 and road.lanes for road in roadnet.roads)

    assert count_departures(flows.flows, horizon=3600) == expected.vehicles_3600
    assert count_departures(flows.flows) == expected.vehicles_all
    if expected.periodic_flows is None:
        assert len(flows.flows) == expected.vehicles_all
        assert all(f.start_time == f.end_time for f in flows.flows)
    else:
        assert len(flows.flows) == expected.periodic_flows
        assert all(f.end_time > f.start_time for f in flows.flows)


@datasets
def test_every_registry_name_loads(datasets_dir: Path) -> None:
    assert registry.available_datasets(datasets_dir) == registry.known_datasets()
    for name in registry.known_datasets():
        roadnet_path, flow_path = registry.dataset_paths(name, datasets_dir)
        assert roadnet_path.parent.name in SOURCES_MD
        roadnet = load_roadnet(roadnet_path)
        assert len(load_flow(flow_path, roadnet).flows) > 0


@datasets
def test_hangzhou_4x4_shape(datasets_dir: Path) -> None:
    roadnet_path, _ = registry.dataset_paths("hangzhou_4x4", datasets_dir)
    roadnet = load_roadnet(roadnet_path)
    signalised = [i for i in roadnet.intersections if not i.virtual]
    assert len(signalised) == 16
    assert len(roadnet.intersections) == 32  # 16 junctions + 16 boundary nodes
    assert len(roadnet.roads) == 80  # 2 * (4 * 5 + 5 * 4) directed roads, boundaries included
    assert all(len(i.road_links) == 12 and len(i.phases) == 9 for i in signalised)
    assert {len(road.lanes) for road in roadnet.roads} == {3}


@datasets
def test_per_vehicle_flow_departs_at_its_start_time(datasets_dir: Path) -> None:
    roadnet_path, flow_path = registry.dataset_paths("hangzhou_4x4", datasets_dir)
    flows = load_flow(flow_path, load_roadnet(roadnet_path)).flows
    for flow in flows[:200]:
        assert departure_steps(flow).tolist() == [int(flow.start_time)]


@datasets
def test_periodic_flow_departs_every_interval(datasets_dir: Path) -> None:
    roadnet_path, flow_path = registry.dataset_paths("grid_3x3_bi", datasets_dir)
    flows = load_flow(flow_path, load_roadnet(roadnet_path)).flows
    by_interval = {flow.interval: flow for flow in flows}
    assert sorted(by_interval) == [12.0, 40.0]
    steps = departure_steps(by_interval[12.0])
    assert steps[:4].tolist() == [0, 12, 24, 36] and steps[-1] == 14400 and len(steps) == 1201
    assert len(departure_steps(by_interval[40.0], horizon=3600)) == 90


# ---------------------------------------------------------------------------------------------
# Departures: CityFlow Flow::nextStep emulation
# ---------------------------------------------------------------------------------------------


def _flow(interval: float, start: float, end: float) -> FlowSpec:
    return FlowSpec(
        index=0,
        vehicle=VehicleSpec(),
        route=("r",),
        interval=interval,
        start_time=start,
        end_time=end,
    )


def _cityflow_reference(interval: float, start: float, end: float, horizon: int) -> list[int]:
    """Literal transcription of Flow::nextStep, called once per 1 s step from time 0."""
    steps = []
    now_time, current_time = interval, 0.0
    for step in range(horizon):
        if end != -1 and current_time > end:
            break
        if current_time >= start:
            while now_time >= interval:
                steps.append(step)
                now_time -= interval
            now_time += 1.0
        current_time += 1.0
    return steps


@settings(max_examples=300, deadline=None)
@given(
    interval=st.one_of(
        st.floats(0.05, 60.0, allow_nan=False),
        st.integers(1, 60).map(float),
        st.integers(1, 400).map(lambda n: n / 8),  # dyadic: closed form
    ),
    start=st.integers(0, 40),
    duration=st.one_of(st.just(None), st.integers(0, 300)),
    horizon=st.integers(0, 400),
)
def test_departures_match_cityflow_generator(
    interval: float, start: int, duration: int | None, horizon: int
) -> None:
    end = -1.0 if duration is None else float(start + duration)
    expected = _cityflow_reference(interval, float(start), end, horizon)
    got = departure_steps(_flow(interval, float(start), end), horizon=horizon)
    assert got.dtype == np.int64
    assert got.tolist() == expected


@settings(max_examples=300, deadline=None)
@given(
    interval=st.one_of(st.floats(0.05, 60.0, allow_nan=False), st.sampled_from([0.1, 0.2, 0.3, 0.9, 1 / 3])),
    start=st.integers(0, 40),
    span=st.integers(0, 400),
)
def test_departure_count_is_the_number_of_departures(interval: float, start: int, span: int) -> None:
    """What a resampled demand's mean is set to; the closed form was one off for 0.1, 1/3, ..."""
    assert departure_count(_flow(interval, 0.0, 1e9), start, start + span) == len(
        departure_steps(_flow(interval, float(start), float(start + span))))


@settings(max_examples=200, deadline=None)
@given(
    numerator=st.integers(1, 5000), denominator_log2=st.integers(0, 6), span=st.integers(1, 2000)
)
def test_closed_form_equals_float_replay(numerator: int, denominator_log2: int, span: int) -> None:
    interval = numerator / 2**denominator_log2
    closed_form = departure_steps(_flow(interval, 5.0, 5.0 + span))
    assert closed_form.tolist() == replay_accumulator(interval, 5, 5 + span).tolist()


def test_non_dyadic_interval_replays_float_rounding() -> None:
    # 0.1 is not exact in binary; CityFlow's repeated subtraction decides the count, not 1/0.1.
    steps = departure_steps(_flow(0.1, 0.0, 20.0))
    assert steps.tolist() == _cityflow_reference(0.1, 0.0, 20.0, 21)
    assert np.all(np.diff(steps) >= 0)


def test_single_step_flow_emits_one_vehicle_whatever_the_interval() -> None:
    for interval in (0.25, 1.0, 7.0, 1000.0):
        assert departure_steps(_flow(interval, 13.0, 13.0)).tolist() == [13]
    assert departure_steps(_flow(1.0, 13.0, 13.0), horizon=13).tolist() == []


def test_sub_second_interval_emits_several_vehicles_per_step() -> None:
    assert departure_steps(_flow(0.5, 0.0, 2.0)).tolist() == [0, 1, 1, 2, 2]


def test_fractional_start_time_waits_for_the_next_whole_second() -> None:
    assert departure_steps(_flow(2.0, 2.5, 9.0)).tolist() == [3, 5, 7, 9]


def test_periodic_departures_are_counted_in_closed_form() -> None:
    flows = [_flow(float(i % 7 + 1) * 0.5, 0.0, 14400.0) for i in range(100)]
    total = count_departures(flows)
    assert total == sum(math.floor(14400 / f.interval) + 1 for f in flows)


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(ConfigError) as caught:
        registry.dataset_paths("hangzhou_9x9")
    assert caught.value.value == "hangzhou_9x9"
    for name in registry.known_datasets():
        assert name in str(caught.value)


def test_missing_dataset_directory_is_named(tmp_path: Path) -> None:
    missing_root = tmp_path / "no_datasets_here"
    with pytest.raises(ConfigError) as caught:
        registry.dataset_paths("hangzhou_4x4", missing_root)
    message = str(caught.value)
    assert str(missing_root / "anon_4_4_hangzhou_real") in message
    assert registry.DATA_DIR_ENV in message and "scenario.data_dir" in message


def test_missing_flow_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "anon_3_4_jinan_real").mkdir()
    (tmp_path / "anon_3_4_jinan_real" / ROADNET_FILE).write_text("{}")
    with pytest.raises(ConfigError, match="flow.json missing") as refused:
        registry.dataset_paths("jinan_3x4", tmp_path)
    folder = str(tmp_path / "anon_3_4_jinan_real")
    assert_names_everything(refused.value, "<dataset registry>", "scenario.data_dir", folder)
    assert registry.available_datasets(tmp_path) == []


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(registry.DATA_DIR_ENV, str(tmp_path / "from_env"))
    assert registry.data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert registry.data_dir() == tmp_path / "from_env"
    monkeypatch.delenv(registry.DATA_DIR_ENV)
    default = registry.DEFAULT_DATA_DIR
    assert registry.data_dir() == (default if default.is_dir() else None)
    assert registry.DEFAULT_DATA_DIR == registry.PROJECT_ROOT.parent / "shared" / "datasets"
    assert (registry.PROJECT_ROOT / "pyproject.toml").is_file()



def test_the_dataset_tests_skip_reason_names_the_directory_looked_at(tmp_path, monkeypatch) -> None:
    # with GRIDLIGHT_DATA_DIR pointing at a missing folder the reason said "../shared/datasets not
    # found; set GRIDLIGHT_DATA_DIR": the variable was set, and ../shared/datasets may well be there
    from tests.conftest import find_datasets_dir

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(registry.DATA_DIR_ENV, str(tmp_path / "typo"))
    with pytest.raises(pytest.skip.Exception, match=f"{registry.DATA_DIR_ENV}={tmp_path / 'typo'} is not a dir"):
        find_datasets_dir()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"CI=true .*{tmp_path / 'typo'} is not a directory"):
        find_datasets_dir()
    monkeypatch.delenv(registry.DATA_DIR_ENV)
    monkeypatch.setattr(registry, "DEFAULT_DATA_DIR", tmp_path / "shared" / "datasets")
    with pytest.raises(pytest.fail.Exception, match=f"{tmp_path / 'shared'}/datasets not found and .* not set"):
        find_datasets_dir()


def test_registry_names_are_the_agreed_ones() -> None:
    assert registry.known_datasets() == sorted(
        [
            "hangzhou_4x4",
            "hangzhou_4x4_5734",
            "hangzhou_4x4_5816",
            "jinan_3x4",
            "jinan_3x4_2000",
            "jinan_3x4_2500",
            "newyork_16x3",
            "syn_4x4_gaussian",
            "syn_1x1_uniform_800",
            "syn_1x1_uniform_1600",
            "syn_1x1_uniform_2400",
            "grid_3x3_bi",
            "grid_6x6_bi",
            "grid_6x6_uni",
        ]
    )
    assert set(registry.DATASETS.values()) <= set(SOURCES_MD)


def test_each_registry_name_reads_the_folder_its_name_describes() -> None:
    # a name reading a sibling folder (jinan's 2500 for its 2000) would load a valid scenario with
    # another demand: every word of a short name is a word of its folder ("RxC" written R_C in the
    # anon_ folders, "grid" their "anon"), and no two names share a folder
    for name, folder in registry.DATASETS.items():
        words = set(folder.split("_"))
        for word in name.split("_"):
            if word == "grid":
                assert "anon" in words, (name, folder)
            elif "x" in word and word.replace("x", "").isdigit():
                assert word in words or set(word.split("x")) <= words and word.replace("x", "_") in folder, \
                    (name, folder)
            else:
                assert word in words, (name, folder)
    assert len(set(registry.DATASETS.values())) == len(registry.DATASETS)


def test_unknown_scenario_name_is_a_config_error_listing_known_names() -> None:
    from envs.errors import ConfigError
    from envs.scenario import known_scenarios, load_scenario

    with pytest.raises(ConfigError) as caught:
        load_scenario("hangzhou_9x9")
    assert caught.value.field == "scenario.name" and caught.value.value == "hangzhou_9x9"
    assert all(name in str(caught.value) for name in known_scenarios())


def test_a_dataset_name_loads_from_the_data_dir_given_and_records_it_and_the_horizon(tmp_path: Path) -> None:
    from envs.scenario import load_scenario
    from envs.scenario.cityflow import write_cityflow
    from envs.scenario.presets import PRESETS

    roadnet, flow, _ = PRESETS["grid_1x1"](seed=0)  # a tiny stand-in under jinan_3x4's folder name
    write_cityflow(tmp_path / "anon_3_4_jinan_real", roadnet, flow)
    scenario = load_scenario("jinan_3x4", data_dir=tmp_path, horizon=60)
    assert scenario.name == "jinan_3x4" and scenario.network.num_intersections == 1
    assert scenario.info == {"dataset": "jinan_3x4", "data_dir": str(tmp_path), "horizon": 60}
    assert 0 < int(scenario.trips.depart.max()) < 60


def test_unread_seed_of_known_complains_only_for_a_known_scenario_or_a_path(tmp_path: Path) -> None:
    from envs.scenario import unread_seed, unread_seed_of_known

    assert unread_seed_of_known("hangzhou_4x4", 3) == unread_seed("hangzhou_4x4", 3) and unread_seed("hangzhou_4x4", 3)
    assert unread_seed_of_known(str(tmp_path / "mine"), 3) == unread_seed(str(tmp_path / "mine"), 3)
    assert unread_seed_of_known("grid_4x4", 3) is None and unread_seed_of_known("hangzhou_4x4", 0) is None
    assert unread_seed_of_known("hangzhou_9x9", 3) is None  # unknown: the loader's "unknown scenario" error
