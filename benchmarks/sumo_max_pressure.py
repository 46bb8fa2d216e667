"""Max pressure inside SUMO over TraCI, with gridlight's rules (agents/classical/max_pressure.py):
every signal phase of the static program (a phase without yellow that shows some green) is a
candidate. As in gridlight, a movement is a pair of roads (SUMO edges) joined by some of the
light's lane connections, green in a phase when any of its connections shows green; its pressure
is the vehicles on its distinct incoming lanes minus those on its distinct outgoing lanes, and a
phase's pressure the sum over its green movements. Once the current green has lasted
``min_green_s`` the light switches to the phase of highest pressure (ties: more vehicles on the
green movements' incoming lanes, then the lowest index), through ``yellow_s`` of yellow and
``all_red_s`` of red on the connections that lose green.

What a lane's count covers (``sensing``): ``"lane"`` (the default) counts SUMO's lanes as they
are, as a max pressure written for SUMO does. gridlight, though, lengthens SUMO's stub edges —
joins of 0.2 to a few metres, which on the Ingolstadt networks are all that lies between some
lights and the junction before them — to one step's travel (`simulated_road_lengths`), so its
max pressure counts about two vehicles per stub lane where SUMO's lane holds one. With
``"road"`` a lane shorter than gridlight's road counts the vehicles over gridlight's length: from
the stop line upstream for an incoming lane, from the lane's start downstream for an outgoing
one, through the junctions' internal lanes and the lanes that feed it (or that it feeds), so
that both simulators' controllers read the same stretch of road. With ``"approach"`` both
simulators count each lane over its approach through pass-through junctions
(`envs.engine.approaches`, gridlight's ``MaxPressure(sensing="approach")``): the lane, plus the
vehicles of the roads that can only lead into it (only come out of it) spread evenly over its
road's lanes, the roads and weights taken from gridlight's import of the net, so that a stub's
queue counts wherever the drawing splits the road.
Used by benchmarks/sumo_fidelity.py --max-pressure; needs eclipse-sumo (its tools hold TraCI).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from envs.engine.approaches import approach_map
from envs.scenario.network import Network
from envs.scenario.sumo.net_reader import SumoNet, read_net
from envs.scenario.sumo.to_roadnet import gridlight_lanes, simulated_road_lengths

# gridlight's green characters (envs/scenario/sumo/programs.py) and its tie-break weight
GREEN_CHARS = "GgOso"
TIE_BREAK = 1e-3
SENSING = ("road", "lane", "approach")
MAX_HOPS = 8  # lanes walked through from a stub; the metres left run out long before


def approach_lanes(network: Network, net: SumoNet) -> dict[tuple[str, bool], list[tuple[str, float]]]:
    """(SUMO lane id, incoming?) -> the SUMO lanes its approach adds, with their weights: the
    spreads of gridlight's `approach_map` of `network` (the import of `net`) in SUMO's lane ids."""
    by_road = [[lane for lane in lanes if lane >= 0] for lanes in network.road_lanes.tolist()]
    sumo_id = {}  # gridlight lane id -> SUMO lane id
    for road, lanes in enumerate(by_road):
        for k, sumo_lane in enumerate(gridlight_lanes(net.edges[network.road_ids[road]])):
            sumo_id[lanes[k]] = sumo_lane.id
    found: dict[tuple[str, bool], list[tuple[str, float]]] = {}
    approaches = approach_map(network)
    for incoming, spread in ((True, approaches.upstream), (False, approaches.downstream)):
        for target, source, weight in zip(spread.target.tolist(), spread.source.tolist(),
                                          spread.weight.tolist()):
            found.setdefault((sumo_id[target], incoming), []).append((sumo_id[source], weight))
    return found


class RoadSensors:
    """Per-step vehicle counts of the lights' lanes over the stretch that `sensing` names
    (module doc); `lengths`: edge id -> gridlight's road length (road sensing); `approaches`:
    `approach_lanes` (approach sensing)."""

    def __init__(self, traci, sensing: str, lengths: dict[str, float],
                 approaches: dict[tuple[str, bool], list[tuple[str, float]]] | None = None) -> None:
        if sensing not in SENSING:
            raise ValueError(f"sensing={sensing!r}: expected one of {SENSING}")
        self.traci, self.sensing, self.lengths = traci, sensing, lengths
        self.approaches = approaches or {}
        self.after: dict[str, list[tuple[str, str]]] = {}  # lane -> [(internal lane, next lane)]
        self.before: dict[str, list[tuple[str, str]]] = {}  # lane -> [(internal lane, feeding lane)]
        if sensing == "road":
            for lane in traci.lane.getIDList():
                if lane.startswith(":"):
                    continue
                for link in traci.lane.getLinks(lane, extended=True):
                    following, via = link[0], link[4]
                    self.after.setdefault(lane, []).append((via, following))
                    self.before.setdefault(following, []).append((via, lane))
        self.counts: dict[tuple[str, bool], float] = {}
        self.numbers: dict[str, int] = {}
        self._lengths: dict[str, float] = {}  # SUMO lane id -> its length (asked once)

    def length(self, lane: str) -> float:
        if lane not in self._lengths:
            self._lengths[lane] = self.traci.lane.getLength(lane)
        return self._lengths[lane]

    def next_step(self) -> None:
        self.counts, self.numbers = {}, {}

    def _number(self, lane: str) -> int:
        """SUMO's vehicle count of `lane` this step (asked once per step)."""
        if lane not in self.numbers:
            self.numbers[lane] = self.traci.lane.getLastStepVehicleNumber(lane)
        return self.numbers[lane]

    def count(self, lane: str, incoming: bool) -> float:
        key = (lane, incoming)
        if key not in self.counts:
            self.counts[key] = self._measure(lane, incoming)
        return self.counts[key]

    def _measure(self, lane: str, incoming: bool) -> float:
        if self.sensing == "approach":
            return self._number(lane) + sum(weight * self._number(other)
                                            for other, weight in self.approaches.get((lane, incoming), ()))
        stretch = self.lengths.get(lane.rsplit("_", 1)[0], 0.0) if self.sensing == "road" else 0.0
        if self.length(lane) >= stretch:
            return self._number(lane)
        return self._walk(lane, stretch, incoming, MAX_HOPS)

    def _walk(self, lane: str, metres: float, upstream: bool, hops: int) -> int:
        return len(self.vehicles(lane, metres, upstream, hops))

    def vehicles(self, lane: str, metres: float, upstream: bool = True, hops: int = MAX_HOPS) -> list[str]:
        """The vehicles whose front is within `metres` of `lane`'s end (upstream) or start, on it
        and on the lanes before (after) it (those only with road sensing: the others have no links)."""
        traci = self.traci
        length = self.length(lane)
        found = list(traci.lane.getLastStepVehicleIDs(lane))
        if metres < length:
            position = traci.vehicle.getLanePosition
            found = [v for v in found if ((position(v) >= length - metres) if upstream else (position(v) <= metres))]
        left = metres - length
        if left <= 0 or hops == 0:
            return found
        for via, neighbour in (self.before if upstream else self.after).get(lane, []):
            if via:
                found += traci.lane.getLastStepVehicleIDs(via)
                left_after = left - self.length(via)
            else:
                left_after = left
            if left_after > 0:
                found += self.vehicles(neighbour, left_after, upstream, hops - 1)
        return found


def gridlight_sensing(sensing: str) -> str:
    """gridlight's `MaxPressure.sensing` beside SUMO's `sensing`: gridlight's lanes already are
    the lengthened roads that road sensing reads in SUMO, so only approach sensing differs."""
    return "approach" if sensing == "approach" else "lane"


def traci_module():
    import sumo  # eclipse-sumo's package: TraCI ships in its tools folder

    sys.path.append(str(Path(sumo.__file__).parent / "tools"))
    import traci

    return traci


def sumo_command(binary: str, config, *extra: str) -> list[str]:
    """SUMO's command line for `config`, quiet, with `extra` options (outputs and the like); the
    benchmarks' one way to start SUMO, here and over TraCI."""
    return [binary, "-c", str(config.path), "--no-step-log", "true", "--no-warnings", "true", *extra]


def _phase_movements(greens: list[str], links: list) -> list[list[tuple[set, set]]]:
    """Per candidate phase, its green movements as (distinct incoming lanes, distinct outgoing
    lanes); a movement is a (from edge, to edge) pair of the light's lane connections."""
    movements: dict[tuple[str, str], tuple[set, set, set]] = {}  # -> in lanes, out lanes, indices
    for index, group in enumerate(links):
        for in_lane, out_lane, _ in group:
            key = (in_lane.rsplit("_", 1)[0], out_lane.rsplit("_", 1)[0])
            in_lanes, out_lanes, indices = movements.setdefault(key, (set(), set(), set()))
            in_lanes.add(in_lane)
            out_lanes.add(out_lane)
            indices.add(index)
    return [[(in_lanes, out_lanes) for in_lanes, out_lanes, indices in movements.values()
             if any(state[i] in GREEN_CHARS for i in indices)] for state in greens]


def transition_state(current: str, target: str, letter: str) -> str:
    """`current` with the connections that lose green shown as `letter`."""
    return "".join(letter if c in "Gg" and t not in "Gg" else c for c, t in zip(current, target))


def run(binary: str, config, tripinfo: Path, yellow_s: int = 3, all_red_s: int = 2,
        min_green_s: int = 10, extra_args: tuple[str, ...] | list[str] = (), sensing: str = "lane",
        network: Network | None = None) -> None:
    """Run `config` in SUMO under max pressure; `extra_args` go to SUMO's command line;
    `sensing`: what a lane's count covers (module doc); `network`: gridlight's import of
    `config`, which approach sensing takes its approaches from."""
    if sensing == "approach" and network is None:
        raise ValueError("approach sensing needs gridlight's network of the scenario (network=...)")
    traci = traci_module()
    # gridlight's road lengths or approaches: only road / approach sensing reads them (the
    # whole net file is parsed)
    net = read_net(config.net_file) if sensing in ("road", "approach") else None
    lengths = simulated_road_lengths(net) if sensing == "road" else {}
    approaches = approach_lanes(network, net) if sensing == "approach" else None
    with contextlib.redirect_stdout(sys.stderr):  # TraCI prints its connection retries
        traci.start(sumo_command(binary, config, "--tripinfo-output", str(tripinfo), *extra_args))
    try:
        lights = {}
        for tl in traci.trafficlight.getIDList():
            logic = traci.trafficlight.getAllProgramLogics(tl)[0]
            states = [p.state for p in logic.phases]
            greens = [s for s in states
                      if not any(c in "yYu" for c in s) and any(c in "Gg" for c in s)]
            links = traci.trafficlight.getControlledLinks(tl)  # per linkIndex: [(in, out, via)]
            lights[tl] = {"greens": greens, "phases": _phase_movements(greens, links)}
            lights[tl].update(current=greens[0], since=0, queue=[])
            traci.trafficlight.setRedYellowGreenState(tl, greens[0])
        sensors = RoadSensors(traci, sensing, lengths, approaches)
        steps = int(config.end - config.begin)
        for _ in range(steps):
            sensors.next_step()

            for tl, light in lights.items():
                if light["queue"]:  # in an intergreen: show the next planned state
                    state = light["queue"].pop(0)
                    traci.trafficlight.setRedYellowGreenState(tl, state)
                    if not light["queue"]:
                        light["current"], light["since"] = state, 0
                    continue
                light["since"] += 1
                if light["since"] < min_green_s:
                    continue
                scores = []
                for movements in light["phases"]:
                    pressure = inflow = 0
                    for in_lanes, out_lanes in movements:
                        upstream = sum(sensors.count(lane, True) for lane in in_lanes)
                        pressure += upstream - sum(sensors.count(lane, False) for lane in out_lanes)
                        inflow += upstream
                    scores.append(pressure + TIE_BREAK * inflow)
                best = light["greens"][scores.index(max(scores))]
                if best != light["current"]:
                    yellow = transition_state(light["current"], best, "y")
                    red = transition_state(light["current"], best, "r")
                    light["queue"] = [yellow] * yellow_s + [red] * all_red_s + [best]
                    traci.trafficlight.setRedYellowGreenState(tl, light["queue"].pop(0))
            traci.simulationStep()
    finally:
        traci.close()
