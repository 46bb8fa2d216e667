"""The deployment controller: an exported policy (agents/deploy/export.py) run with numpy and
onnxruntime only, behind safety timing rules and a fixed-time fail-safe.

    from agents.deploy.runtime import DeploymentController
    controller = DeploymentController("exported/policy.onnx")     # reads exported/policy.json
    reply = controller.decide({"t": 120, "intersections": {"A": {"lane_count": [...], ...}}})

    python -m agents.deploy.runtime serve --model exported/policy.onnx          # JSON lines on stdin
    python -m agents.deploy.runtime serve --model exported/policy.onnx --tcp 127.0.0.1:7000

This module must import without torch, stable-baselines3, gymnasium or hydra (a signal cabinet
has none of them); the tests run it in a process where those imports fail.

Timing rules, enforced here whatever the model says (seconds; the metadata's ``timing``). They
are the simulator's rules (envs/engine/step.py), so in closed loop the controller's own model
of each signal stays in step with the readings:

- a command to change phase starts ``yellow_s`` of yellow then ``all_red_s`` of red on the
  movements that lose green; a phase keeps its green at least ``min_green_s``: a change asked
  earlier is held back and carried out the moment min green is reached if that falls inside this
  decision interval (``switch_in_s`` in the reply), and dropped otherwise; the reply states the
  change's ``yellow_s`` and ``all_red_s`` (0 for a change that takes no green away);
- a green never lasts beyond ``max_green_s``: a policy that keeps a phase that would reach max
  green before the next decision is overruled, and the next phase of the plan starts when it
  does.

Faults and the fail-safe: a missing, corrupt or mismatched model (checksum, opset, input or
output shapes) or a failed onnxruntime session puts every intersection on its fixed-time
fallback plan; missing, non-numeric, NaN, negative or out-of-range readings, a reported phase or
time in phase that disagrees with what the controller commanded, an inference error or an
inference slower than ``deadline_ms`` put the affected intersections on it for that decision.
Each fault is logged (``logging`` logger ``gridlight.controller``) when it starts and when it
clears, and named in the reply; the next decision with good inputs goes back to the policy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import socketserver
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LOG = logging.getLogger("gridlight.controller")
METADATA_FORMAT = 1
READING_FIELDS = ("lane_count", "lane_halting", "phase", "time_in_phase")
POLICY, FALLBACK = "policy", "fallback"


class MetadataError(ValueError):
    """The metadata JSON is missing or unusable: without it there is nothing to control."""


# ---- the model file ------------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message's top-level fields."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(data):
            raise ValueError("truncated protobuf field")
        yield number, wire, value


def onnx_opsets(data: bytes) -> dict[str, int]:
    """``{domain: version}`` from an ONNX file's ``opset_import`` (ModelProto field 8), read
    without the onnx package ('' is the default ONNX domain)."""
    opsets = {}
    for number, wire, value in _fields(data):
        if number == 8 and wire == 2:
            entry = {n: v for n, _, v in _fields(value)}
            domain = entry.get(1, b"").decode() if isinstance(entry.get(1, b""), bytes) else ""
            opsets[domain] = int(entry.get(2, 0))
    return opsets


# ---- metadata ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    decision_interval_s: float
    min_green_s: float
    max_green_s: float
    yellow_s: float
    all_red_s: float

    @property
    def intergreen_s(self) -> float:
        return self.yellow_s + self.all_red_s


@dataclass
class Layout:
    """The metadata's per-intersection tables as padded numpy arrays (index = metadata index)."""

    ids: list[str]
    num_lanes: np.ndarray  # [I]
    lane_max: np.ndarray  # [I, L] most vehicles a lane can hold (0 on padding)
    num_phases: np.ndarray  # [I]
    actions: np.ndarray  # [I, A] roadnet phase of each action, -1 padding
    num_actions: np.ndarray  # [I]
    intergreen: np.ndarray  # [I, P, P] bool: switching p -> q shows yellow + all-red
    plan_phase: np.ndarray  # [I, K] the fallback plan's phases, -1 padding
    plan_green: np.ndarray  # [I, K] their green seconds
    plan_length: np.ndarray  # [I]
    index: dict[str, int] = field(default_factory=dict)


def _pad(rows: list[list], fill, dtype) -> np.ndarray:
    width = max((len(r) for r in rows), default=1) or 1
    out = np.full((len(rows), width), fill, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def load_metadata(path: Path) -> dict:
    if not path.is_file():
        raise MetadataError(f"{path}: no such metadata file (export.py writes it beside the model)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetadataError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise MetadataError(f"{path}: field 'format' is {found!r}, expected {METADATA_FORMAT}")
    for key in ("model", "timing", "intersections", "observation"):
        if key not in meta:
            raise MetadataError(f"{path}: field {key!r} is missing")
    return meta


def build_layout(meta: dict, source: str) -> Layout:
    inters = meta["intersections"]
    try:
        ids = [entry["id"] for entry in inters]
        num_phases = np.array([len(e["phases"]) for e in inters], dtype=np.int64)
        width = int(num_phases.max())
        intergreen = np.zeros((len(inters), width, width), dtype=bool)
        for i, entry in enumerate(inters):
            table = np.asarray(entry["intergreen_after_switch"], dtype=bool)
            intergreen[i, : table.shape[0], : table.shape[1]] = table
        layout = Layout(
            ids=ids,
            num_lanes=np.array([len(e["in_lanes"]) for e in inters], dtype=np.int64),
            lane_max=_pad([e["lane_max_vehicles"] for e in inters], 0.0, np.float64),
            num_phases=num_phases,
            actions=_pad([e["actions"] for e in inters], -1, np.int64),
            num_actions=np.array([len(e["actions"]) for e in inters], dtype=np.int64),
            intergreen=intergreen,
            plan_phase=_pad([[s["phase"] for s in e["fallback_plan"]] for e in inters], -1, np.int64),
            plan_green=_pad([[s["green_s"] for s in e["fallback_plan"]] for e in inters], 0.0, np.float64),
            plan_length=np.array([len(e["fallback_plan"]) for e in inters], dtype=np.int64),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise MetadataError(f"{source}: field 'intersections' is malformed ({error!r})") from None
    if len(set(ids)) != len(ids):
        raise MetadataError(f"{source}: field 'intersections' repeats an id")
    for i, inter_id in enumerate(ids):
        phases = int(num_phases[i])
        used = [p for p in list(layout.actions[i]) + list(layout.plan_phase[i]) if p >= 0]
        if any(p >= phases for p in used):
            raise MetadataError(f"{source}: intersection {inter_id!r} names a phase >= its {phases} phases")
        table = np.asarray(inters[i]["intergreen_after_switch"])
        if table.shape != (phases, phases):
            raise MetadataError(f"{source}: intersection {inter_id!r} intergreen_after_switch has shape "
                                f"{table.shape}, expected ({phases}, {phases})")
    if (layout.plan_length < 1).any():
        bad = ids[int(np.argmin(layout.plan_length))]
        raise MetadataError(f"{source}: intersection {bad!r} has an empty fallback_plan")
    layout.index = {inter_id: i for i, inter_id in enumerate(ids)}
    return layout


# ---- the controller ------------------------------------------------------------------------------


@dataclass
class Readings:
    """One decision's detector readings as arrays over the metadata's intersections."""

    lane_count: np.ndarray  # [I, L] float64 (NaN where missing)
    lane_halting: np.ndarray  # [I, L]
    phase: np.ndarray  # [I] float64 (NaN where missing)
    time_in_phase: np.ndarray  # [I]
    faults: list[list[str]]  # [I] problems found while parsing


@dataclass
class Decision:
    """The controller's answer for every intersection (metadata order)."""

    t: float
    phase: np.ndarray  # [I] int64 the phase to run
    switch_in_s: np.ndarray  # [I] seconds from t at which the change starts (0 = now / no change)
    yellow_s: np.ndarray  # [I] yellow the change shows on the movements losing green (0: none)
    all_red_s: np.ndarray  # [I] then all-red before the new green
    action: np.ndarray  # [I] int64 the policy's action (-1 where the fallback decided)
    source: list[str]  # [I] "policy" | "fallback"
    faults: list[list[str]]  # [I]
    global_faults: list[str]


class DeploymentController:
    """Runs an exported policy for every intersection of one network (see the module doc)."""

    def __init__(
        self,
        model_path: str | Path,
        metadata_path: str | Path | None = None,
        *,
        deadline_ms: float = 50.0,
        timing_tolerance_s: float = 1.0,
        threads: int = 1,
    ) -> None:
        self.model_path = Path(model_path)
        self.metadata_path = Path(metadata_path) if metadata_path else self.model_path.with_suffix(".json")
        self.meta = load_metadata(self.metadata_path)
        self.layout = build_layout(self.meta, str(self.metadata_path))
        timing = self.meta["timing"]
        try:
            self.timing = Timing(**{k: float(timing[k]) for k in Timing.__dataclass_fields__})
        except (KeyError, TypeError, ValueError) as error:
            raise MetadataError(f"{self.metadata_path}: field 'timing' is malformed ({error!r})") from None
        self.deadline_s = float(deadline_ms) / 1000.0
        self.timing_tolerance_s = float(timing_tolerance_s)
        self.max_lanes = int(self.meta["observation"]["max_lanes"])
        self.session = None
        self.model_fault: str | None = None
        self.fault_counts: dict[str, int] = {}  # fault kind -> times it started
        self._load_model(threads)
        count = len(self.layout.ids)
        # the controller's own model of each signal: what it commanded and when
        self.known = np.zeros(count, dtype=bool)
        self.cur_phase = np.zeros(count, dtype=np.int64)
        self.prev_phase = np.full(count, -1, dtype=np.int64)  # -1: unknown (assume intergreen)
        self.switched_at = np.zeros(count, dtype=np.float64)
        self.last_t: float | None = None
        self._active: dict[tuple[int, str], str] = {}  # (intersection, fault kind) -> message

    # ---- model loading -------------------------------------------------------------------------

    def _load_model(self, threads: int) -> None:
        spec = self.meta["model"]
        try:
            data = self.model_path.read_bytes()
        except OSError as error:
            return self._model_failed(f"model file {self.model_path} unreadable ({error.strerror or error})")
        digest = hashlib.sha256(data).hexdigest()
        if digest != spec.get("sha256"):
            return self._model_failed(f"model file {self.model_path} checksum {digest[:12]}… does not "
                                      f"match the metadata's {str(spec.get('sha256'))[:12]}…")
        try:
            opset = onnx_opsets(data).get("", None)
        except ValueError as error:
            return self._model_failed(f"model file {self.model_path} is not an ONNX model ({error})")
        if opset != spec.get("opset"):
            return self._model_failed(f"model opset {opset} does not match the metadata's {spec.get('opset')}")
        try:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            return self._model_failed(f"onnxruntime cannot load {self.model_path}: {error}")
        problem = self._check_signature(session, spec)
        if problem:
            return self._model_failed(problem)
        self.session = session
        LOG.info("loaded %s (opset %s, %d intersections)", self.model_path, opset, len(self.layout.ids))

    def _check_signature(self, session, spec: dict) -> str | None:
        for kind, actual in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
            expected = spec.get(kind, {})
            found = {arg.name: arg.shape for arg in actual}
            if set(found) != set(expected):
                return f"model {kind} {sorted(found)} do not match the metadata's {sorted(expected)}"
            for name, entry in expected.items():
                static = [d if isinstance(d, int) else None for d in entry["shape"]]
                got = [d if isinstance(d, int) else None for d in found[name]]
                if static != got:
                    return f"model {kind[:-1]} {name!r} has shape {found[name]}, the metadata says {entry['shape']}"
        return None

    def _model_failed(self, message: str) -> None:
        self.session = None
        self.model_fault = message
        LOG.error("fail-safe: %s; every intersection runs its fixed-time plan", message)
        self.fault_counts["model"] = self.fault_counts.get("model", 0) + 1

    # ---- readings ------------------------------------------------------------------------------

    def parse(self, intersections: dict) -> Readings:
        """Readings from a message's ``intersections`` mapping (id -> fields); anything wrong with
        one intersection's entry becomes that intersection's fault, never an exception."""
        count, width = len(self.layout.ids), self.max_lanes
        lane_count = np.full((count, width), np.nan)
        lane_halting = np.full((count, width), np.nan)
        phase = np.full(count, np.nan)
        time_in_phase = np.full(count, np.nan)
        faults: list[list[str]] = [[] for _ in range(count)]
        for i, inter_id in enumerate(self.layout.ids):
            entry = intersections.get(inter_id)
            if not isinstance(entry, dict):
                faults[i].append("readings missing" if entry is None else "readings are not an object")
                continue
            lanes = int(self.layout.num_lanes[i])
            for name, target in (("lane_count", lane_count), ("lane_halting", lane_halting)):
                values = entry.get(name)
                if not isinstance(values, list) or len(values) != lanes:
                    found = "missing" if values is None else f"{type(values).__name__} of length {len(values) if isinstance(values, list) else '-'}"
                    faults[i].append(f"{name}: expected a list of {lanes} numbers, got {found}")
                    continue
                row = _numbers(values)
                if row is None:
                    faults[i].append(f"{name}: not all numbers")
                    continue
                target[i, :lanes] = row
                target[i, lanes:] = 0.0
            for name, target in (("phase", phase), ("time_in_phase", time_in_phase)):
                value = _numbers([entry.get(name)])
                if value is None:
                    faults[i].append(f"{name}: expected a number, got {entry.get(name)!r}")
                else:
                    target[i] = value[0]
        return Readings(lane_count, lane_halting, phase, time_in_phase, faults)

    def validate(self, readings: Readings) -> list[list[str]]:
        """Per intersection, what is wrong with its (parsed) readings: NaN, out of range,
        inconsistent. Adds to ``readings.faults`` and returns it."""
        lay = self.layout
        faults = readings.faults
        lane_ok = np.arange(self.max_lanes)[None, :] < lay.num_lanes[:, None]
        with np.errstate(invalid="ignore"):
            for name, values in (("lane_count", readings.lane_count), ("lane_halting", readings.lane_halting)):
                nan = (~np.isfinite(values) & lane_ok).any(1)
                low = ((values < 0) & lane_ok).any(1)
                high = ((values > lay.lane_max) & lane_ok).any(1)
                for i in np.flatnonzero(nan | low | high):
                    if _mentions(faults[i], name):
                        continue
                    lanes = int(lay.num_lanes[i])
                    what = "NaN or infinite" if nan[i] else ("negative" if low[i] else "above the lane's capacity")
                    faults[i].append(
                        f"{name}: {what} ({_short(values[i, :lanes])}; capacity {_short(lay.lane_max[i, :lanes])})"
                    )
            over = ((readings.lane_halting > readings.lane_count) & lane_ok).any(1)
        for i in np.flatnonzero(over):
            if not faults[i]:
                faults[i].append("lane_halting: more halting vehicles than vehicles on a lane")
        phase, tip = readings.phase, readings.time_in_phase
        for i in range(len(lay.ids)):
            if not _mentions(faults[i], "phase") and not (
                np.isfinite(phase[i]) and phase[i] == int(phase[i]) and 0 <= phase[i] < lay.num_phases[i]
            ):
                faults[i].append(f"phase: {phase[i]:g} is not a phase index in [0, {int(lay.num_phases[i])})")
            if not _mentions(faults[i], "time_in_phase") and not (np.isfinite(tip[i]) and tip[i] >= 0):
                faults[i].append(f"time_in_phase: {tip[i]:g} is not a number of seconds >= 0")
        return faults

    # ---- the decision ----------------------------------------------------------------------------

    def decide(self, message: dict) -> dict:
        """One JSON message in, one JSON-able reply out (the service's schema, see README)."""
        if not isinstance(message, dict):
            raise ValueError("a message must be a JSON object")
        t = message.get("t")
        parsed = _numbers([t])
        if parsed is None or not math.isfinite(parsed[0]):
            raise ValueError(f"field 't' must be a number of seconds, got {str(t)[:40]!r}")
        intersections = message.get("intersections")
        if not isinstance(intersections, dict):
            raise ValueError("field 'intersections' must be an object {intersection id: readings}")
        unknown = sorted(set(intersections) - set(self.layout.index))
        decision = self.decide_readings(float(t), self.parse(intersections))
        global_faults = decision.global_faults + ([f"unknown intersection ids ignored: {unknown}"] if unknown else [])
        return {
            "t": t,
            "commands": {
                inter_id: {
                    "phase": int(decision.phase[i]),
                    "switch_in_s": float(decision.switch_in_s[i]),
                    "yellow_s": float(decision.yellow_s[i]),
                    "all_red_s": float(decision.all_red_s[i]),
                    "source": decision.source[i],
                    "faults": decision.faults[i],
                }
                for i, inter_id in enumerate(self.layout.ids)
            },
            "faults": global_faults,
        }

    def decide_arrays(self, t: float, lane_count, lane_halting, phase, time_in_phase) -> Decision:
        """`decide` for readings already in arrays (metadata order, lanes zero-padded)."""
        count = len(self.layout.ids)
        readings = Readings(
            np.asarray(lane_count, dtype=np.float64), np.asarray(lane_halting, dtype=np.float64),
            np.asarray(phase, dtype=np.float64), np.asarray(time_in_phase, dtype=np.float64),
            [[] for _ in range(count)],
        )
        return self.decide_readings(float(t), readings)

    def decide_readings(self, t: float, readings: Readings) -> Decision:
        if self.last_t is not None and t < self.last_t:
            raise ValueError(f"field 't' went backwards: {t} after {self.last_t}")
        self.last_t = t
        lay, timing = self.layout, self.timing
        faults = self.validate(readings)
        good = np.array([not f for f in faults])
        self._cross_check(t, readings, good, faults)
        global_faults = [self.model_fault] if self.model_fault else []

        # the policy, for the intersections whose readings are good
        action = np.full(len(lay.ids), -1, dtype=np.int64)
        rows = np.flatnonzero(good)
        if self.session is not None and rows.size:
            problem = self._infer(rows, readings, action)
            if problem:
                global_faults.append(problem)
                for i in rows:
                    faults[i].append(problem)
                action[:] = -1
        from_policy = action >= 0

        # what each intersection runs, under the timing rules
        elapsed = np.where(self.known, self._green_elapsed(t), np.inf)  # unknown: no min green to wait
        target = np.where(from_policy, lay.actions[np.arange(len(lay.ids)), action.clip(min=0)], -1)
        target, switch_in = self._apply_rules(elapsed, target, from_policy)
        inter = np.arange(len(lay.ids))
        # a signal whose phase the controller does not know gets the full clearance: any command
        # to it is a change
        clears = ((target != self.cur_phase) | ~self.known) & (
            lay.intergreen[inter, self.cur_phase.clip(min=0), target.clip(min=0)] | ~self.known
        )
        yellow, all_red = clears * timing.yellow_s, clears * timing.all_red_s
        self._advance(t, target, switch_in)
        self._log_faults(faults, global_faults)
        source = [POLICY if p else FALLBACK for p in from_policy]
        return Decision(t, target, switch_in, yellow, all_red, action, source, faults, global_faults)

    def _cross_check(self, t: float, readings: Readings, good: np.ndarray, faults) -> None:
        """The readings' phase and time in phase must be what the controller commanded; where they
        are not, the signal did something else: that is a fault, and the readings win."""
        phase = np.nan_to_num(readings.phase, nan=-1).astype(np.int64)
        tip = readings.time_in_phase
        known = self.known & good
        mismatch = known & ((phase != self.cur_phase)
                            | (np.abs(tip - (t - self.switched_at)) > self.timing_tolerance_s))
        for i in np.flatnonzero(mismatch):
            faults[i].append(
                f"signal reports phase {phase[i]} for {tip[i]:g} s; the controller commanded phase "
                f"{self.cur_phase[i]} {t - self.switched_at[i]:g} s ago"
            )
        resync = good & (~self.known | mismatch)
        self.cur_phase[resync] = phase[resync]
        self.prev_phase[resync & mismatch] = -1
        self.prev_phase[resync & ~self.known] = -1
        self.switched_at[resync] = t - tip[resync]
        self.known |= good
        good &= ~mismatch

    def _infer(self, rows: np.ndarray, readings: Readings, action: np.ndarray) -> str | None:
        feed = {
            "lane_count": readings.lane_count[rows].astype(np.float32),
            "lane_halting": readings.lane_halting[rows].astype(np.float32),
            "phase": readings.phase[rows].astype(np.int64),
            "time_in_phase": readings.time_in_phase[rows].astype(np.float32),
            "intersection": rows.astype(np.int64),
        }
        started = time.perf_counter()
        try:
            chosen = self.session.run(["action"], feed)[0]
        except Exception as error:  # onnxruntime's own exception types
            return f"inference failed: {error}"
        spent = time.perf_counter() - started
        if spent > self.deadline_s:
            return f"inference took {spent * 1e3:.2f} ms, over the {self.deadline_s * 1e3:g} ms deadline"
        chosen = np.asarray(chosen).reshape(-1)
        if chosen.shape != rows.shape or not (
            (chosen >= 0) & (chosen < self.layout.num_actions[rows])
        ).all():
            return f"inference returned actions {_short(chosen)} outside the intersections' actions"
        action[rows] = chosen
        return None

    def _green_elapsed(self, t: float) -> np.ndarray:
        """Seconds of green the current phase has shown at `t` (negative in its intergreen)."""
        inter = np.arange(len(self.layout.ids))
        shown = np.where(
            self.prev_phase >= 0,
            self.layout.intergreen[inter, self.prev_phase.clip(min=0), self.cur_phase.clip(min=0)],
            True,  # unknown previous phase: assume the intergreen was shown
        )
        return (t - self.switched_at) - shown * self.timing.intergreen_s

    def _apply_rules(self, elapsed, target, from_policy) -> tuple[np.ndarray, np.ndarray]:
        lay, timing = self.layout, self.timing
        inter = np.arange(len(lay.ids))
        interval = timing.decision_interval_s
        current = self.cur_phase
        # fallback intersections follow the fixed-time plan from where the signal is
        # -1: the current phase is not in the plan, or the controller does not know it
        slot = np.where(self.known, _position(lay.plan_phase, current), -1)
        slot_c = slot.clip(min=0)
        plan_green = lay.plan_green[inter, slot_c]
        next_plan = lay.plan_phase[inter, (slot_c + 1) % lay.plan_length]
        plan_due = (slot < 0) | (elapsed + interval > plan_green)
        fallback = np.where(slot < 0, lay.plan_phase[:, 0], np.where(plan_due, next_plan, current))
        fallback_at = np.where(slot < 0, 0.0, (plan_green - elapsed).clip(min=0.0))
        # max green: a policy keeping a phase that would pass max green is overruled
        action_slot = _position(lay.actions, current)
        next_action = lay.actions[inter, (action_slot.clip(min=0) + 1) % lay.num_actions.clip(min=1)]
        overdue = from_policy & (target == current) & (action_slot >= 0) & (elapsed + interval > timing.max_green_s)
        target = np.where(overdue, next_action, target)
        wanted_at = np.where(overdue, (timing.max_green_s - elapsed).clip(min=0.0), 0.0)
        target = np.where(from_policy, target, fallback)
        wanted_at = np.where(from_policy, wanted_at, fallback_at)
        # min green: the change waits for it; dropped if that is beyond this interval
        change = target != current
        switch_in = np.maximum(wanted_at, timing.min_green_s - elapsed).clip(min=0.0)
        in_time = switch_in < interval
        target = np.where(change & ~in_time, current, target)
        switch_in = np.where(change & in_time, switch_in, 0.0)
        return target.astype(np.int64), switch_in

    def _advance(self, t: float, target: np.ndarray, switch_in: np.ndarray) -> None:
        change = (target != self.cur_phase) | ~self.known
        # the phase before an unknown one is unknown too: -1 keeps the full intergreen assumed
        self.prev_phase = np.where(change, np.where(self.known, self.cur_phase, -1), self.prev_phase)
        self.switched_at = np.where(change, t + switch_in, self.switched_at)
        self.cur_phase = np.where(change, target, self.cur_phase)
        self.known |= change

    def _log_faults(self, faults: list[list[str]], global_faults: list[str]) -> None:
        """Log each fault when it starts and when it clears (not at every decision)."""
        active: dict[tuple[int, str], str] = {}
        for i, messages in enumerate(faults):
            for message in messages:
                active[(i, message.split(":")[0].split(" ")[0])] = message
        for key, message in active.items():
            if key not in self._active:
                inter_id = self.layout.ids[key[0]]
                LOG.warning("fail-safe at %s: %s; fixed-time plan until inputs are good", inter_id, message)
                self.fault_counts[key[1]] = self.fault_counts.get(key[1], 0) + 1
        for key in set(self._active) - set(active):
            LOG.info("%s back on the policy (%s cleared)", self.layout.ids[key[0]], key[1])
        self._active = active


def _numbers(values: list) -> np.ndarray | None:
    """A list of JSON numbers as float64 (NaN and inf allowed here; validate() rejects them),
    None if any entry is not a number."""
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        return None
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64 (e.g. 10**400): not a usable number
        return None


def _mentions(faults: list[str], name: str) -> bool:
    """Whether an intersection's faults already cover reading `name` (or all its readings)."""
    return any(f.startswith(name + ":") or f.startswith("readings") for f in faults)


def _short(values: np.ndarray) -> str:
    values = np.asarray(values).reshape(-1)
    text = ", ".join(f"{v:g}" for v in values[:8])
    return f"[{text}{', …' if values.size > 8 else ''}]"


def _position(table: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per row, the first column of `table` [I, K] equal to `value` [I]; -1 where none is."""
    match = table == value[:, None]
    return np.where(match.any(1), match.argmax(1), -1)


# ---- the service ---------------------------------------------------------------------------------


def handle_line(controller: DeploymentController, line: str, number: int) -> dict:
    """One request line -> one reply; a bad message gets an ``error`` reply, never an exception."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError as error:
        return {"error": f"line {number}: not JSON ({error.msg} at column {error.colno})", "line": number}
    try:
        return controller.decide(message)
    except ValueError as error:
        return {"error": f"line {number}: {error}", "line": number}
    except Exception as error:  # the service must keep serving whatever one message does
        LOG.exception("line %d: unexpected error", number)
        return {"error": f"line {number}: internal error {type(error).__name__}: {error}", "line": number}


def serve_lines(controller: DeploymentController, lines, write, lock: threading.Lock | None = None) -> None:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if lock is None:
            reply = handle_line(controller, line, number)
        else:
            with lock:  # one controller state: one message at a time, whichever client sent it
                reply = handle_line(controller, line, number)
        write(json.dumps(reply) + "\n")


def serve_tcp(controller: DeploymentController, host: str, port: int, ready=None) -> None:
    lock = threading.Lock()  # one signal network, one controller state

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            def write(text: str) -> None:
                self.wfile.write(text.encode())
                self.wfile.flush()

            def lines():
                for raw in self.rfile:
                    yield raw.decode("utf-8", errors="replace")

            serve_lines(controller, lines(), write, lock)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer((host, port), Handler) as server:
        LOG.info("serving on %s:%d", *server.server_address)
        if ready is not None:
            ready(server)
        server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.deploy.runtime", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="read JSON lines of readings, write JSON lines of commands")
    serve.add_argument("--model", required=True, help="the exported .onnx file")
    serve.add_argument("--metadata", default=None, help="its metadata JSON (default: beside the model)")
    serve.add_argument("--tcp", default=None, metavar="HOST:PORT", help="serve a local TCP socket instead of stdin")
    serve.add_argument("--deadline-ms", type=float, default=50.0, help="slower inference falls back (default 50)")
    serve.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        controller = DeploymentController(args.model, args.metadata, deadline_ms=args.deadline_ms)
    except MetadataError as error:
        LOG.error("%s", error)
        return 2
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        serve_tcp(controller, host or "127.0.0.1", int(port))
    else:
        serve_lines(controller, sys.stdin, lambda text: (sys.stdout.write(text), sys.stdout.flush()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
