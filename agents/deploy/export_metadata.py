"""The exported policy's metadata JSON, written beside its ONNX model by
`agents.deploy.export.export_policy` (and read by `agents.deploy.metadata`): the model file's
inputs and outputs, the observation it was trained on, the timing rules, and each
intersection's lanes, movements, phases and fixed-time fallback plan.

The model's inputs follow the policy's observation (`model_inputs`): every policy takes lane
counts, halting counts, phase, time in phase and the intersection index; a policy observing the
approach counts also takes ``approach_moving`` and ``approach_halting`` per lane."""

from __future__ import annotations

import hashlib
from importlib import metadata as importlib_metadata
from pathlib import Path

import torch

from envs.engine.intersections import IntersectionLayout
from envs.rl.features import TIME_IN_PHASE_MAX_S, VEHICLE_SPACING_M
from envs.rl.movement_features import APPROACH_M
from envs.scenario.network import Network, lane_ids

BASE_INPUTS = ("lane_count", "lane_halting", "phase", "time_in_phase", "intersection")
APPROACH_INPUTS = ("approach_moving", "approach_halting")  # after the base inputs, where the policy reads them
OUTPUTS = ("action", "phase_command", "logits")

_LANE_STORAGE = f"divided by lane storage (lane length / {VEHICLE_SPACING_M:g} m, at least 1)"
_APPROACH_STORAGE = f"divided by approach storage ({APPROACH_M:g} m / {VEHICLE_SPACING_M:g} m)"
_NORMALISATION = {
    "lane_count": _LANE_STORAGE, "lane_halting": _LANE_STORAGE,
    "approach_moving": _APPROACH_STORAGE, "approach_halting": _APPROACH_STORAGE,
    "time_in_phase": f"clamped at {TIME_IN_PHASE_MAX_S:g} s, divided by {TIME_IN_PHASE_MAX_S:g}",
}


def model_inputs(features) -> tuple[str, ...]:
    """The ONNX model's input names, in order, for a policy observing `features` (an approach
    feature is computed from the reading of the same name)."""
    return BASE_INPUTS + tuple(name for name in APPROACH_INPUTS if name in features)


def _per_lane(lanes: int) -> dict:
    return {"shape": ["batch", lanes], "dtype": "float32", "units": "vehicles"}


_INPUT_SPECS = {
    "lane_count": _per_lane, "lane_halting": _per_lane,
    "approach_moving": _per_lane, "approach_halting": _per_lane,
    "phase": lambda lanes: {"shape": ["batch"], "dtype": "int64", "units": "roadnet phase index"},
    "time_in_phase": lambda lanes: {"shape": ["batch"], "dtype": "float32", "units": "s"},
    "intersection": lambda lanes: {"shape": ["batch"], "dtype": "int64", "units": "metadata index"},
}
_READING_DOCS = {
    "lane_count": "vehicles on each incoming lane, in the intersection's in_lanes order",
    "lane_halting": "vehicles slower than {halting} m/s on each incoming lane",
    "approach_moving": "vehicles within {approach:g} m of the stop line at {halting} m/s or faster, per incoming lane",
    "approach_halting": "vehicles within {approach:g} m of the stop line slower than {halting} m/s, per incoming lane",
    "phase": "the phase the signal runs (roadnet index), including its yellow/all-red",
    "time_in_phase": "seconds since that phase was commanded (including yellow/all-red)",
}


def _fallback_plan(network: Network, layout: IntersectionLayout, max_green_s: float,
                   sumo_lights: dict | None = None) -> list[list[dict]]:
    """Per intersection: its actions in order, each with the roadnet plan's duration (every
    phase has one: the roadnet parsers refuse a time <= 0), never above max green: the fixed-time
    plan the runtime falls back to. A SUMO light's phase time holds the yellows folded into it
    (`sumo_lights`' ``transition_s``); the runtime shows its own clearance before each green, so
    the plan's green is the program's green alone (else each phase ran the yellow's time longer)."""
    plans = []
    for i, row in enumerate(layout.action_phase.tolist()):
        folded = sumo_lights[layout.ids[i]]["transition_s"] if sumo_lights is not None else None
        plan = []
        for phase in (p for p in row if p >= 0):
            green = float(network.phase_duration[i, phase]) - (folded[phase] if folded else 0.0)
            plan.append({"phase": int(phase), "green_s": min(green, max_green_s)})
        plans.append(plan)
    return plans


def intersections_entry(network: Network, layout: IntersectionLayout, lane_max: torch.Tensor,
                        max_green_s: float, sumo_lights: dict | None = None) -> list[dict]:
    """Per intersection: its incoming lanes (the readings' lane order) with what each holds, its
    movements, phases, intergreens, actions and fixed-time fallback plan; for a SUMO scenario
    (`sumo_lights`, its ``info["sumo_lights"]``) also ``sumo``: the tlLogic id that runs it (SUMO's
    junction and light ids may differ) and the SUMO program phases each phase stands for."""
    lanes = lane_ids(network)
    roads = network.road_ids
    per_inter = network.movements_per_intersection
    plans = _fallback_plan(network, layout, max_green_s, sumo_lights)
    out = []
    for i, inter_id in enumerate(layout.ids):
        in_lanes = [lane for lane in layout.in_lanes[i].tolist() if lane >= 0]
        position = {lane: k for k, lane in enumerate(in_lanes)}
        movements = []
        for k in range(per_inter):
            m = i * per_inter + k
            if bool(network.movement_valid[m]):
                movements.append({
                    "index": k,
                    "from_road": roads[int(network.movement_start_road[m])],
                    "to_road": roads[int(network.movement_end_road[m])],
                    "type": ["straight", "left", "right"][int(network.movement_type[m])],
                    # the incoming lanes (positions in in_lanes) it leaves from: whose halting vehicles
                    # call its phases for the runtime's max-red guard (agents/deploy/max_red.py)
                    "in_lanes": sorted(position[lane] for lane in network.movement_in_lanes[m].tolist()
                                       if lane in position),
                })
        phases = []
        for p in range(int(network.num_phases[i])):
            phases.append({
                "index": p,
                "green_movements": [k for k in range(per_inter) if bool(network.phase_green[i, p, k])],
                # the greens that yield (SUMO's 'g', an unsignalised junction's movements): still
                # greens for the intergreen table, but not protected ones
                "permissive_movements": [k for k in range(per_inter) if bool(network.phase_permissive[i, p, k])],
                "signal": bool(network.signal_phase[i, p]),
                "plan_duration_s": float(network.phase_duration[i, p]),
            })
        removes = network.phase_removes_green[i, : len(phases), : len(phases)]
        entry = {
            "id": inter_id,
            "index": i,
            "in_lanes": [lanes[lane] for lane in in_lanes],
            "lane_max_vehicles": [float(lane_max[lane]) for lane in in_lanes],
            "movements": movements,
            "phases": phases,
            "intergreen_after_switch": removes.tolist(),  # [from phase][to phase]: yellow + all-red apply
            "actions": [int(p) for p in layout.action_phase[i].tolist() if p >= 0],
            "fallback_plan": plans[i],
        }
        if sumo_lights is not None:
            entry["sumo"] = sumo_lights[inter_id]
        out.append(entry)
    return out


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def project_version() -> str:
    try:
        return importlib_metadata.version("gridlight")
    except importlib_metadata.PackageNotFoundError:  # running from a source tree not installed
        return "unknown"


def model_entry(onnx_path: Path, opset: int, layout: IntersectionLayout, inputs: tuple[str, ...]) -> dict:
    lanes = layout.max_in_lanes
    return {
        "file": onnx_path.name,
        "sha256": sha256(onnx_path),
        "opset": int(opset),
        "inputs": {name: _INPUT_SPECS[name](lanes) for name in inputs},
        "outputs": {
            "action": {"shape": ["batch"], "dtype": "int64"},
            "phase_command": {"shape": ["batch"], "dtype": "int64"},
            "logits": {"shape": ["batch", layout.max_actions], "dtype": "float32"},
        },
    }


def observation_entry(env_meta: dict, layout: IntersectionLayout) -> dict:
    halting = env_meta["engine"]["halting_speed"]
    inputs = model_inputs(env_meta["observations"])
    return {
        "features": [
            {"name": f, "size": entry["size"], "doc": entry.get("doc", "")}
            for f, entry in env_meta["observations"].items()
        ],
        "normalise": bool(env_meta["normalise"]),
        # what the policy's observed features went through: nothing when normalise is off
        "normalisation": {name: text for name, text in _NORMALISATION.items()
                          if name in env_meta["observations"] and env_meta["normalise"]},
        "readings": {name: _READING_DOCS[name].format(halting=halting, approach=APPROACH_M)
                     for name in inputs if name != "intersection"},
        "max_lanes": layout.max_in_lanes,
        "max_actions": layout.max_actions,
    }


def timing_entry(engine: dict, interval: int, max_green_s: float, max_red_s: float | None = None) -> dict:
    return {
        "decision_interval_s": interval,
        "min_green_s": int(engine["min_green_s"]),
        "max_green_s": float(max_green_s),
        "max_red_s": None if max_red_s is None else float(max_red_s),  # null: the max-red guard is off
        "yellow_s": int(engine["yellow_s"]),
        "all_red_s": int(engine["all_red_s"]),
    }


__all__ = ["BASE_INPUTS", "OUTPUTS", "intersections_entry", "model_entry", "model_inputs",
           "observation_entry", "project_version", "sha256", "timing_entry"]
