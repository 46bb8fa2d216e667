"""One decision's detector readings: parsed from a JSON message into arrays, then checked.
Anything wrong with one intersection's readings becomes that intersection's fault (a short
message starting with the reading's name), never an exception.

Which per-lane readings a message carries depends on the exported policy (its metadata's
``model.inputs``): always ``lane_count`` and ``lane_halting``; ``approach_moving`` and
``approach_halting`` (vehicles within the approach distance of the stop line, moving and
halting) only for a policy that observes them."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

from agents.deploy.metadata import APPROACH_READINGS, BASE_LANE_READINGS, Layout
from envs.errors import CommandError

SIGNAL_READINGS = ("phase", "time_in_phase")
# a number at least this large may have been an integer that the fast JSON decoder (orjson,
# agents/deploy/service.py) turned into a float where json.loads keeps it exact
EXACT_BELOW = 2.0**63


@dataclass
class Readings:
    """One decision's detector readings as arrays over the metadata's intersections."""

    lanes: dict[str, np.ndarray]  # per-lane reading name -> [I, L] float64 (NaN where missing)
    phase: np.ndarray  # [I] float64 (NaN where missing)
    time_in_phase: np.ndarray  # [I]
    faults: list[list[str]]  # [I] problems found while parsing
    # [I] an unsignalised junction the message left out (`MessageKeys.optional`): no readings, no fault
    absent: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.absent is None:
            self.absent = np.zeros(len(self.faults), dtype=bool)

    @property
    def lane_count(self) -> np.ndarray:
        return self.lanes["lane_count"]

    @property
    def lane_halting(self) -> np.ndarray:
        return self.lanes["lane_halting"]

    @classmethod
    def from_arrays(cls, lanes: dict, phase, time_in_phase) -> "Readings":
        """Readings already in arrays (metadata order, lanes zero-padded), no faults yet."""
        per_lane = {name: np.asarray(values, dtype=np.float64) for name, values in lanes.items()}
        phase, time_in_phase = (np.asarray(a, dtype=np.float64) for a in (phase, time_in_phase))
        return cls(per_lane, phase, time_in_phase, [[] for _ in range(phase.size)])  # a 0-d phase: `check_shapes`


def check_shapes(readings: Readings, count: int, max_lanes: int, source: str = "<decide_arrays>") -> None:
    """A `CommandError` naming the reading unless each per-lane reading is ``[count, max_lanes]``
    and the phase and time in phase ``[count]``: numpy broadcast a single lane row to every
    intersection (an inference error on every decision) or stopped with an IndexError naming
    nothing."""
    expected = {name: (count, max_lanes) for name in readings.lanes} | dict.fromkeys(SIGNAL_READINGS, (count,))
    arrays = readings.lanes | {name: getattr(readings, name) for name in SIGNAL_READINGS}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            lanes = f", lanes zero-padded to observation.max_lanes ({max_lanes})" if len(shape) > 1 else ""
            raise CommandError(source, name, arrays[name].shape,
                               f"expected shape {shape}: the metadata's {count} intersections in its order{lanes}")


def policy_lane_readings(model_inputs) -> tuple[str, ...]:
    """The per-lane readings an exported model takes: the two base readings, and the approach
    readings its metadata's ``model.inputs`` names. A metadata whose inputs do not match the
    model file is the model's fault (`agents.deploy.model_file.check_signature`), not this."""
    named = set(model_inputs) if isinstance(model_inputs, dict) else set()
    return BASE_LANE_READINGS + tuple(name for name in APPROACH_READINGS if name in named)


_NUMBER_TYPES = {int, float}  # what json.loads gives for a JSON number


def numbers(values: list) -> np.ndarray | None:
    """A list of JSON numbers as float64 (NaN and inf allowed here; `validate_readings` rejects
    them), None if any entry is not a number."""
    if not set(map(type, values)) <= _NUMBER_TYPES:  # bool is its own type: excluded (C-speed check)
        return None
    try:
        return np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float64 (e.g. 10**400): not a usable number
        return None


def short(values: np.ndarray) -> str:
    """At most 8 values for a message."""
    values = np.asarray(values).reshape(-1)
    text = ", ".join(f"{v:g}" for v in values[:8])
    return f"[{text}{', …' if values.size > 8 else ''}]"


def _mentions(faults: list[str], name: str) -> bool:
    """Whether an intersection's faults already cover reading `name` (or all its readings)."""
    return any(f.startswith(name + ":") or f.startswith("readings") for f in faults)


def _parse_lanes(entry: dict, name: str, lanes: int, target: np.ndarray, faults: list[str]) -> None:
    values = entry.get(name)
    if not isinstance(values, list) or len(values) != lanes:
        length = len(values) if isinstance(values, list) else "-"
        found = "missing" if values is None else f"{type(values).__name__} of length {length}"
        faults.append(f"{name}: expected a list of {lanes} numbers, got {found}")
        return
    row = numbers(values)
    if row is None:
        faults.append(f"{name}: not all numbers")
        return
    target[:lanes] = row
    target[lanes:] = 0.0


def parse_readings(layout: Layout, max_lanes: int, intersections: dict,
                   lane_names: tuple[str, ...] = BASE_LANE_READINGS, optional: np.ndarray | None = None) -> Readings:
    """Readings from a message's ``intersections`` mapping (id -> fields); `lane_names`: the
    per-lane readings the policy needs; `optional` ``[I]`` bool: the intersections that need no
    readings (`MessageKeys.optional`), `Readings.absent` where the mapping leaves them out."""
    count = len(layout.ids)
    readings = Readings({name: np.full((count, max_lanes), np.nan) for name in lane_names},
                        np.full(count, np.nan), np.full(count, np.nan), [[] for _ in range(count)])
    for i, inter_id in enumerate(layout.ids):
        entry, faults = intersections.get(inter_id), readings.faults[i]
        if inter_id not in intersections and optional is not None and optional[i]:
            readings.absent[i] = True
            continue
        if not isinstance(entry, dict):
            faults.append("readings missing" if entry is None else "readings are not an object")
            continue
        for name in lane_names:
            _parse_lanes(entry, name, int(layout.num_lanes[i]), readings.lanes[name][i], faults)
        for name in SIGNAL_READINGS:
            value = numbers([entry.get(name)])
            if value is None:
                faults.append(f"{name}: expected a number, got {entry.get(name)!r}")
            else:
                getattr(readings, name)[i] = value[0]
    return readings


def _check_lanes(layout: Layout, readings: Readings, lane_ok: np.ndarray) -> None:
    faults = readings.faults
    with np.errstate(invalid="ignore"):
        for name, values in readings.lanes.items():
            nan, low = ~np.isfinite(values) & lane_ok, (values < 0) & lane_ok
            high = (values > layout.lane_max) & lane_ok
            for i in np.flatnonzero((nan | low | high).any(1)):
                if _mentions(faults[i], name):
                    continue
                lanes = int(layout.num_lanes[i])
                what, bad = (("NaN or infinite", nan) if nan[i].any() else ("negative", low) if low[i].any()
                             else ("above the lane's capacity", high))
                j = int(np.flatnonzero(bad[i])[0])  # the first such lane, named: `short` shows only 8
                faults[i].append(
                    f"{name}: {what} at lane {j} ({values[i, j]:g}, capacity {layout.lane_max[i, j]:g}; "
                    f"lanes {short(values[i, :lanes])})"
                )
        over = ((readings.lane_halting > readings.lane_count) & lane_ok).any(1)
    for i in np.flatnonzero(over):
        if not faults[i]:
            faults[i].append("lane_halting: more halting vehicles than vehicles on a lane")


def _check_signal(layout: Layout, readings: Readings) -> np.ndarray:
    """Adds the faults of the signal's own readings; ``[I]`` bool: the phase is a phase index of
    the intersection and the time in phase a number of seconds >= 0 (missing or unparsable: NaN)."""
    faults, phase, tip = readings.faults, readings.phase, readings.time_in_phase
    with np.errstate(invalid="ignore"):  # NaN compares False: not a phase, not a time
        phase_ok = np.isfinite(phase) & (phase == np.trunc(phase)) & (phase >= 0) & (phase < layout.num_phases)
        tip_ok = np.isfinite(tip) & (tip >= 0)
    # the messages are composed per intersection, only for those found wrong above
    for i in np.flatnonzero(~(phase_ok & tip_ok) & ~readings.absent):
        if not phase_ok[i] and not _mentions(faults[i], "phase"):
            faults[i].append(f"phase: {phase[i]:g} is not a phase index in [0, {int(layout.num_phases[i])})")
        if not tip_ok[i] and not _mentions(faults[i], "time_in_phase"):
            faults[i].append(f"time_in_phase: {tip[i]:g} is not a number of seconds >= 0")
    return phase_ok & tip_ok


def validate_readings(layout: Layout, max_lanes: int, readings: Readings) -> tuple[list[list[str]], np.ndarray]:
    """Per intersection, what is wrong with its (parsed) readings: NaN, out of range,
    inconsistent. Adds to ``readings.faults`` and returns it, with ``[I]`` bool: the signal's own
    readings (phase, time in phase) are valid, whatever the detectors' are.

    Every per-lane reading lies in [0, the lane's capacity] and a lane's halting count never
    exceeds its vehicle count. The approach readings are not checked against the lane totals:
    in the field they may come from other detectors (advance loops, cameras) with their own
    errors."""
    count, halting = readings.lane_count, readings.lane_halting
    with np.errstate(invalid="ignore"):  # NaN compares False: out of range
        # every value, padding included, in [0, capacity] and no lane halting more than it holds:
        # then there is nothing for `_check_lanes` to find (a few array operations, not 15)
        plausible = ((count >= 0) & (count <= layout.lane_max) & (halting >= 0) & (halting <= count)).all()
        for name in readings.lanes.keys() - set(BASE_LANE_READINGS):
            values = readings.lanes[name]
            plausible = plausible and bool(((values >= 0) & (values <= layout.lane_max)).all())
    if not plausible:
        lane_ok = (np.arange(max_lanes)[None, :] < layout.num_lanes[:, None]) & ~readings.absent[:, None]
        _check_lanes(layout, readings, lane_ok)
    signal_ok = _check_signal(layout, readings)
    return readings.faults, signal_ok


class WholeMessage:
    """Parses a whole message's readings at once, for a message in the exact expected shape
    (every intersection that needs readings keyed once, by a key that names it alone, an object
    with all its readings, the per-lane ones lists of the intersection's lane count, every reading
    a JSON number); `parse` answers None for any other message, which `parse_readings` then takes
    intersection by intersection to name what is wrong. Both give the same `Readings` for a
    message in shape; `validate_readings` then checks them, vectorised, either way. `keys`: the
    network's `MessageKeys` (None, or `MessageKeys.plain`: every intersection keyed by its id and
    needing readings)."""

    def __init__(self, layout: Layout, max_lanes: int, lane_names: tuple[str, ...] = BASE_LANE_READINGS,
                 keys=None) -> None:
        self.ids = list(layout.ids)
        self.known = frozenset(self.ids)
        self.lane_names = tuple(lane_names)
        count, kinds = len(self.ids), len(self.lane_names)
        self.num_lanes = [int(n) for n in layout.num_lanes]
        self.list_lengths = self.num_lanes * kinds  # the first reading's lists, then the next's
        self.shape = (kinds, count, max_lanes)
        # each lane's position in the padded [R, I, L] arrays, reading by reading and intersection
        # by intersection: the order of the values chained from the message's lists
        lane_ok = np.arange(max_lanes)[None, :] < layout.num_lanes[:, None]
        self.slots = np.flatnonzero(np.stack([lane_ok] * kinds))
        self.per_lane = len(self.slots)
        self.keys = None if keys is None or keys.plain else keys
        # an intersection's lanes in one reading's padded [I, L] array (`readings` of some rows)
        self.row_slots = [np.arange(n) + i * max_lanes for i, n in enumerate(self.num_lanes)]

    def decode(self, message) -> tuple | None:
        """``(t, values, unknown ids, keyed)`` of a message that a fast JSON decoder gave, or None
        if it is not in the expected shape (class doc): ``t`` a JSON number below `EXACT_BELOW` in
        magnitude, as are all the readings; ``keyed``: None where every intersection is keyed by
        its id, else ``(rows, keys)``, the intersections the message keys (metadata order) and
        their keys. The part of a decision that needs no runtime state, so a decoding worker can
        take it (agents/deploy/decoders.py); `readings` finishes it."""
        t = message.get("t") if type(message) is dict else None
        intersections = message.get("intersections") if type(message) is dict else None
        if type(t) not in (int, float) or not abs(t) < EXACT_BELOW or type(intersections) is not dict:
            return None
        if self.keys is None:
            values = self.values(intersections, below=EXACT_BELOW)
            return None if values is None else (t, values, sorted(intersections.keys() - self.known), None)
        resolved = self.keys.resolve(intersections)
        # a key refused, an intersection keyed twice or one left out that needs readings: named one by one
        if resolved.ambiguous or len(resolved.keyed) != sum(map(len, resolved.keyed.values())) \
                or not all(row in resolved.keyed for row in self.keys.required.tolist()):
            return None
        rows = sorted(resolved.keyed)
        keys = [resolved.keyed[row][0] for row in rows]
        values = self.values(intersections, EXACT_BELOW, keys, rows)
        return None if values is None else (t, values, sorted(resolved.unknown), (rows, keys))

    def parse(self, intersections: dict, below: float = np.inf) -> Readings | None:
        """The message's readings, or None if it is not in the expected shape (class doc) or
        has a number not smaller than `below` in magnitude (NaN included)."""
        values = self.values(intersections, below)
        return None if values is None else self.readings(values)

    def values(self, intersections: dict, below: float = np.inf, keys: list[str] | None = None,
               rows: list[int] | None = None) -> np.ndarray | None:
        """Every reading of the message in one float64 array (the per-lane lists chained reading
        by reading, then the phases, then the times in phase), or None as `parse`; `keys`: those
        of the intersections `rows` (default: every intersection's id)."""
        try:
            entries = [intersections[inter_id] for inter_id in (self.ids if keys is None else keys)]
            if not set(map(type, entries)) <= {dict}:
                return None
            lists = [entry[name] for name in self.lane_names for entry in entries]
            scalars = [entry[name] for name in SIGNAL_READINGS for entry in entries]
        except KeyError:
            return None
        lengths = self.list_lengths if rows is None else [self.num_lanes[row] for row in rows] * len(self.lane_names)
        if not set(map(type, lists)) <= {list} or list(map(len, lists)) != lengths:
            return None
        # one conversion for every number of the message, each a JSON number as in `numbers`
        flat = list(chain.from_iterable(lists))
        flat += scalars
        if not set(map(type, flat)) <= _NUMBER_TYPES:
            return None
        try:
            values = np.fromiter(flat, np.float64, len(flat))
        except OverflowError:  # an integer beyond float64
            return None
        if not np.abs(values).max(initial=0.0) < below:
            return None
        return values

    def readings(self, values: np.ndarray, rows: list[int] | None = None) -> Readings:
        """The `Readings` that `values` (from `values`) hold: lanes scattered into the padded
        arrays; `rows`: the intersections they are of (default: all; the others are `absent`)."""
        lanes = np.zeros(self.shape)
        count = len(self.ids)
        if rows is None:
            lanes.reshape(-1)[self.slots] = values[: self.per_lane]
            phase, time_in_phase = values[self.per_lane: self.per_lane + count], values[self.per_lane + count:]
            return Readings(dict(zip(self.lane_names, lanes)), phase, time_in_phase, [[] for _ in self.ids])
        one = np.concatenate([self.row_slots[row] for row in rows]) if rows else np.zeros(0, dtype=np.int64)
        slots = (one[None, :] + np.arange(len(self.lane_names))[:, None] * lanes[0].size).reshape(-1)
        lanes.reshape(-1)[slots] = values[: slots.size]
        phase, time_in_phase = np.full(count, np.nan), np.full(count, np.nan)
        phase[rows] = values[slots.size: slots.size + len(rows)]
        time_in_phase[rows] = values[slots.size + len(rows):]
        absent = self.keys.optional.copy()
        absent[rows] = False
        return Readings(dict(zip(self.lane_names, lanes)), phase, time_in_phase, [[] for _ in self.ids], absent)
