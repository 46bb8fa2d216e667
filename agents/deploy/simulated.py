"""The policy runtime (agents/deploy/runtime.py) driving the simulator, as a field device
would run it: for closed-loop checks of an exported policy against the in-Python one.

    sim.run(3600, SimulatedRuntime("exported/policy.onnx"))

Every ``decision_interval_s`` it reads what a signal cabinet's detectors give — vehicles and
halting vehicles on each incoming lane (and, for a policy that observes them, those within
100 m of the stop line, moving and halting), the running phase and its time — from the simulator's
state, hands them to one `PolicyRuntime` per copy, and holds each reply's phase,
starting the change ``switch_in_s`` seconds after the decision, as the field device does (at the
whole second before, where it falls between two: the simulator steps whole seconds).
`faults` optionally perturbs the readings first (``faults(t, readings) -> readings``), to drive
the fail-safe through the simulator.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from agents.deploy.metadata import APPROACH_READINGS, BASE_LANE_READINGS, LANE_READINGS
from agents.deploy.readings import SIGNAL_READINGS
from agents.deploy.runtime import PolicyRuntime
from envs.engine.simulator import Simulator
from envs.errors import ConfigError, ModelError
from envs.rl.features import feature_context
from envs.engine.intersections import gather_lanes, intersection_layout
from envs.scenario.network import lane_ids
from envs.engine.movement_readings import approach_by_lane
from envs.engine.readings import lane_halting
from envs.rl.movement_features import APPROACH_M


def sim_readings(sim: Simulator, in_lanes: torch.Tensor, detectors=None, upper: torch.Tensor | None = None,
                 lane_names: tuple[str, ...] = BASE_LANE_READINGS) -> dict[str, np.ndarray]:
    """Detector readings of every copy: the per-lane readings `lane_names` (``lane_count``,
    ``lane_halting``, ``approach_moving``, ``approach_halting``; each ``[B, I, L]``, lanes in the
    layout's order, zero-padded), ``phase [B, I]`` and ``time_in_phase [B, I]``. `detectors`
    (`envs.incidents.perturbations.DetectorFaults`) makes them what faulty detectors report
    (noisy, lost, stuck, dead), each reading its own detector; `upper` ``[L]``: what each lane
    holds (a counter's ceiling); a lost reading is NaN."""
    state, lanes = sim.state, sim.network.num_lanes
    per_lane = {}
    if "lane_count" in lane_names or "lane_halting" in lane_names:
        per_lane["lane_count"] = state.lane_count[:, :lanes].to(torch.float32)
        per_lane["lane_halting"] = lane_halting(state, lanes, sim.params.halting_speed).to(torch.float32)
    if set(APPROACH_READINGS) & set(lane_names):  # the env's approach features count the same vehicles
        moving, halting = approach_by_lane(sim.network, state, APPROACH_M, sim.params.halting_speed)
        per_lane["approach_moving"], per_lane["approach_halting"] = moving.to(torch.float32), halting.to(torch.float32)
    if detectors is not None:
        per_lane = {name: detectors.apply(name, v, state.t, upper=upper, missing=float("nan"))
                    for name, v in per_lane.items()}
        # one detector station: its halting count never exceeds its (noisy) vehicle count
        per_lane["lane_halting"] = torch.minimum(per_lane["lane_halting"], per_lane["lane_count"])
    out = {name: gather_lanes(per_lane[name], in_lanes).cpu().numpy() for name in lane_names}
    out["phase"] = state.phase.cpu().numpy()
    out["time_in_phase"] = state.phase_timer.cpu().numpy().astype(np.float64)
    return out


def record_decisions(policy, sim: Simulator, seconds: int) -> dict[str, np.ndarray]:
    """Run `policy` (a reset `agents.ppo.PolicyController`) on `sim` for `seconds` and record,
    at every decision, each intersection's readings and the policy's deterministic action: rows
    ``{lane_count [N, L], lane_halting, approach_moving, approach_halting, phase [N],
    time_in_phase [N], intersection [N], action [N]}`` (every input an ONNX model may take, and
    what it must answer)."""
    rows: dict[str, list] = {k: [] for k in (*LANE_READINGS, *SIGNAL_READINGS, "action")}
    inter = policy.layout.num_intersections
    for _ in range(seconds):
        decision = bool((sim.state.t % policy.decision_interval_s == 0).all())
        if decision:
            readings = sim_readings(sim, policy.layout.in_lanes, lane_names=LANE_READINGS)
            for name, values in readings.items():
                rows[name].append(values.reshape(-1, *values.shape[2:]))
        command = policy.act(sim)
        if decision:  # the action the policy took, not a second inference
            rows["action"].append(policy.last_actions.cpu().numpy().reshape(-1))
        sim.step(command)
    out = {name: np.concatenate(parts) for name, parts in rows.items()}
    out["intersection"] = np.tile(np.arange(inter), len(out["action"]) // inter)
    return out


def _network_entry(network, layout, i: int) -> dict:
    """Intersection `i` of `network` as the metadata describes the one a model was exported for:
    what the runtime reads (its lanes, in order) and commands (its phases and their greens)."""
    lanes = lane_ids(network)
    phases = [[k for k, green in enumerate(row) if green] for row in
              network.phase_green[i, : int(network.num_phases[i])].tolist()]
    return {"in_lanes": [lanes[lane] for lane in layout.in_lanes[i].tolist() if lane >= 0],
            "phases": phases, "actions": [int(p) for p in layout.action_phase[i].tolist() if p >= 0]}


def check_network(meta: dict, source: str, network, layout) -> None:
    """ModelError naming the metadata field where the simulated network is not the one the
    model was exported for (same intersection ids, other lanes, phases or actions: e.g. a
    grid_4x4 model run on hangzhou_4x4, whose phase 0 is a transition phase): the runtime would
    command phases by the wrong indices and read lanes in the wrong order, silently."""
    for i, entry in enumerate(meta["intersections"]):
        ours = _network_entry(network, layout, i)
        # a phase's greens as export.py writes them (the runtime itself reads only their count)
        greens = [phase.get("green_movements", ours["phases"][k] if k < len(ours["phases"]) else None)
                  for k, phase in enumerate(entry["phases"])]
        exported = {"in_lanes": entry["in_lanes"], "actions": entry["actions"], "phases": greens}
        for key in ("in_lanes", "phases", "actions"):
            if exported[key] != ours[key]:
                shown = "green movements of its phases" if key == "phases" else key
                raise ModelError(source, f"intersections[{i}].{key}", exported[key],
                                 f"the simulated network's intersection {entry['id']} has {ours[key]} as the "
                                 f"{shown}: the model was exported for another network "
                                 f"({meta.get('training', {}).get('scenario')})")


def check_timing(meta: dict, model_path: str, params) -> None:
    """ConfigError naming ``engine.<rule>`` where an evaluation's engine timing (`params`) would
    not do what the exported runtime commands (evaluate.py, before any work): a longer min green
    holds greens the runtime has ended, so its row is false signal faults and fail-safe; another
    yellow or all-red shows other clearances than the runtime commands (longer ones: false faults
    too). A shorter min green changes nothing: the runtime keeps its own (the tests run the
    engine without one on purpose, to see the runtime's rule act)."""
    for name in ("min_green_s", "yellow_s", "all_red_s"):
        exported, run = float(meta["timing"][name]), float(getattr(params, name))
        if run > exported if name == "min_green_s" else run != exported:
            raise ConfigError(model_path, f"engine.{name}", getattr(params, name),
                              f"the exported runtime enforces timing.{name}={exported:g}: run it under "
                              f"engine.{name}={exported:g}")


class SimulatedRuntime:
    """`PolicyRuntime`s (one per copy) behind the simulator's controller interface."""

    def __init__(self, model_path: str, metadata_path: str | None = None, *,
                 faults: Callable[[int, dict], dict] | None = None, **options) -> None:
        self.model_path, self.metadata_path, self.options = model_path, metadata_path, options
        self.faults = faults
        self.detectors = None  # envs.incidents.perturbations.DetectorFaults applied to the readings
        self.runtimes: list[PolicyRuntime] = []
        self.decisions: list = []  # per decision: the copies' `Decision`s

    def reset(self, sim: Simulator) -> None:
        self.runtimes = []
        first = PolicyRuntime(self.model_path, self.metadata_path, **self.options)
        meta = first.meta
        layout = intersection_layout(sim.network)
        ids = [entry["id"] for entry in meta["intersections"]]
        if list(layout.ids) != ids:
            raise ModelError(self.model_path, "intersections", list(layout.ids),
                             f"the exported policy controls {ids}")
        check_network(meta, str(first.metadata_path), sim.network, layout)
        min_green = float(meta["timing"]["min_green_s"])
        if min_green != int(min_green):  # rounded down below, a change would cut such a green short
            raise ModelError(str(first.metadata_path), "timing.min_green_s", min_green,
                             "a whole number of seconds to run in the simulator, which steps whole seconds")
        # one runtime per copy, loaded once the model is known to fit (each logs a "loaded" line)
        self.runtimes = [first] + [PolicyRuntime(self.model_path, self.metadata_path, **self.options)
                                   for _ in range(sim.batch_size - 1)]
        self.in_lanes = layout.in_lanes
        self.lane_capacity = feature_context(sim.network, layout, sim.params).lane_max_vehicles
        self.interval = int(meta["timing"]["decision_interval_s"])
        self.lane_readings = self.runtimes[0].lane_readings
        self._target = sim.keep_command()
        self._start = torch.zeros_like(self._target)
        self._owned = torch.ones(sim.batch_size, dtype=torch.bool, device=sim.device)
        self.decisions = []

    def own_copies(self, mask: torch.Tensor) -> None:
        """Decide only for these copies (`envs.evaluation.mixture.ControllerMix` calls it after reset)."""
        self._owned = mask.to(self._owned.device)

    def act(self, sim: Simulator) -> torch.Tensor:
        t = sim.state.t
        due = (t % self.interval == 0) & self._owned
        if bool(due.any()):
            readings = sim_readings(sim, self.in_lanes, self.detectors, self.lane_capacity, self.lane_readings)
            made = []
            for copy in torch.nonzero(due).flatten().tolist():
                now = int(t[copy])
                mine = {name: values[copy] for name, values in readings.items()}
                if self.faults is not None:
                    mine = self.faults(now, mine)
                decision = self.runtimes[copy].decide_arrays(now, **mine)
                self._target[copy] = torch.as_tensor(decision.phase, device=self._target.device)
                # whole-second steps: a change due x.5 s after the decision starts at x s, so it shows
                # in the next decision's readings, as in the field (rounded up onto the next decision's
                # second it came after those readings: a phase mismatch, a false fail-safe)
                self._start[copy] = now + torch.as_tensor(np.floor(decision.switch_in_s),
                                                          device=t.device).to(torch.int64)
                made.append(decision)
            self.decisions.append(made)
        # the field device holds the running phase until the change is due
        return torch.where(t.unsqueeze(1) >= self._start, self._target, -1)


__all__ = ["SimulatedRuntime", "check_network", "check_timing", "record_decisions", "sim_readings"]
