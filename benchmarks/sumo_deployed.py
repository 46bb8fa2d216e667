"""An exported policy deployed on SUMO's lights: the torch-free runtime (agents/deploy/runtime.py)
reads SUMO's state over TraCI and its replies switch SUMO's lights, as a signal cabinet would
have it do; travel time compared with SUMO's static programs, max pressure in SUMO, and the
same policy in gridlight.

    pip install -e '.[sumo]'
    python train.py scenario=resco_cologne1 agent=ppo_shared train=fast hydra.run.dir=RUN
    python export.py checkpoint=RUN/checkpoints/last.zip
    python benchmarks/sumo_deployed.py --scenario resco_cologne1 --model RUN/checkpoints/last.onnx

Every ``decision_interval_s`` (the metadata's timing) a request is built from SUMO's state in the
service's JSON form (docs/deployment.md, "Protocol") and given to `PolicyRuntime.decide`: per
intersection of the metadata, per lane of its ``in_lanes`` (gridlight lane ``road_k`` is SUMO
lane ``to_roadnet.gridlight_lanes(edge)[k]``, as the import mapped them) the readings the model
declares: ``lane_count`` (SUMO's vehicles on the lane), ``lane_halting`` (those slower than
gridlight's ``halting_speed``, 0.1 m/s, SUMO's own threshold too), ``approach_moving`` /
``approach_halting`` (those whose front is within the export's approach distance, 100 m, of the
lane's end); ``phase`` (the roadnet phase last commanded, from the start of its yellow, as
gridlight counts it) and ``time_in_phase`` (seconds since then; the first phase, as gridlight's,
counts as long established: ``TIMER_START`` seconds). A reply's change starts
``switch_in_s`` later (the whole second before, as agents/deploy/simulated.py's field device does:
SUMO steps whole seconds): ``yellow_s`` seconds with the connections that lose green shown ``y``,
then ``all_red_s`` with them ``r``, then the SUMO program's green state of the new phase (the
last of its ``sumo.program_phases``; the program's own yellows are not shown, the reply's are).

What a lane's readings cover (``--sensing``): gridlight lengthens SUMO's stub edges (joins of
0.2 to a few metres in front of some lights) to one step's travel (`simulated_road_lengths`);
with ``road`` (the default) a lane shorter than gridlight's road is read over gridlight's length,
walked back through the internal lanes and the lanes feeding it (benchmarks/sumo_max_pressure.py's
`RoadSensors`), so that the policy reads the stretch it was trained on; ``lane`` reads SUMO's lanes
as they are. Approximated either way: a vehicle on the internal lane of the junction a lane starts
at counts on that lane only where road sensing walks through it (in gridlight a vehicle is on a
lane or already on the next), and the walk's stretch is measured along SUMO's lanes, not
gridlight's. The runtime runs without an inference deadline (``deadline_ms=None``): a slow step
of a shared machine would put a decision on the fallback, which is not what is measured here.
The request carries the lights alone: the runtime needs no readings of an unsignalised junction
(``sumo.tls_id`` null; docs/deployment.md), whose traffic SUMO's right of way runs.

Prints one JSON line: travel time counted as benchmarks/sumo_fidelity.py counts it (scheduled
departure to arrival, unfinished to the horizon) for SUMO's static programs, max pressure in SUMO
(``--mp-sensing``) and the deployed policy in SUMO, and in gridlight for the static programs, max
pressure and the same exported policy (`SimulatedRuntime`, evaluate.py's ``deployed=``), all on
the scenario's own demand; plus the runtime's fault counts, the light decisions the fallback
made and those its max-red guard took from the policy (an export with ``max_red_s``), and the phase
changes on both sides. ``--sumo-seeds`` repeats the SUMO side under several
seeds (`over_seeds`); gridlight's dawdling is a hash of trip and second, so its side is one run.
``--junction-yielding`` runs gridlight's side with SUMO's right of way (``engine.junction_yielding``,
as benchmarks/sumo_fidelity.py's flag), the policy too, whatever it was trained with.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import tempfile
from pathlib import Path

from common import emit, log  # noqa: F401  (sets sys.path)

from agents.deploy.message_keys import MessageKeys
from agents.deploy.runtime import PolicyRuntime
from agents.deploy.simulated import SimulatedRuntime, check_timing
from envs.engine import EngineParams, Simulator
from envs.engine.state import TIMER_START
from envs.errors import ConfigError, ModelError
from envs.evaluation.metrics import episode_metrics
from envs.rl.movement_features import APPROACH_M
from envs.scenario import load_scenario
from envs.scenario.registry import SUMO_DATASETS, known_sumo_datasets, sumo_folder
from envs.scenario.sumo.config import find_config, read_config
from envs.scenario.sumo.net_reader import SumoNet, read_net
from envs.scenario.sumo.to_roadnet import gridlight_lanes, simulated_road_lengths
from sumo_max_pressure import SENSING, RoadSensors, sumo_command, traci_module, transition_state

SOURCE = "benchmarks/sumo_deployed.py"
READINGS_SENSING = ("lane", "road")  # what a lane's readings cover (module doc)
WHOLE_SECONDS = ("decision_interval_s", "min_green_s", "yellow_s", "all_red_s")


def sumo_lanes(meta: dict, net: SumoNet, source: str) -> list[list[str]]:
    """Per metadata intersection, the SUMO lane ids of its ``in_lanes``, in that order."""
    out = []
    for i, entry in enumerate(meta["intersections"]):
        lanes = []
        for lane in entry["in_lanes"]:
            road, _, index = lane.rpartition("_")
            edge = net.edges.get(road)
            ours = gridlight_lanes(edge) if edge is not None else []
            if not index.isdigit() or int(index) >= len(ours):
                raise ModelError(source, f"intersections[{i}].in_lanes", lane,
                                 f"not a passenger lane of {net.source}: the model was exported for another network")
            lanes.append(ours[int(index)].id)
        out.append(lanes)
    return out


@dataclasses.dataclass
class Light:
    """One SUMO traffic light the policy runs: its roadnet phases' SUMO green states."""

    tls_id: str
    greens: list[str]  # per roadnet phase, the SUMO state of its green
    phase: int = 0  # the roadnet phase whose change last started (its yellow counts as its)
    since: int = -TIMER_START  # the step it started; the first phase, as gridlight's, long established
    switches: int = 0  # changes started
    shown: str = ""  # the state SUMO shows now
    pending: tuple | None = None  # a change still to start: (step, phase, yellow_s, all_red_s)
    clearing: tuple | None = None  # the change under way: (state it started from, yellow_s, all_red_s)


class DeployedLights:
    """The bridge between SUMO (`traci`) and the runtime for the intersections of `meta` (the
    exported metadata; `source`: its file, named in errors): `request` reads, `apply` takes a
    reply, `show` sets each step's states (module doc)."""

    def __init__(self, traci, meta: dict, net: SumoNet, lane_readings, source: str, sensing: str = "road",
                 approach_m: float = APPROACH_M, halting_speed: float = EngineParams().halting_speed) -> None:
        if sensing not in READINGS_SENSING:
            raise ConfigError(SOURCE, "sensing", sensing, f"expected one of {READINGS_SENSING}")
        self.traci, self.meta, self.lane_readings = traci, meta, tuple(lane_readings)
        self.approach_m, self.halting_speed = approach_m, halting_speed
        # road sensing: gridlight's road lengths, the stretch a stub lane's readings cover
        self.lengths = simulated_road_lengths(net) if sensing == "road" else {}
        self.sensors = RoadSensors(traci, sensing, self.lengths)
        for name in WHOLE_SECONDS:  # SUMO steps whole seconds: a fraction would be cut short or run long
            value = float(meta["timing"][name])
            if value != int(value):
                raise ModelError(source, f"timing.{name}", value, "a whole number of seconds to run in SUMO")
        self.interval = int(meta["timing"]["decision_interval_s"])
        self.ids = [entry["id"] for entry in meta["intersections"]]
        self.lanes = sumo_lanes(meta, net, source)
        # what the runtime needs readings of: not the unsignalised junctions (the runtime's own rule)
        self.asked = ~MessageKeys(meta["intersections"]).optional
        self.lights: dict[str, Light] = {}
        for i, entry in enumerate(meta["intersections"]):
            sumo = entry.get("sumo")
            if sumo is None:
                raise ModelError(source, f"intersections[{i}].sumo", None,
                                 "no SUMO light entry: export a policy trained on a SUMO scenario")
            tls = sumo["tls_id"]
            if tls is None:
                continue
            if tls not in net.programs:
                raise ModelError(source, f"intersections[{i}].sumo.tls_id", tls, f"no such light in {net.source}")
            shared = [other for other, light in self.lights.items() if light.tls_id == tls]
            if shared:  # each would set the whole light's state, the other's links included
                raise ModelError(source, f"intersections[{i}].sumo.tls_id", tls,
                                 f"also runs intersection {shared[0]}: a light shared by two intersections "
                                 "cannot be run from one intersection's phases")
            program = net.programs[tls].phases
            self.lights[entry["id"]] = Light(tls, [program[indices[-1]].state for indices in sumo["program_phases"]])

    def start(self) -> None:
        """Every light shows its phase 0 green, as gridlight's signals start (their first phase counts
        as long established: `TIMER_START` seconds, so min green does not hold it)."""
        for light in self.lights.values():
            light.shown = light.greens[0]
            self.traci.trafficlight.setRedYellowGreenState(light.tls_id, light.shown)

    def _lane(self, lane: str) -> dict[str, int]:
        """One lane's readings: its vehicles, over gridlight's road length where that is longer
        (road sensing), those halting, and those within the approach distance of the stop line."""
        sensors, speed = self.sensors, self.traci.vehicle.getSpeed
        stretch = max(sensors.length(lane), self.lengths.get(lane.rpartition("_")[0], 0.0))
        vehicles = set(sensors.vehicles(lane, stretch))
        near = set(sensors.vehicles(lane, min(stretch, self.approach_m)))
        halting = {v for v in vehicles if speed(v) < self.halting_speed}
        return {"lane_count": len(vehicles), "lane_halting": len(halting),
                "approach_moving": len(near - halting), "approach_halting": len(near & halting)}

    def request(self, t: int) -> dict:
        """The runtime's JSON request at step `t` (seconds since the sumocfg's begin)."""
        intersections = {}
        for inter_id, lanes, asked in zip(self.ids, self.lanes, self.asked):
            if not asked:  # an unsignalised junction: SUMO's right of way runs it, the runtime needs nothing
                continue
            per_lane = [self._lane(lane) for lane in lanes]
            readings = {name: [reading[name] for reading in per_lane] for name in self.lane_readings}
            light = self.lights.get(inter_id)
            readings["phase"] = light.phase if light else 0
            readings["time_in_phase"] = float(t - (light.since if light else -TIMER_START))
            intersections[inter_id] = readings
        return {"t": t, "intersections": intersections}

    def apply(self, t: int, reply: dict) -> None:
        """Take each light's command: a phase other than the one running is a change to start
        ``switch_in_s`` from `t` (replacing one still to start: the runtime restates it); the
        phase running keeps it (a clearance under way goes on)."""
        for inter_id, light in self.lights.items():
            command = reply["commands"][inter_id]
            if command["phase"] == light.phase:
                light.pending = None
            else:
                light.pending = (t + math.floor(command["switch_in_s"]), command["phase"],
                                 round(command["yellow_s"]), round(command["all_red_s"]))

    def show(self, t: int) -> None:
        """Set the states of step `t` (before SUMO runs it)."""
        for light in self.lights.values():
            if light.pending is not None and light.pending[0] <= t:
                _, light.phase, yellow, all_red = light.pending
                light.since, light.pending, light.switches = t, None, light.switches + 1
                # a change during another's clearance starts from what is shown: its y / r stay
                light.clearing = (light.shown, yellow, all_red)
            state = light.shown
            if light.clearing is not None:
                base, yellow, all_red = light.clearing
                elapsed, target = t - light.since, light.greens[light.phase]
                if elapsed < yellow:
                    state = transition_state(base, target, "y")
                elif elapsed < yellow + all_red:
                    state = transition_state(base, target, "r")
                else:
                    state, light.clearing = target, None
            if state != light.shown:
                light.shown = state
                self.traci.trafficlight.setRedYellowGreenState(light.tls_id, state)


def run_deployed(binary: str, config, model: Path, tripinfo: Path, extra_args=(), steps: int | None = None,
                 on_step=None, sensing: str = "road") -> dict:
    """Run `config` in SUMO with the policy exported at `model` on its lights; `steps`: seconds
    to run (default the sumocfg's window); `on_step(t, lights, reply)` after each step's states
    are set (reply None between decisions); `sensing`: what a lane's readings cover (module doc).
    Returns the runtime's fault counts and how many light decisions the fallback made, and the max-red
    guard."""
    if sensing not in READINGS_SENSING:  # before SUMO starts
        raise ConfigError(SOURCE, "sensing", sensing, f"expected one of {READINGS_SENSING}")
    runtime = PolicyRuntime(model, deadline_ms=None)
    traci = traci_module()
    net = read_net(config.net_file)
    fallback = decisions = max_red = 0
    with contextlib.redirect_stdout(sys.stderr):  # TraCI prints its connection retries
        traci.start(sumo_command(binary, config, "--tripinfo-output", str(tripinfo), *extra_args))
    try:  # road sensing reads SUMO's lane links: built once SUMO runs
        lights = DeployedLights(traci, runtime.meta, net, runtime.lane_readings, str(runtime.metadata_path),
                                sensing)
        signalised = list(lights.lights)
        lights.start()
        for t in range(int(config.end - config.begin) if steps is None else steps):
            reply = None
            if t % lights.interval == 0:
                reply = runtime.decide(lights.request(t))
                lights.apply(t, reply)
                decisions += len(signalised)
                fallback += sum(reply["commands"][i]["source"] == "fallback" for i in signalised)
                # the runtime's max-red guard (timing.max_red_s) took the light from the policy: no fallback
                max_red += sum(reply["commands"][i]["source"] == "max_red" for i in signalised)
            lights.show(t)
            if on_step is not None:
                on_step(t, lights, reply)
            traci.simulationStep()
    finally:
        traci.close()
    return {"deployed_decisions": decisions, "deployed_fallback": fallback, "deployed_max_red": max_red,
            "deployed_faults": dict(runtime.fault_counts), "deployed_sensing": sensing,
            "sumo_deployed_switches": sum(light.switches for light in lights.lights.values())}


def engine_params(meta: dict) -> EngineParams:
    """The engine the policy was trained under (the metadata's composed config), as evaluate.py's
    ``deployed=`` runs it."""
    trained = meta.get("training", {}).get("config", {}).get("engine", {})
    names = {field.name for field in dataclasses.fields(EngineParams)}
    return EngineParams(**{k: v for k, v in trained.items() if k in names})


def run_gridlight_deployed(scenario, config, model: Path, junction_yielding: bool = False) -> dict:
    """The same export in gridlight, on the scenario's own demand for the sumocfg's window;
    `junction_yielding`: with SUMO's right of way, whatever the policy was trained with."""
    controller = SimulatedRuntime(str(model), deadline_ms=None)
    meta = PolicyRuntime(model, deadline_ms=None).meta
    params = dataclasses.replace(engine_params(meta), junction_yielding=True) if junction_yielding \
        else engine_params(meta)
    check_timing(meta, str(model), params)
    sim = Simulator(scenario.network, scenario.demand(1), params)
    lights = [i for i, entry in enumerate(meta["intersections"]) if entry["sumo"]["tls_id"] is not None]
    last, switches = sim.state.phase[0, lights].clone(), [0]

    def count(sim) -> None:  # a change starts where the commanded phase differs from the step before's
        switches[0] += int((sim.state.phase[0, lights] != last).sum())
        last.copy_(sim.state.phase[0, lights])

    sim.run(int(config.end - config.begin), controller, on_step=count)
    metrics = episode_metrics(sim.demand, sim.state)
    return {"gridlight_deployed_travel_time": round(float(metrics["travel_time/mean"][0]), 2),
            "gridlight_deployed_finished": int(metrics["throughput"][0]), "gridlight_deployed_switches": switches[0]}


def sumo_seeds(text: str | None) -> list[int | None]:
    """``--sumo-seeds`` (``0,1,2``) as SUMO seeds; None: SUMO's own default seed, one run."""
    if text is None:
        return [None]
    seeds = []
    for word in text.split(","):
        if not word.strip().isdigit():
            raise ConfigError(SOURCE, "--sumo-seeds", word, "expected whole numbers >= 0, comma-separated")
        seeds.append(int(word))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(SOURCE, "--sumo-seeds", text, "a seed given twice would count its run twice")
    return seeds


def over_seeds(rows: list[dict]) -> dict:
    """The runs of several SUMO seeds as one row: each number's mean, each travel time's range too;
    teleports and fault counts summed (a mean of 0.2 teleports reads as no teleport)."""
    if len(rows) == 1:
        return rows[0]
    out = {}
    for key, value in rows[0].items():
        values = [row[key] for row in rows]
        if key.endswith("teleports"):
            out[key] = sum(values)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = round(sum(values) / len(values), 2)
            if key.endswith("travel_time"):
                out[f"{key}_range"] = [min(values), max(values)]
        elif isinstance(value, dict):
            out[key] = {kind: sum(v.get(kind, 0) for v in values) for kind in sorted(set().union(*values))}
        else:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", required=True, help=f"one of {', '.join(known_sumo_datasets())}")
    parser.add_argument("--model", required=True, type=Path, help="the exported ONNX model (export.py)")
    parser.add_argument("--sensing", choices=READINGS_SENSING, default="road",
                        help="what the policy's lane readings cover in SUMO: gridlight's road length where "
                             "SUMO's lane is a shorter stub, or SUMO's lane as it is (default: %(default)s)")
    parser.add_argument("--mp-sensing", choices=SENSING, default="lane",
                        help="what max pressure counts (benchmarks/sumo_max_pressure.py; default: %(default)s)")
    parser.add_argument("--sumo-seeds", help="SUMO's random seeds (its drivers' dawdling), e.g. 0,1,2: every SUMO "
                                             "figure is then the mean over them, each travel time with its range "
                                             "(default: one run with SUMO's default seed); teleports are summed")
    parser.add_argument("--junction-yielding", action="store_true",
                        help="gridlight's runs give SUMO's right of way (engine.junction_yielding), the policy's too "
                             "whatever it was trained with")
    args = parser.parse_args()
    if args.scenario not in SUMO_DATASETS:
        raise ConfigError(SOURCE, "--scenario", args.scenario,
                          f"not a SUMO scenario; known: {', '.join(known_sumo_datasets())}")
    seeds = sumo_seeds(args.sumo_seeds)
    if args.model.is_dir():  # an export folder: its one model
        found = sorted(args.model.glob("*.onnx"))
        if len(found) != 1:
            raise ConfigError(SOURCE, "--model", str(args.model),
                              f"a folder holding one .onnx model, found {len(found)}")
        args.model = found[0]
    trained_on = PolicyRuntime(args.model, deadline_ms=None).meta.get("training", {}).get("scenario")
    if trained_on != args.scenario:
        raise ConfigError(SOURCE, "--model", str(args.model), f"exported for {trained_on}, not {args.scenario}")
    config = read_config(find_config(sumo_folder(args.scenario)))
    row = compare(args.scenario, config, load_scenario(args.scenario), args.model, args.sensing, args.mp_sensing,
                  seeds, args.junction_yielding)
    emit(row)


def compare(name: str, config, scenario, model: Path, sensing: str, mp_sensing: str, seeds: list,
            junction_yielding: bool = False) -> dict:
    """The JSON line (module doc) for SUMO's `config` and gridlight's import of it, `scenario`;
    `junction_yielding`: gridlight's three runs with SUMO's right of way (``engine.junction_yielding``)."""
    from sumo_fidelity import (
        run_gridlight, run_gridlight_max_pressure, run_sumo, run_sumo_max_pressure, sumo_binary, sumo_travel,
        teleports,
    )

    runs = []
    for seed in seeds:
        extra = () if seed is None else ("--seed", str(seed))
        with tempfile.TemporaryDirectory() as workdir:
            work, run = Path(workdir), {}
            log(f"{name}: SUMO static programs, max pressure, deployed policy "
                f"(seed {'default' if seed is None else seed})")
            run.update(run_sumo(config, work, extra))
            run.update(run_sumo_max_pressure(config, work, mp_sensing, scenario.network, extra))
            trips, stats = work / "tripinfo_deployed.xml", work / "stats_deployed.xml"
            run.update(run_deployed(sumo_binary(), config, model, trips, ("--statistic-output", str(stats), *extra),
                                    sensing=sensing))
            run.update(sumo_travel(config, trips, "sumo_deployed"), sumo_deployed_teleports=teleports(stats))
            runs.append(run)
    row = {"scenario": name, "model": str(model), "sumo_seeds": seeds, **over_seeds(runs)}
    log(f"{name}: gridlight")
    right_of_way = {"junction_yielding": True} if junction_yielding else None
    row.update(run_gridlight(scenario, config, right_of_way), gridlight_junction_yielding=junction_yielding)
    row.update(run_gridlight_max_pressure(scenario, config, mp_sensing, right_of_way))
    row.update(run_gridlight_deployed(scenario, config, model, junction_yielding))
    return row


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
