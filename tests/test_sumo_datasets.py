"""The SUMO importer on RESCO's small scenarios (cologne1, ingolstadt7, grid4x4; cologne3 for agents): run under
CI=true, skipped elsewhere when ../shared/datasets is absent (the `datasets_dir` fixture)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import torch

from agents.classical import FixedTime, MaxPressure
from envs.engine import Simulator
from envs.scenario import load_scenario, scenario_from_files
from envs.scenario.cityflow import write_cityflow
from envs.scenario.registry import SUMO_DATASETS
from envs.scenario.sumo import import_sumo
from envs.scenario.sumo.config import find_config, read_config
from tests.engine_checks import check_all, permissive_movements

SMALL = ("resco_cologne1", "resco_ingolstadt7", "resco_grid4x4")
# signalised junctions and vehicles in the route file (grep -c '<trip\|<vehicle' *.rou.xml)
EXPECTED = {"resco_cologne1": (1, 2015), "resco_ingolstadt7": (7, 3031),
            "resco_grid4x4": (16, 1473)}
LEFT_OUT = ("vehicles_before_begin_left_out", "vehicles_after_end_left_out",
            "trips_without_route_left_out", "routes_through_left_out_turns_left_out")


def test_every_registered_sumo_folder_has_one_config(datasets_dir):
    for name, folder in SUMO_DATASETS.items():
        config = read_config(find_config(datasets_dir / folder))
        assert config.net_file.is_file() and all(f.is_file() for f in config.route_files), name


@pytest.mark.parametrize("name", SMALL)
def test_every_vehicle_is_kept_or_counted(datasets_dir, name):
    scenario = load_scenario(name, data_dir=datasets_dir)
    report = scenario.info["sumo_report"]
    signals, vehicles = EXPECTED[name]
    assert report["signalised_junctions"] == signals
    left_out = sum(report.get(kind, 0) for kind in LEFT_OUT)
    assert scenario.trips.num_trips + left_out == vehicles
    kept = sum(v for k, v in report.items() if k.startswith("vehicles_") and k not in LEFT_OUT)
    assert kept == scenario.trips.num_trips
    assert int(scenario.trips.depart.min()) >= 0 and int(scenario.trips.depart.max()) < 3600


@pytest.mark.parametrize("name", SMALL)
def test_yellow_folding_keeps_each_cycle_length(datasets_dir, name):
    scenario = load_scenario(name, data_dir=datasets_dir)
    root = ET.parse(read_config(find_config(datasets_dir / SUMO_DATASETS[name])).net_file).getroot()
    cycle = {tl.get("id"): sum(float(p.get("duration")) for p in tl.iter("phase"))
             for tl in root.iter("tlLogic")}
    controlled = {}  # junction -> its traffic light, from the connections it holds
    edge_end = {e.get("id"): e.get("to") for e in root.iter("edge")}
    for connection in root.iter("connection"):
        if connection.get("tl") and not connection.get("from").startswith(":"):
            controlled[edge_end[connection.get("from")]] = connection.get("tl")
    net = scenario.network
    checked = [i for i, junction in enumerate(net.intersection_ids) if junction in controlled]
    assert len(checked) == EXPECTED[name][0]  # every signalised junction compared, not none
    for i in checked:
        tl = controlled[net.intersection_ids[i]]
        assert float(net.phase_duration[i].sum()) == pytest.approx(cycle[tl]), tl


@pytest.mark.parametrize("name", SMALL)
def test_cityflow_round_trip(datasets_dir, tmp_path, name):
    scenario = load_scenario(name, data_dir=datasets_dir)
    imported = import_sumo(datasets_dir / SUMO_DATASETS[name])
    back = scenario_from_files(*write_cityflow(tmp_path, imported.roadnet, imported.flow))
    for field, value in scenario.network.__dict__.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, getattr(back.network, field)), field
    assert (back.trips.depart == scenario.trips.depart).all()
    assert (back.trips.routes == scenario.trips.routes).all()


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("controller", [FixedTime, MaxPressure])
def test_engine_invariants_hold(datasets_dir, name, controller):
    scenario = load_scenario(name, data_dir=datasets_dir)
    sim = Simulator(scenario.network, scenario.demand(1))
    yielding = permissive_movements(scenario)  # may cross the greens they yield to (SUMO's 'g')
    control = controller()
    control.reset(sim)
    for _ in range(120):
        before = sim.snapshot()
        sim.step(control.act(sim))
        check_all(sim.network, sim.demand, sim.params, before, sim.state, yielding)
    assert int((sim.state.veh_lane[:, :-1] >= 0).sum()) > 0


def test_every_sumo_scenario_is_a_cli_option_and_evaluate_runs_one(datasets_dir, tmp_path):
    import csv

    import evaluate
    from tests.test_configs import CONFIGS
    from tests.test_evaluate import evaluate_config

    assert set(SUMO_DATASETS) <= {p.stem for p in (CONFIGS / "scenario").glob("*.yaml")}
    cfg = evaluate_config("scenario=resco_cologne1", f"scenario.data_dir={datasets_dir}", "eval.steps=300",
                          "eval.seeds=1", "eval.progress=false", "controllers=[fixed_time,max_pressure]")
    evaluate.evaluate(cfg, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert {r["controller"] for r in rows} == {"fixed_time", "max_pressure"}
    assert all(float(r["vehicles/departed"]) > 0 for r in rows)


# agents, signalised agents, and the phase counts of the signalised ones, as environments.md states them
AGENTS = {"resco_cologne3": (22, [3, 4, 4]), "resco_ingolstadt7": (43, [2, 3, 3, 3, 3, 3, 3])}


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_every_kept_junction_is_an_agent_and_an_unsignalised_one_has_one_allowed_action(datasets_dir, name):
    import envs
    total, phases = AGENTS[name]
    par = envs.parallel_env(scenario=name, episode_s=30, data_dir=str(datasets_dir))
    _, infos = par.reset(seed=0)
    assert len(par.possible_agents) == total
    again = envs.parallel_env(scenario=name, episode_s=30, data_dir=str(datasets_dir))
    assert par.possible_agents == again.possible_agents
    lights = load_scenario(name, data_dir=datasets_dir).info["sumo_lights"]
    assert par.possible_agents == list(lights)  # the SUMO junction ids, in the network's order
    counts = {a: par.action_space(a).n for a in par.possible_agents}
    assert sorted(n for a, n in counts.items() if lights[a]["tls_id"] is not None) == phases
    assert all(n == 1 for a, n in counts.items() if lights[a]["tls_id"] is None)
    for agent, n in counts.items():
        mask = infos[agent]["action_mask"]
        assert mask[:n].all() and not mask[n:].any(), agent
