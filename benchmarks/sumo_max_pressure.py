"""Max pressure inside SUMO over TraCI, with gridlight's rules (agents/classical/max_pressure.py):
every signal phase of the static program (a phase without yellow that shows some green) is a
candidate; the pressure of a phase is the sum over its green lane connections of vehicles on the
incoming lane minus vehicles on the outgoing lane; once the current green has lasted
``min_green_s`` the light switches to the phase of highest pressure (lowest index on a tie),
through ``yellow_s`` of yellow and ``all_red_s`` of red on the connections that lose green.
Used by benchmarks/sumo_fidelity.py --max-pressure; needs eclipse-sumo (its tools hold TraCI).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path


def traci_module():
    import sumo  # eclipse-sumo's package: TraCI ships in its tools folder

    sys.path.append(str(Path(sumo.__file__).parent / "tools"))
    import traci

    return traci


def _transition(current: str, target: str, letter: str) -> str:
    """`current` with the connections that lose green shown as `letter`."""
    return "".join(letter if c in "Gg" and t not in "Gg" else c for c, t in zip(current, target))


def run(binary: str, config, tripinfo: Path, yellow_s: int = 3, all_red_s: int = 2,
        min_green_s: int = 10) -> None:
    traci = traci_module()
    with contextlib.redirect_stdout(sys.stderr):  # TraCI prints its connection retries
        traci.start([binary, "-c", str(config.path), "--tripinfo-output", str(tripinfo),
                     "--no-step-log", "true", "--no-warnings", "true"])
    try:
        lights = {}
        for tl in traci.trafficlight.getIDList():
            logic = traci.trafficlight.getAllProgramLogics(tl)[0]
            states = [p.state for p in logic.phases]
            greens = [s for s in states
                      if not any(c in "yYu" for c in s) and any(c in "Gg" for c in s)]
            links = traci.trafficlight.getControlledLinks(tl)  # per linkIndex: [(in, out, via)]
            pairs = [[(a, b) for a, b, _ in group] for group in links]
            lights[tl] = {"greens": greens, "pairs": pairs, "current": greens[0], "since": 0,
                          "queue": []}
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
                pressures = []
                for state in light["greens"]:
                    seen, pressure = set(), 0
                    for index, char in enumerate(state):
                        if char in "Gg":
                            for a, b in light["pairs"][index]:
                                if (a, b) not in seen:
                                    seen.add((a, b))
                                    pressure += count(a) - count(b)
                    pressures.append(pressure)
                best = light["greens"][pressures.index(max(pressures))]
                if best != light["current"]:
                    yellow = _transition(light["current"], best, "y")
                    red = _transition(light["current"], best, "r")
                    light["queue"] = [yellow] * yellow_s + [red] * all_red_s + [best]
                    traci.trafficlight.setRedYellowGreenState(tl, light["queue"].pop(0))
            traci.simulationStep()
    finally:
        traci.close()
