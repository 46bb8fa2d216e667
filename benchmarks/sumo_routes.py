"""The routes SUMO itself chose, pinned, so both simulators drive the same paths.

SUMO gives a vehicle loaded as an origin/destination trip a rerouting device and routes it when
it is inserted, by the travel times then observed on the network (its one-shot automatic
routing); gridlight's importer routes it once, by free-flow travel time. `pin_sumo_routes` runs
SUMO's static programs once, reads the route each vehicle drove (``--vehroute-output``) and
writes a copy of the scenario in which those trips carry their routes
(`envs.scenario.sumo.pinned_routes`). Used by ``benchmarks/sumo_fidelity.py --sumo-routes``;
needs eclipse-sumo.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from envs.scenario.sumo.config import SumoConfig
from envs.scenario.sumo.pinned_routes import pin_routes, routes_driven
from sumo_max_pressure import sumo_command


def pin_sumo_routes(config: SumoConfig, workdir: Path, sumo: str) -> tuple[SumoConfig, dict]:
    """A copy of `config` in `workdir` whose trips carry the routes SUMO drove them on."""
    vehroutes = workdir / "vehroutes.xml"
    subprocess.run(sumo_command(sumo, config, "--vehroute-output", str(vehroutes)), check=True,
                   capture_output=True)
    return pin_routes(config, routes_driven(vehroutes), workdir)
