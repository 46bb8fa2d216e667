"""An approach's capacity in SUMO and in gridlight: the saturation flow of a standing queue
(HCM practice: the 4th to the 64th vehicle over the stop line) and the rate at which vehicles get
onto an empty 800 m road, for SUMO's default passenger car (length 5 m, min gap 2.5 m, accel
2.6, decel 4.5, tau 1 s, 13.89 m/s) with and without its driver imperfection ``sigma``.

    pip install -e '.[sumo]'      # eclipse-sumo: netgenerate, sumo and TraCI
    python benchmarks/sumo_discharge.py

SUMO runs a one-lane 3x3 grid from ``netgenerate`` with a signal at its centre, held red for
600 s and then green over TraCI; gridlight runs the same approach on its 1x1 generated grid
(envs/evaluation/discharge.py). Prints one JSON line per sigma.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import emit, log  # noqa: F401  (sets sys.path)

from envs.errors import ConfigError
from envs.evaluation.discharge import entry_rate, saturation_flow, timed_rate
from envs.scenario.generate import DEFAULT_VEHICLE
from sumo_fidelity import sumo_binary
from sumo_max_pressure import traci_module

SOURCE = "benchmarks/sumo_discharge.py"
CAR = {"length": 5.0, "minGap": 2.5, "accel": 2.6, "decel": 4.5, "maxSpeed": 13.89}
RED_S, GREEN_S, INSERT_S = 600, 300, 120


def gridlight_vehicle(sigma: float, tau: float) -> dict:
    return dict(DEFAULT_VEHICLE, length=CAR["length"], minGap=CAR["minGap"],
                maxPosAcc=CAR["accel"], usualPosAcc=CAR["accel"], usualNegAcc=CAR["decel"],
                maxSpeed=CAR["maxSpeed"], headwayTime=tau, sigma=sigma)


def sumo_run(workdir: Path, sigma: float, tau: float, departures: list[float], steps: int,
             red_until: int) -> tuple[list[int], int]:
    """Cumulative vehicles past the centre's stop line per step, and vehicles inserted."""
    net = workdir / "net.xml"
    if not net.exists():
        subprocess.run([str(Path(sumo_binary()).parent / "netgenerate"), "--grid",
                        "--grid.number", "3", "--grid.length", "800",
                        "--default.lanenumber", "1", "--tls.set", "B1", "--no-turnarounds",
                        "-o", str(net)], check=True, capture_output=True)
    attributes = " ".join(f'{k}="{v}"' for k, v in CAR.items())
    vehicles = "\n".join(f'<vehicle id="v{i}" type="t" route="r" depart="{d}"/>'
                         for i, d in enumerate(departures))
    routes = workdir / "routes.xml"
    routes.write_text(f'<routes><vType id="t" sigma="{sigma}" tau="{tau}" {attributes}/>'
                      f'<route id="r" edges="A1B1 B1C1"/>\n{vehicles}\n</routes>')
    traci = traci_module()
    with contextlib.redirect_stdout(sys.stderr):  # TraCI prints its connection retries
        traci.start([sumo_binary(), "-n", str(net), "-r", str(routes), "--no-step-log", "true",
                     "--no-warnings", "true"])
    try:
        links = len(traci.trafficlight.getRedYellowGreenState("B1"))
        past, crossed, inserted = set(), [], 0
        for k in range(steps):
            traci.trafficlight.setRedYellowGreenState("B1", ("r" if k < red_until else "G") * links)
            traci.simulationStep()
            inserted += traci.simulation.getDepartedNumber()
            past.update(traci.edge.getLastStepVehicleIDs("B1C1"))
            past.update(traci.simulation.getArrivedIDList())
            crossed.append(len(past))
    finally:
        traci.close()
    return crossed, inserted


def sumo_saturation_flow(workdir: Path, sigma: float, tau: float) -> float:
    crossed, _ = sumo_run(workdir, sigma, tau, list(range(RED_S + 100)), RED_S + GREEN_S, RED_S)
    return timed_rate(np.array(crossed))  # the same timing as gridlight's saturation_flow


def sumo_entry_rate(workdir: Path, sigma: float, tau: float) -> float:
    _, inserted = sumo_run(workdir, sigma, tau, [k / 2 for k in range(2 * INSERT_S)], INSERT_S, 0)
    return inserted / INSERT_S * 3600


def parse_sigma(text: str) -> float:
    """One of --sigmas, a driver imperfection within [0, 1]: a word was a ValueError traceback, 2 made
    SUMO quit mid-run (a TraCI traceback)."""
    try:
        sigma = float(text)
    except ValueError:
        raise ConfigError(SOURCE, "--sigmas", text, "expected a number") from None
    if not 0 <= sigma <= 1:
        raise ConfigError(SOURCE, "--sigmas", sigma, "must be within [0, 1] (Krauss' driver imperfection)")
    return sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sigmas", default="0,0.5")
    parser.add_argument("--tau", type=float, default=1.0)
    args = parser.parse_args()
    sigmas = [parse_sigma(text) for text in args.sigmas.split(",")]
    if not 0 < args.tau < math.inf:  # SUMO quit on it mid-run (a TraCI traceback)
        raise ConfigError(SOURCE, "--tau", args.tau, "must be a finite number > 0 (seconds)")
    with tempfile.TemporaryDirectory() as workdir:
        for sigma in sigmas:
            log(f"sigma {sigma}")
            vehicle = gridlight_vehicle(sigma, args.tau)
            emit({"sigma": sigma, "tau": args.tau,
                  "sumo_saturation_veh_h": round(sumo_saturation_flow(Path(workdir), sigma, args.tau)),
                  "gridlight_saturation_veh_h": round(saturation_flow(vehicle, RED_S)),
                  "sumo_entry_veh_h": round(sumo_entry_rate(Path(workdir), sigma, args.tau)),
                  "gridlight_entry_veh_h": round(entry_rate(vehicle, INSERT_S))})


if __name__ == "__main__":
    from envs.errors import exit_on_error  # a GridlightError: one "error: ..." line, exit status 2

    with exit_on_error():
        main()
