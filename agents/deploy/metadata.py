"""The exported model's metadata JSON (agents/deploy/export.py writes it): loading, checking,
and its per-intersection tables as numpy arrays. numpy only, like the rest of the runtime."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.errors import ModelError

METADATA_FORMAT = 1
BASE_LANE_READINGS = ("lane_count", "lane_halting")  # what every exported policy reads
APPROACH_READINGS = ("approach_moving", "approach_halting")  # only where the policy observes them
LANE_READINGS = BASE_LANE_READINGS + APPROACH_READINGS  # every per-lane reading the runtime knows


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


CHECKSUM_FIELD = "checksum"
CANONICAL_FORM = "sha256 of each top-level entry but checksum, as JSON with sorted keys, separators ',' ':', ASCII"


def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def metadata_checksum(meta: dict) -> dict:
    """The ``checksum`` entry export.py writes: the SHA-256 of each top-level entry of `meta` (all
    but ``checksum`` itself) in `CANONICAL_FORM`. The ``model`` entry holds the model file's own
    SHA-256, so the pair is covered; one digest per entry lets a mismatch name what differs."""
    sections = {key: hashlib.sha256(_canonical(value)).hexdigest()
                for key, value in sorted(meta.items()) if key != CHECKSUM_FIELD}
    return {"algorithm": "sha256", "canonical_form": CANONICAL_FORM, "sections": sections}


def reexport_hint(meta: dict) -> str:
    """How to write the pair again: the export.py command for the checkpoint the metadata names."""
    training = meta.get("training")
    checkpoint = training.get("checkpoint") if isinstance(training, dict) else None
    return f"re-export it: python export.py checkpoint={checkpoint if isinstance(checkpoint, str) else 'CHECKPOINT'}"


def check_checksum(meta: dict, path: Path) -> None:
    """`meta` is what export.py wrote: its ``checksum`` entry matches `metadata_checksum`, entry by
    entry (an edit of ``timing.min_green_s`` from 5 to 0 stays in every allowed range, so only the
    checksum can tell). A file without one is refused too: it cannot be told from an edited file."""
    stored = meta.get(CHECKSUM_FIELD)
    if stored is None:
        raise ModelError(path, CHECKSUM_FIELD, None,
                         "missing: the file was written by an export from before the metadata had a checksum (or "
                         "the entry was removed), so an edit of its timing or tables could not be detected; "
                         + reexport_hint(meta))
    sections = stored.get("sections") if isinstance(stored, dict) else None
    if not isinstance(sections, dict) or stored.get("algorithm") != "sha256":
        raise ModelError(path, CHECKSUM_FIELD, stored, "malformed: expected {'algorithm': 'sha256', 'sections': "
                         "{entry: digest}} as export.py writes it; " + reexport_hint(meta))
    expected = metadata_checksum(meta)["sections"]
    differ = [key for key in sorted(set(expected) | set(sections)) if expected.get(key) != sections.get(key)]
    if differ:
        how = {key: "not in the file" if key not in expected else "added" if key not in sections else "edited"
               for key in differ}
        parts = [f"{key!r} ({how[key]})" for key in differ]
        first = differ[0]
        raise ModelError(path, first, meta.get(first),
                         f"the metadata differs from what export.py wrote in {', '.join(parts)}: the SHA-256 of "
                         f"each entry is in {CHECKSUM_FIELD}.sections, and an edited file is refused (the model file "
                         f"is covered by its own SHA-256, model.sha256); " + reexport_hint(meta))


def load_metadata(path: Path) -> dict:
    """The metadata JSON at `path`, with its format, checksum (`check_checksum`) and top-level
    fields checked."""
    if not path.is_file():
        raise ModelError(path, "metadata", str(path), "no such metadata file (export.py writes it beside the model)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(path, "metadata", str(path), f"not readable JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ModelError(path, "format", found, f"expected {METADATA_FORMAT}")
    check_checksum(meta, path)
    for key in ("model", "timing", "intersections", "observation"):
        if key not in meta:
            raise ModelError(path, key, None, "missing")
    return meta


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_phase(value) -> bool:
    """A roadnet phase index as the exporter writes it: an integer >= 0. The -1 padding is the
    loader's own (`_pad`), never the file's: a negative action in the file would still be an
    action, commanding a phase that does not exist."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _positive_at_most(value, most: float) -> bool:
    return _is_number(value) and math.isfinite(value) and 0 < value <= most


def load_timing(meta: dict, source: str) -> Timing:
    """The metadata's ``timing`` (seconds): each finite and >= 0, the decision interval > 0,
    min green <= max green (the timing rules, timing_rules.py, assume all of these)."""
    timing = meta["timing"]
    try:
        loaded = Timing(**{k: float(timing[k]) for k in Timing.__dataclass_fields__})
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(source, "timing", timing, f"malformed ({error!r})") from None
    for name in Timing.__dataclass_fields__:  # float() took "5" and true as numbers
        if not _is_number(timing[name]):
            raise ModelError(source, f"timing.{name}", timing[name], "must be a JSON number (seconds)")
    for name, value in vars(loaded).items():
        if not (math.isfinite(value) and value >= 0):
            raise ModelError(source, f"timing.{name}", timing[name], "must be a finite number >= 0")
    if not loaded.decision_interval_s > 0:
        raise ModelError(source, "timing.decision_interval_s", timing["decision_interval_s"], "must be > 0")
    if not loaded.min_green_s <= loaded.max_green_s:
        raise ModelError(source, "timing.max_green_s", timing["max_green_s"],
                         f"below timing.min_green_s ({timing['min_green_s']})")
    return loaded


def _tables(inters: list[dict]) -> Layout:
    num_phases = np.array([len(e["phases"]) for e in inters], dtype=np.int64)
    width = int(num_phases.max())
    intergreen = np.zeros((len(inters), width, width), dtype=bool)
    for i, entry in enumerate(inters):
        table = np.asarray(entry["intergreen_after_switch"], dtype=bool)
        intergreen[i, : table.shape[0], : table.shape[1]] = table
    return Layout(
        ids=[entry["id"] for entry in inters],
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


def _check_sumo(i: int, entry: dict, source: str) -> None:
    """A SUMO scenario's ``sumo`` entry: ``tls_id`` its light's id, or null where no light runs it. A message
    may key the light by it, and leave the junction out where it is null (agents/deploy/message_keys.py):
    read loosely, a non-string id was no key at all and a missing one made a light a junction to leave out."""
    sumo = entry["sumo"]
    if not isinstance(sumo, dict):
        raise ModelError(source, f"intersections[{i}].sumo", sumo,
                         f"intersection {entry['id']!r}: expected an object with its SUMO light's 'tls_id'")
    light = sumo.get("tls_id")
    if light is None and "tls_id" in sumo or isinstance(light, str) and light:
        return
    raise ModelError(source, f"intersections[{i}].sumo.tls_id", light,
                     f"intersection {entry['id']!r}: {'missing' if 'tls_id' not in sumo else 'not a light id'}; "
                     "expected its SUMO light's id (a non-empty string) or null where no light runs it")


def _check_entry(i: int, entry: dict, timing: Timing, source: str) -> None:
    """One intersection's values as the file wrote them (`_pad` would truncate 1.5 to phase 1
    and take a negative phase for padding): phases integers >= 0, each action a different
    phase (the model's action a means the a-th phase it was trained with), fallback greens in
    (0, max green] (the fail-safe must keep the max-green rule too), lane capacities > 0 (a
    reading is checked against them), one per incoming lane."""
    inter_id = entry["id"]
    phases = [(f"actions[{k}]", p) for k, p in enumerate(entry["actions"])]
    phases += [(f"fallback_plan[{k}].phase", step["phase"]) for k, step in enumerate(entry["fallback_plan"])]
    for path, phase in phases:
        if not _is_phase(phase):
            raise ModelError(source, f"intersections[{i}].{path}", phase,
                             f"intersection {inter_id!r}: a phase must be an integer >= 0")
    actions = entry["actions"]
    if not actions:  # the model has nothing to command there, nor the fallback a plan
        raise ModelError(source, f"intersections[{i}].actions", actions,
                         f"intersection {inter_id!r} has no action (every intersection has one at least; an older "
                         "exporter wrote none for a junction whose phases green right turns alone): export its "
                         "checkpoint again")
    if "sumo" in entry:
        _check_sumo(i, entry, source)
    for k, phase in enumerate(actions):
        if phase in actions[:k]:  # the exporter lists each signal phase once: a repeat is an edit
            raise ModelError(source, f"intersections[{i}].actions[{k}]", phase,
                             f"intersection {inter_id!r}: phase {phase} is already actions[{actions.index(phase)}]")
    # the fallback applies no max-green rule of its own: each green ends when the plan moves on,
    # so a plan that repeats a phase, or names one where there are more, held it for ever
    plan = [step["phase"] for step in entry["fallback_plan"]]
    for k, phase in enumerate(plan):
        if phase in plan[:k]:
            raise ModelError(source, f"intersections[{i}].fallback_plan[{k}].phase", phase,
                             f"intersection {inter_id!r}: phase {phase} is already fallback_plan[{plan.index(phase)}]"
                             " (the plan would hold it past max green)")
    if len(plan) == 1 and len(actions) > 1:
        raise ModelError(source, f"intersections[{i}].fallback_plan", entry["fallback_plan"],
                         f"intersection {inter_id!r}: one phase for its {len(actions)} actions "
                         "(the plan would hold it past max green)")
    for k, step in enumerate(entry["fallback_plan"]):
        if not _positive_at_most(step["green_s"], timing.max_green_s):
            raise ModelError(source, f"intersections[{i}].fallback_plan[{k}].green_s", step["green_s"],
                             f"intersection {inter_id!r}: must be > 0 and <= timing.max_green_s "
                             f"({timing.max_green_s:g})")
    lane_max, lanes = entry["lane_max_vehicles"], len(entry["in_lanes"])
    if len(lane_max) != lanes:
        raise ModelError(source, f"intersections[{i}].lane_max_vehicles", lane_max,
                         f"intersection {inter_id!r}: {len(lane_max)} entries for its {lanes} in_lanes")
    for k, capacity in enumerate(lane_max):
        if not _positive_at_most(capacity, math.inf):
            raise ModelError(source, f"intersections[{i}].lane_max_vehicles[{k}]", capacity,
                             f"intersection {inter_id!r}: must be a finite number > 0")


def _check_intergreen(i: int, entry: dict, source: str) -> None:
    """The intergreen table is what the phases' green movements make it (the exporter writes
    ``phase_removes_green``: p -> q shows yellow + all-red when a movement green in p is not green
    in q). The table alone decides the clearance the runtime commands, and the checksum does not
    cover this file: an edited ``false`` (or a string, which numpy reads as true) served a change
    with no yellow and no all-red."""
    inter_id, table = entry["id"], entry["intergreen_after_switch"]
    greens = []
    for p, phase in enumerate(entry["phases"]):
        moves = phase.get("green_movements") if isinstance(phase, dict) else None
        if not isinstance(moves, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in moves):
            raise ModelError(source, f"intersections[{i}].phases[{p}].green_movements", moves,
                             f"intersection {inter_id!r}: must be a list of movement indices")
        greens.append(set(moves))
    for p, row in enumerate(table):
        for q, value in enumerate(row):
            ends = sorted(greens[p] - greens[q])
            if not isinstance(value, bool) or value != bool(ends):
                raise ModelError(source, f"intersections[{i}].intergreen_after_switch[{p}][{q}]", value,
                                 f"intersection {inter_id!r}: phases[].green_movements make it {bool(ends)} "
                                 f"(switching phase {p} to {q} ends the green of movements {ends})")


def _check_tables(layout: Layout, inters: list[dict], max_lanes, timing: Timing, source: str) -> None:
    ids = layout.ids
    if len(set(ids)) != len(ids):
        raise ModelError(source, "intersections[].id", ids, "repeats an id")
    widest = int(layout.num_lanes.max(initial=0))
    # the readings are [intersections, max_lanes] and the model's lane inputs as wide as the widest
    # intersection (the exporter writes that): any other width fails every decision
    if isinstance(max_lanes, bool) or max_lanes != widest:
        raise ModelError(source, "observation.max_lanes", max_lanes,
                         f"the widest intersection has {widest} in_lanes")
    for i, inter_id in enumerate(ids):
        _check_entry(i, inters[i], timing, source)
        phases = int(layout.num_phases[i])
        used = [int(p) for p in list(layout.actions[i]) + list(layout.plan_phase[i]) if p >= 0]
        if any(p >= phases for p in used):
            raise ModelError(source, f"intersections[{i}].actions", used,
                             f"intersection {inter_id!r} names a phase >= its {phases} phases")
        table = np.asarray(inters[i]["intergreen_after_switch"])
        if table.shape != (phases, phases):
            raise ModelError(source, f"intersections[{i}].intergreen_after_switch", table.shape,
                             f"intersection {inter_id!r}: expected shape ({phases}, {phases})")
        _check_intergreen(i, inters[i], source)
    if (layout.plan_length < 1).any():
        i = int(np.argmin(layout.plan_length))
        raise ModelError(source, f"intersections[{i}].fallback_plan", [],
                         f"intersection {ids[i]!r} has an empty fallback plan")


def build_layout(meta: dict, source: str, timing: Timing) -> Layout:
    """The metadata's ``intersections`` as a checked `Layout` (`timing`: `load_timing`'s)."""
    inters = meta["intersections"]
    try:
        layout = _tables(inters)
        max_lanes = meta["observation"]["max_lanes"]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelError(source, "intersections", f"{type(error).__name__}: {error}", "malformed") from None
    _check_tables(layout, inters, max_lanes, timing, source)
    layout.index = {inter_id: i for i, inter_id in enumerate(layout.ids)}
    return layout


def check_action_head(layout: Layout, width, source: str) -> None:
    """The widest intersection's actions as many as the model's action head is wide (`width`:
    its ``logits`` output's second dimension; a narrower intersection's extra actions are masked
    inside the graph, which the metadata cannot show). A shorter list made every choice past its
    end an "actions outside" fault, a longer one named actions the model never takes."""
    widest = int(layout.num_actions.max(initial=0))
    if isinstance(width, int) and widest != width:
        i = int(np.argmax(layout.num_actions))
        raise ModelError(source, f"intersections[{i}].actions", layout.actions[i, :widest].tolist(),
                         f"the widest intersection's actions: {widest}, the model's action head "
                         f"(output 'logits') has {width}")


def check_features(observation: dict, lane_inputs: tuple[str, ...], layout: Layout, source: str) -> None:
    """``observation.features`` as far as what is stored shows the graph was built for them: each
    a feature an exported model computes (a per-lane one from the reading of the same name), as
    wide as it is for this model (per-lane: ``max_lanes``; ``phase_onehot``: the widest action
    list, `check_action_head`'s; ``intersection_id``: the intersections), and the approach
    counts listed exactly when the model takes them (`lane_inputs`: its ``model.inputs``, which
    must match the graph's). Which other features the graph computes, their order and
    ``observation.normalise`` are inside the graph only (the checksum covers the model file, not
    this one): an edit to them cannot be seen here, and changes nothing the runtime does."""
    features = observation.get("features")
    try:
        listed = [(entry["name"], entry["size"]) for entry in features]
    except (TypeError, KeyError) as error:
        raise ModelError(source, "observation.features", features, f"malformed ({error!r})") from None
    # the sizes envs/rl/features.py gives agents.deploy.export.EXPORTABLE_FEATURES
    widths = dict.fromkeys(LANE_READINGS, observation["max_lanes"]) | {
        "phase_onehot": int(layout.num_actions.max(initial=0)), "time_in_phase": 1, "intersection_id": len(layout.ids),
    }
    for k, (name, size) in enumerate(listed):
        if not isinstance(name, str) or name not in widths:
            raise ModelError(source, f"observation.features[{k}].name", name,
                             f"not a feature an exported model computes ({', '.join(widths)})")
        if isinstance(size, bool) or size != widths[name]:
            raise ModelError(source, f"observation.features[{k}].size", size, f"{name} is {widths[name]} wide here")
    observed = [name for name in APPROACH_READINGS if name in dict(listed)]
    taken = [name for name in APPROACH_READINGS if name in lane_inputs]
    if observed != taken:
        raise ModelError(source, "observation.features", [name for name, _ in listed],
                         f"the model takes the approach counts {taken} (model.inputs), the features list {observed}")
