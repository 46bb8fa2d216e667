"""The policy runtime's max-red guard (agents/deploy/max_red.py) against a policy that starves a phase.

    python benchmarks/max_red_starvation.py                                  # resco_ingolstadt1
    python benchmarks/max_red_starvation.py --max-red none,90 --seconds 1800

The policy asks for its first action at every decision, as the resco_ingolstadt1 policies of
docs/deployment.md do (max green moves the light to the next phase, the policy takes it straight
back, and the last phase never gets a green): an untrained policy of today's ppo_shared network,
exported as export.py exports one (once per ``--max-red``, ``none`` exporting without the guard),
its inference answering action 0. `SimulatedRuntime` runs it in gridlight on the scenario's own
demand, as ``evaluate.py deployed=`` and benchmarks/sumo_deployed.py's gridlight side do. One JSON
line per max red: the mean travel time and trips finished, per light and phase the greens started,
the longest red (from the change that ended a green to the green after it, the clearance counted;
still red at the end: to the end) and, under the guard, how late it served a phase at worst
(``late_s``, seconds after its rule made the phase due; 0: at that decision), the decisions of each
source (``policy``, ``max_red``, ``fallback``) and the guard's override count.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import at_least, dataset_missing, emit, log
from controller_latency import policy_checkpoint

from agents.deploy.export import export_policy
from agents.deploy.simulated import SimulatedRuntime
from envs.engine import Simulator
from envs.engine.state import EngineParams
from envs.errors import ConfigError
from envs.evaluation.metrics import episode_metrics
from envs.scenario import load_scenario

SOURCE = "benchmarks/max_red_starvation.py"


class FirstAction:
    """Stands in for the onnxruntime session: action 0 for every intersection."""

    def run(self, names, feed):
        return [np.zeros(len(feed["phase"]), dtype=np.int64)]


class FirstActionRuntime(SimulatedRuntime):
    """Its policy answers `FirstAction`; `late` (where the guard is on): per (intersection, phase),
    each of its reds with a call, how long after the guard's rule made it due (the first decision
    of an unbroken run of calls on the same red, or the one at which that red reached max red less
    the clearance, whichever came later) the change to it was commanded: 0 where at that decision."""

    def reset(self, sim) -> None:
        super().reset(sim)
        self.late: dict[tuple[int, int], list[float]] = {}
        runtime = self.runtimes[0]
        runtime.session = FirstAction()
        guard = runtime.guard
        if guard is None:
            return
        calls, called_since = guard.calls, {}
        limit = guard.max_red_s - runtime.timing.intergreen_s

        def watched(t, halting, cur_phase):  # the decision's calls, before its commands
            red = calls(t, halting, cur_phase)
            for (i, slot), value in np.ndenumerate(red):
                if value == -np.inf:  # no call (one the running phase's movements answer goes with it)
                    called_since.pop((i, slot), None)
                elif called_since.get((i, slot), (None, None))[1] != t - value:  # a call, or a red that began anew
                    called_since[(i, slot)] = (max(t, t - value + limit), t - value)
            return red

        def committed(t, target, switch_in, commit=guard.commit):
            commit(t, target, switch_in)
            for (i, slot), (due, _) in list(called_since.items()):
                if guard.running[i] == guard.actions[i, slot]:  # the change to it is commanded
                    self.late.setdefault((i, int(guard.actions[i, slot])), []).append(max(t - due, 0.0))
                    del called_since[(i, slot)]

        guard.calls, guard.commit = watched, committed


def max_reds(text: str) -> list[float | None]:
    out = []
    for part in text.split(","):
        if part.strip().lower() == "none":
            out.append(None)
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise ConfigError(SOURCE, "--max-red", text, "expected a comma-separated list of seconds or none") from None
    return out


def run(scenario, onnx_path: Path, seconds: int) -> dict:
    controller = FirstActionRuntime(str(onnx_path), deadline_ms=None)
    sim = Simulator(scenario.network, scenario.demand(1), EngineParams())
    greens: dict[tuple[int, int], int] = {}
    longest: dict[tuple[int, int], int] = {}
    ended: dict[tuple[int, int], int] = {}
    last = [None]

    def watch(sim) -> None:
        phase, t = sim.state.phase[0].tolist(), int(sim.state.t[0])
        if last[0] is None:  # every phase but the one shown is red from the start (`t` is each step's end, as below)
            ended.update({(i, p): t for i, entry in enumerate(controller.runtimes[0].meta["intersections"])
                          for p in entry["actions"] if p != phase[i]})
        else:
            for i, (before, now) in enumerate(zip(last[0], phase)):
                if now != before:
                    ended[(i, before)] = t
                    greens[(i, now)] = greens.get((i, now), 0) + 1
                    if (i, now) in ended:  # its red: to the change into it, plus that change's clearance
                        red = t - ended.pop((i, now)) + sim.params.yellow_s + sim.params.all_red_s
                        longest[(i, now)] = max(longest.get((i, now), 0), red)
        last[0] = phase

    sim.run(seconds, controller, on_step=watch)
    for (i, p), since in ended.items():  # still red at the end
        longest[(i, p)] = max(longest.get((i, p), 0), seconds - since)
    metrics = episode_metrics(sim.demand, sim.state)
    runtime = controller.runtimes[0]
    lights = [i for i, entry in enumerate(runtime.meta["intersections"])
              if len(entry["actions"]) > 1]  # the signals with a choice
    sources: dict[str, int] = {}
    for decision in controller.decisions:
        for i in lights:
            sources[decision[0].source[i]] = sources.get(decision[0].source[i], 0) + 1
    ids = runtime.layout.ids
    return {
        "travel_time": round(float(metrics["travel_time/mean"][0]), 2), "finished": int(metrics["throughput"][0]),
        "trips": int(scenario.trips.num_trips),
        "greens_started": {ids[i]: {p: greens.get((i, p), 0) for p in runtime.meta["intersections"][i]["actions"]}
                           for i in lights},
        "longest_red_s": {ids[i]: {p: longest.get((i, p)) for p in runtime.meta["intersections"][i]["actions"]}
                          for i in lights},
        "late_s": {ids[i]: {p: max(controller.late.get((i, p), [0.0])) for p in
                            runtime.meta["intersections"][i]["actions"]} for i in lights} if runtime.guard else None,
        "light_decisions": sources, "override_counts": runtime.override_counts, "faults": runtime.fault_counts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="resco_ingolstadt1", help="the scenario to run (default: %(default)s)")
    parser.add_argument("--data-dir", default=None, help="where its dataset is (default: GRIDLIGHT_DATA_DIR)")
    parser.add_argument("--max-red", default="none,20,60,90,120,180",
                        help="the max reds to export with, seconds, none without the guard (default: %(default)s)")
    parser.add_argument("--seconds", type=int, default=3600,
                        help="simulated seconds of each run (default: %(default)s)")
    args = parser.parse_args()
    try:
        at_least(args.seconds, 1, SOURCE, "--seconds")
        reds = max_reds(args.max_red)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if dataset_missing(args.scenario, args.data_dir):
        print(f"error: {args.scenario}: dataset not found (GRIDLIGHT_DATA_DIR or --data-dir)", file=sys.stderr)
        sys.exit(2)
    scenario = load_scenario(args.scenario, data_dir=args.data_dir)
    try:
        compare(scenario, args.scenario, reds, args.seconds)
    except ConfigError as error:  # a max red export.py refuses (below min green + 2 clearances + an interval)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def compare(scenario, name: str, reds: list, seconds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = policy_checkpoint(scenario, "ppo_shared", Path(tmp) / "policy.zip")
        exports = []  # all first: a max red export.py refuses stops the script before any run
        for max_red in reds:
            stem = "none" if max_red is None else f"max_red_{max_red:g}"
            try:
                exports.append(export_policy(checkpoint, tmp, name=stem, scenario=scenario, max_red_s=max_red)[0])
            except ConfigError as error:  # export.py's check, named as this script's flag
                if error.field != "max_red_s":
                    raise
                raise ConfigError(SOURCE, "--max-red", max_red, error.reason) from None
        for max_red, onnx_path in zip(reds, exports):
            started = time.perf_counter()
            row = run(scenario, onnx_path, seconds)
            log(f"{name} max_red_s={max_red}: {row['travel_time']} s ({time.perf_counter() - started:.1f} s)")
            emit({"scenario": name, "seconds": seconds, "max_red_s": max_red, **row})

if __name__ == "__main__":
    main()
