"""An exported policy on SUMO's lights (benchmarks/sumo_deployed.py): the runtime's request built
from SUMO's state, its replies shown as SUMO states (yellow on the connections losing green, then
all-red, then the new green; never two phases' greens at once). A stand-in for TraCI runs
tests/sumo_fixtures.py's one-light scenario, so SUMO is not needed; the last test runs the real
SUMO on resco_cologne1 and skips without eclipse-sumo or the dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from sumo_deployed import DeployedLights, run_deployed  # noqa: E402

from agents.deploy.export import export_policy  # noqa: E402
from agents.deploy.runtime import PolicyRuntime  # noqa: E402
from envs.engine.state import TIMER_START  # noqa: E402
from envs.errors import ConfigError, ModelError  # noqa: E402
from envs.scenario import scenario_from_sumo  # noqa: E402
from envs.scenario.sumo.net_reader import read_net  # noqa: E402
from tests.deploy_fixtures import OBSERVATIONS, untrained  # noqa: E402
from tests.sumo_fixtures import write_tiny  # noqa: E402

APPROACH = ["approach_moving", "approach_halting"]
OBSERVED = OBSERVATIONS[:-1] + APPROACH + OBSERVATIONS[-1:]
# the tiny net's light C: phase 0 'Ggr' (WC straight and left), phase 1 'rrG' (NC left); its
# yellows 'yyr' / 'rry' are the program's, not shown by the deployed policy
GREENS = ["Ggr", "rrG"]


def export(scenario, folder: Path) -> tuple[Path, dict]:
    checkpoint = untrained(scenario, "shared", folder / "policy.zip", observations=OBSERVED)
    onnx_path, meta_path = export_policy(checkpoint, folder / "export", scenario=scenario)
    return onnx_path, json.loads(meta_path.read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(onnx path, metadata, SumoNet) of an untrained policy exported on the one-light scenario."""
    folder = write_tiny(tmp_path_factory.mktemp("tiny") / "scenario")
    onnx_path, meta = export(scenario_from_sumo(folder / "tiny.sumocfg"), folder)
    return onnx_path, meta, read_net(folder / "tiny.net.xml")


class FakeTraci:
    """TraCI's calls the bridge makes; `vehicles`: SUMO lane -> {vehicle: (front position, speed)};
    `lengths` / `links` (lane -> [(next lane, internal lane)]): the stand-in's lanes; the light's
    states as set are `shown` (one entry per call)."""

    LENGTHS = {"WC_1": 100.0, "WC_2": 250.0, "NC_0": 50.0}  # WC_2 longer than the net's: room beyond 100 m

    def __init__(self, vehicles: dict, lengths: dict | None = None, links: dict | None = None) -> None:
        self.shown, lengths, links = [], lengths or self.LENGTHS, links or {}
        self.lane = SimpleNamespace(
            getIDList=lambda: list(lengths), getLength=lengths.__getitem__,
            getLinks=lambda lane, extended=True: [(to, True, True, False, via, "G", "s", 0.0)
                                                  for to, via in links.get(lane, [])])
        self.trafficlight = SimpleNamespace(setRedYellowGreenState=lambda tls, state: self.shown.append((tls, state)))
        self.put(vehicles)

    def put(self, vehicles: dict) -> None:
        """The vehicles SUMO holds now."""
        where = {v: value for lane in vehicles.values() for v, value in lane.items()}
        self.lane.getLastStepVehicleIDs = lambda lane: list(vehicles.get(lane, {}))
        self.vehicle = SimpleNamespace(getLanePosition=lambda v: where[v][0], getSpeed=lambda v: where[v][1])


def bridge(tiny, vehicles=None, sensing="road", **lanes) -> DeployedLights:
    onnx_path, meta, net = tiny
    lights = DeployedLights(FakeTraci(vehicles or {}, **lanes), meta, net, ("lane_count", "lane_halting", *APPROACH),
                            str(onnx_path), sensing)
    lights.start()
    return lights


def greens(state: str) -> set[int]:
    return {k for k, c in enumerate(state) if c in "Gg"}


def test_the_request_reads_sumos_lanes_in_the_metadata_order(tiny):
    # gridlight's WC_0 is the leftmost lane, SUMO's WC_2; WC_0 (SUMO's) is a sidewalk
    vehicles = {"WC_2": {"a": (245.0, 0.0), "b": (200.0, 8.0), "c": (100.0, 0.0), "d": (20.0, 0.09)},
                "WC_1": {"e": (60.0, 0.1)}, "WC_0": {"walker": (50.0, 0.0)}}
    lights = bridge(tiny, vehicles)
    assert tiny[1]["intersections"][0]["in_lanes"] == ["WC_0", "WC_1", "NC_0"]
    readings = lights.request(0)["intersections"]["C"]
    assert readings["lane_count"] == [4, 1, 0]
    assert readings["lane_halting"] == [3, 0, 0]  # slower than 0.1 m/s: a, c, d (e at 0.1 m/s moves)
    assert readings["approach_moving"] == [1, 1, 0]  # b (50 m from the stop line), e
    assert readings["approach_halting"] == [1, 0, 0]  # a; c (150 m) and d (230 m) are beyond 100 m
    # the first phase counts as long established, as gridlight's (its min green holds nothing)
    assert (readings["phase"], readings["time_in_phase"]) == (0, float(TIMER_START))
    assert lights.traci.shown == [("C", GREENS[0])]  # phase 0's green from the start


def test_the_request_carries_the_lights_alone(tmp_path):
    """The runtime needs no readings of an unsignalised junction (docs/deployment.md, SUMO networks): the
    bridge asked SUMO for every one of their lanes each decision (322 of ingolstadt21's 343 intersections)
    and sent them; it sends the lights, as a city's bridge would, and the lights decide without a fault."""
    from tests.sumo_fixtures import two_lights_net

    folder = write_tiny(tmp_path / "scenario", net=two_lights_net())
    onnx_path, meta = export(scenario_from_sumo(folder / "tiny.sumocfg"), folder)
    net = read_net(folder / "tiny.net.xml")
    assert {e["id"]: e["sumo"]["tls_id"] for e in meta["intersections"]} == {"C": "TL1", "E": "TL2", "N": None}
    lengths = {lane.id: lane.length for edge in net.edges.values() for lane in edge.lanes}
    lights = DeployedLights(FakeTraci({}, lengths), meta, net, ("lane_count", "lane_halting", *APPROACH),
                            str(onnx_path), "lane")
    request = lights.request(0)
    assert list(request["intersections"]) == ["C", "E"]
    reply = PolicyRuntime(onnx_path).decide(request)
    assert reply["faults"] == [] and list(reply["commands"]) == ["C", "E"]
    assert all(command["faults"] == [] for command in reply["commands"].values())


def test_a_change_shows_yellow_then_all_red_then_the_new_green(tiny):
    lights = bridge(tiny)
    lights.apply(10, {"commands": {"C": {"phase": 1, "switch_in_s": 2.0, "yellow_s": 3.0, "all_red_s": 2.0}}})
    shown, reported = {}, {}
    for t in range(10, 21):
        lights.show(t)
        shown[t] = lights.traci.shown[-1][1]
        reported[t] = (lights.request(t)["intersections"]["C"]["phase"], lights.request(t)["intersections"]["C"]
                       ["time_in_phase"])
    assert [shown[t] for t in range(10, 19)] == ["Ggr"] * 2 + ["yyr"] * 3 + ["rrr"] * 2 + ["rrG"] * 2
    assert reported[11] == (0, TIMER_START + 11.0) and reported[13] == (1, 1.0)  # the yellow counts as the new phase's
    for t, state in shown.items():  # never a green of each phase at once
        assert greens(state) <= greens(GREENS[0]) or greens(state) <= greens(GREENS[1]), (t, state)
        if greens(state) - greens(GREENS[0]):
            assert t >= 12 + 3 + 2, (t, state)


def test_a_change_due_between_seconds_starts_the_second_before_and_a_kept_phase_sets_nothing(tiny):
    lights = bridge(tiny)
    lights.apply(0, {"commands": {"C": {"phase": 0, "switch_in_s": 0.0, "yellow_s": 0.0, "all_red_s": 0.0}}})
    for t in range(5):
        lights.show(t)
    assert lights.traci.shown == [("C", "Ggr")]  # the start only
    lights.apply(5, {"commands": {"C": {"phase": 1, "switch_in_s": 1.5, "yellow_s": 3.0, "all_red_s": 2.0}}})
    lights.show(5)
    assert lights.traci.shown[-1][1] == "Ggr"
    lights.show(6)
    assert lights.traci.shown[-1][1] == "yyr"


def test_the_runtime_drives_the_stand_in_without_a_fault(tiny):
    """Closed loop: the phase and time in phase reported are the runtime's own model of the
    signal (a second off, or the yellow counted as the old phase's, would be a fault)."""
    onnx_path, meta, _ = tiny
    runtime = PolicyRuntime(onnx_path, deadline_ms=None)
    lights = bridge(tiny)
    replies = []
    for t in range(300):
        # queues that grow and empty: the policy sees readings change
        lights.traci.put({"WC_2": {f"w{k}": (240.0 - 7.5 * k, 0.0) for k in range((t // 20) % 5)},
                          "NC_0": {f"n{k}": (45.0 - 7.5 * k, 0.0) for k in range((t // 30) % 4)}})
        if t % lights.interval == 0:
            replies.append(runtime.decide(lights.request(t)))
            lights.apply(t, replies[-1])
        lights.show(t)
    commands = [reply["commands"]["C"] for reply in replies]
    assert runtime.fault_counts == {} and all(c["source"] == "policy" and not c["faults"] for c in commands)
    states = [state for _, state in lights.traci.shown]
    assert "rrG" in states and states.count("yyr") >= 1  # it switched, through a yellow
    for state in states:
        assert greens(state) <= greens(GREENS[0]) or greens(state) <= greens(GREENS[1]), state


@pytest.mark.parametrize("sensing", ["road", "lane"])
def test_a_stub_lane_is_read_over_gridlights_road_length_with_road_sensing(tiny, sensing):
    # NC_0 made a 0.2 m stub in the stand-in, fed through the internal lane :x_0_0 (2 m) by UP_0;
    # gridlight's road NC is the net's 50 m: road sensing reads 50 m back from NC's stop line
    lengths = {**FakeTraci.LENGTHS, "NC_0": 0.2, ":x_0_0": 2.0, "UP_0": 100.0}
    vehicles = {"NC_0": {"n": (0.1, 0.0)}, ":x_0_0": {"x": (1.0, 3.0)},
                "UP_0": {"u1": (99.0, 0.0), "u2": (60.0, 2.0), "u3": (30.0, 5.0)}}  # 1, 40 and 70 m from its end
    lights = bridge(tiny, vehicles, sensing, lengths=lengths, links={"UP_0": [("NC_0", ":x_0_0")]})
    readings = lights.request(0)["intersections"]["C"]
    got = [readings[name][2] for name in ("lane_count", "lane_halting", "approach_moving", "approach_halting")]
    # road: n, x, u1 (2.2 + 1 m back) and u2 (2.2 + 40 m); u3 is 72.2 m back, beyond the road's 50 m
    assert got == ([4, 2, 2, 2] if sensing == "road" else [1, 1, 0, 1])


def test_an_unknown_sensing_is_refused(tiny):
    with pytest.raises(ConfigError, match="sensing.*'approach'"):
        bridge(tiny, sensing="approach")


def test_a_light_shared_by_two_intersections_is_refused_naming_the_field(tiny):
    onnx_path, meta, net = tiny
    edited = json.loads(json.dumps(meta))
    edited["intersections"].append({**edited["intersections"][0], "id": "C2", "index": 1})
    with pytest.raises(ModelError, match=r"intersections\[1\]\.sumo\.tls_id.*'C'.*also runs intersection C"):
        DeployedLights(FakeTraci({}), edited, net, ("lane_count",), str(onnx_path), "lane")


def test_a_lane_the_net_lacks_is_refused_naming_the_field(tiny):
    onnx_path, meta, net = tiny
    edited = json.loads(json.dumps(meta))
    edited["intersections"][0]["in_lanes"][2] = "NC_1"
    with pytest.raises(ModelError, match=r"intersections\[0\]\.in_lanes.*NC_1.*not a passenger lane"):
        DeployedLights(FakeTraci({}), edited, net, ("lane_count",), str(onnx_path), "lane")


@pytest.fixture(scope="module")
def cologne1(tmp_path_factory):
    """resco_cologne1's net and routes under a sumocfg cut to its first 300 s, gridlight's import of
    it and an untrained policy exported on it: ``(config, scenario, onnx path, metadata)``; a skip
    without eclipse-sumo or the SUMO dataset."""
    pytest.importorskip("sumo", reason="eclipse-sumo is not installed (pip install -e '.[sumo]')")
    from envs.scenario.registry import sumo_folder
    from envs.scenario.sumo.config import read_config
    from tests.conftest import find_datasets_dir

    datasets_dir = find_datasets_dir()  # the datasets_dir fixture's skip, for a fixture shared by the module
    try:
        folder = sumo_folder("resco_cologne1", datasets_dir)
    except ConfigError as error:  # the CityFlow datasets without the SUMO ones
        pytest.skip(f"resco_cologne1's SUMO files are not under {datasets_dir}: {error}")
    root = tmp_path_factory.mktemp("cologne1")
    path = root / "short.sumocfg"
    path.write_text(f'''<configuration><input><net-file value="{folder / 'cologne1.net.xml'}"/>
  <route-files value="{folder / 'cologne1.rou.xml'}"/></input>
  <time><begin value="25200"/><end value="25500"/></time></configuration>''')
    scenario = scenario_from_sumo(path)
    return (read_config(path), scenario, *export(scenario, root))


def test_the_policy_runs_real_sumo_on_cologne1(cologne1, tmp_path):
    from sumo_fidelity import sumo_binary, sumo_travel

    config, _, onnx_path, meta = cologne1
    light = next(entry for entry in meta["intersections"] if entry["sumo"]["tls_id"])
    program = dict(enumerate(read_net(config.net_file).programs[light["sumo"]["tls_id"]].phases))
    phase_greens = [greens(program[indices[-1]].state) for indices in light["sumo"]["program_phases"]]
    seen = []

    def check(t, lights, reply):
        tls = light["sumo"]["tls_id"]
        state = lights.traci.trafficlight.getRedYellowGreenState(tls)
        assert state == lights.lights[light["id"]].shown, t  # SUMO shows what the bridge set
        assert any(greens(state) <= allowed for allowed in phase_greens), (t, state)
        seen.append(state)

    trips = tmp_path / "tripinfo.xml"
    done = run_deployed(sumo_binary(), config, onnx_path, trips, on_step=check)
    assert done["deployed_decisions"] == 60 and done["deployed_fallback"] == 0 and done["deployed_faults"] == {}
    assert len(seen) == 300 and any(c == "y" for state in seen for c in state)  # it changed phase via a yellow
    assert sumo_travel(config, trips, "sumo")["sumo_finished"] > 50


def test_the_whole_comparison_runs_in_real_sumo_and_gridlight(cologne1):
    """`compare`, what the script prints, on cologne1's first 300 s: every SUMO and gridlight
    figure, two SUMO seeds combined, the policy in charge throughout."""
    from sumo_deployed import compare

    config, scenario, onnx_path, _ = cologne1
    row = compare("resco_cologne1", config, scenario, onnx_path, "road", "lane", [0, 1])
    assert row["sumo_vehicles"] == row["gridlight_vehicles"] > 100
    assert (row["deployed_decisions"], row["deployed_fallback"], row["deployed_faults"]) == (60, 0, {})
    for prefix in ("sumo", "sumo_mp", "sumo_deployed"):
        low, high = row[f"{prefix}_travel_time_range"]
        assert 0 < low <= row[f"{prefix}_travel_time"] <= high <= 300, (prefix, row)
    for prefix in ("gridlight", "gridlight_mp", "gridlight_deployed"):
        assert 0 < row[f"{prefix}_travel_time"] <= 300, (prefix, row)
    assert row["sumo_seeds"] == [0, 1] and row["gridlight_deployed_switches"] > 0 < row["sumo_deployed_switches"]


@pytest.mark.parametrize("flags, start", [
    (["--scenario", "nosuch", "--model", "m.onnx"], "field '--scenario' = 'nosuch': not a SUMO scenario"),
    (["--scenario", "resco_cologne1", "--model", "m.onnx", "--sumo-seeds", "0,x"],
     "field '--sumo-seeds' = 'x': expected whole numbers >= 0"),
    (["--scenario", "resco_cologne1", "--model", "m.onnx", "--sumo-seeds", "1,1"],  # its run counted twice
     "field '--sumo-seeds' = '1,1': a seed given twice"),
])
def test_a_bad_flag_is_one_error_line_before_any_run(flags, start, capsys, monkeypatch):
    from tests.script_runs import refusal

    assert refusal("sumo_deployed.py", flags, capsys, monkeypatch).startswith(
        f"error: benchmarks/sumo_deployed.py: {start}")


def test_a_model_exported_for_another_scenario_is_refused_before_sumo_runs(tiny, capsys, monkeypatch):
    from tests.script_runs import refusal

    error = refusal("sumo_deployed.py", ["--scenario", "resco_cologne1", "--model", str(tiny[0])], capsys, monkeypatch)
    assert "field '--model'" in error and "not resco_cologne1" in error, error


def test_several_sumo_seeds_give_each_figures_mean_each_travel_times_range_and_all_teleports():
    from sumo_deployed import over_seeds

    rows = [{"sumo_travel_time": 60.0, "sumo_finished": 10, "sumo_teleports": 0, "deployed_faults": {"stale": 1},
             "deployed_sensing": "road"},
            {"sumo_travel_time": 64.0, "sumo_finished": 13, "sumo_teleports": 8, "deployed_faults": {},
             "deployed_sensing": "road"}]
    assert over_seeds(rows) == {"sumo_travel_time": 62.0, "sumo_travel_time_range": [60.0, 64.0],
                                "sumo_finished": 11.5, "sumo_teleports": 8, "deployed_faults": {"stale": 1},
                                "deployed_sensing": "road"}
    assert over_seeds(rows[:1]) == rows[0]



def test_junction_yielding_reaches_the_policys_gridlight_run(cologne1):
    """The gridlight side of ``--junction-yielding``: the policy's run gives SUMO's right of way
    (its permissive lefts wait for gaps), so its travel time moves."""
    from sumo_deployed import run_gridlight_deployed

    config, scenario, onnx_path, _ = cologne1
    free, yielding = (run_gridlight_deployed(scenario, config, onnx_path, flag)["gridlight_deployed_travel_time"]
                      for flag in (False, True))
    assert yielding != free
