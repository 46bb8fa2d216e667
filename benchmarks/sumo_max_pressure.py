"""Max pressure inside SUMO over TraCI, with gridlight's rules (agents/classical/max_pressure.py):
every signal phase of the static program (a phase without yellow that shows some green) is a
candidate. As in gridlight, a movement is a pair of roads (SUMO edges) joined by some of the
light's lane connections, green in a phase when any of its connections shows green; its pressure
is the vehicles on its distinct incoming lanes minus those on its distinct outgoing lanes, and a
phase's pressure the sum over its green movements. Once the current green has lasted
``min_green_s`` the light switches to the phase of highest pressure (ties: more vehicles on the
green movements' incoming lanes, then the lowest index), through ``yellow_s`` of yellow and
``all_red_s`` of red on the connections that lose green.
Used by benchmarks/sumo_fidelity.py --max-pressure; needs eclipse-sumo (its tools hold TraCI).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path


# gridlight's green characters (envs/scenario/sumo/programs.py) and its tie-break weight
GREEN_CHARS = "GgOso"
TIE_BREAK = 1e-3


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


def _transition(current: str, target: str, letter: str) -> str:
    """`current` with the connections that lose green shown as `letter`."""
    return "".join(letter if c in "Gg" and t not in "Gg" else c for c, t in zip(current, target))


def run(binary: str, config, tripinfo: Path, yellow_s: int = 3, all_red_s: int = 2,
        min_green_s: int = 10, extra_args: tuple[str, ...] | list[str] = ()) -> None:
    """Run `config` in SUMO under max pressure; `extra_args` go to SUMO's command line."""
    traci = traci_module()
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
        steps = int(config.end - config.begin)
        for _ in range(steps):
            counts: dict[str, int] = {}

            def count(lane: str) -> int:
                if lane not in counts:
                    counts[lane] = traci.lane.getLastStepVehicleNumber(lane)
                return counts[lane]

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
                        upstream = sum(count(lane) for lane in in_lanes)
                        pressure += upstream - sum(count(lane) for lane in out_lanes)
                        inflow += upstream
                    scores.append(pressure + TIE_BREAK * inflow)
                best = light["greens"][scores.index(max(scores))]
                if best != light["current"]:
                    yellow = _transition(light["current"], best, "y")
                    red = _transition(light["current"], best, "r")
                    light["queue"] = [yellow] * yellow_s + [red] * all_red_s + [best]
                    traci.trafficlight.setRedYellowGreenState(tl, light["queue"].pop(0))
            traci.simulationStep()
    finally:
        traci.close()
