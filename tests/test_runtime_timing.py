"""The deployment runtime's timing rules, second by second in the simulator (its own min green
is off, so the runtime's rules are what holds): a switch the rules schedule between two
decisions happens at its second, not at the next decision. The fixed-time fallback runs each
plan phase for exactly its green, and a policy that keeps a phase loses it at exactly max
green, with greens (12 s, 8 s, 22 s) that the 5 s decision grid does not divide."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from agents.deploy.runtime import FALLBACK, POLICY
from agents.deploy.simulated import SimulatedRuntime
from envs.engine.signals import green_elapsed
from envs.engine.simulator import Simulator
from tests.deploy_fixtures import FakeSession, edit_metadata, simulator


def ended_greens(scenario, deployed: SimulatedRuntime, seconds: int, session=None) -> list[tuple[int, int, int]]:
    """Run `deployed` on one copy for `seconds` (its model answering through `session` where
    given); each green it ended: (intersection, phase, seconds)."""
    sim = simulator(scenario, 1, seconds)
    sim = Simulator(sim.network, sim.demand, replace(sim.params, min_green_s=0))
    deployed.reset(sim)
    for runtime in deployed.runtimes if session is not None else ():
        runtime.session = session
    ended = []
    for _ in range(seconds):
        before = sim.state
        elapsed = green_elapsed(sim.network, sim.params, before)[0]
        sim.step(deployed.act(sim))
        for i in np.flatnonzero((sim.state.phase != before.phase)[0].numpy()):
            if int(before.t[0]) > 0:
                ended.append((int(i), int(before.phase[0, i]), int(elapsed[i])))
    return ended


def test_the_fallback_plan_runs_each_phase_for_exactly_its_green(uneven, model_copy):
    def plan_greens(meta):
        for entry in meta["intersections"]:
            for k, step in enumerate(entry["fallback_plan"]):
                step["green_s"] = 12.0 if k % 2 == 0 else 8.0

    onnx_path, meta = model_copy[0], edit_metadata(model_copy, plan_greens)
    onnx_path.unlink()  # no model: every intersection runs the plan
    deployed = SimulatedRuntime(str(onnx_path))
    ended = ended_greens(uneven[0], deployed, 600)
    assert {s for d in deployed.decisions for c in d for s in c.source} == {FALLBACK}
    plans = [{step["phase"]: step["green_s"] for step in entry["fallback_plan"]} for entry in meta["intersections"]]
    first = {}  # the phase each signal shows at the start is cut short to join the plan
    for i, phase, green in ended:
        if first.setdefault(i, (phase, green)) != (phase, green):
            assert green == plans[i][phase], (i, phase, green)
    assert len(ended) > 100


def test_a_kept_phase_ends_at_exactly_max_green(uneven, model_copy):
    onnx_path, meta = model_copy[0], edit_metadata(model_copy, lambda m: m["timing"].update(max_green_s=22.0))

    def keep(feed):  # keep whatever runs (an action index where it is one)
        return np.where(feed["phase"] < 3, feed["phase"], 0)

    deployed = SimulatedRuntime(str(onnx_path))
    ended = ended_greens(uneven[0], deployed, 600, FakeSession(keep))
    assert {s for d in deployed.decisions for c in d for s in c.source} == {POLICY}
    by_max_green = [green for *_, green in ended if green > meta["timing"]["min_green_s"]]
    assert by_max_green and set(by_max_green) == {22}
