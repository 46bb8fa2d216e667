"""The policy runtime: an exported policy (agents/deploy/export.py) run with numpy and
onnxruntime only, behind safety timing rules and a fixed-time fail-safe.

    from agents.deploy.runtime import PolicyRuntime
    runtime = PolicyRuntime("exported/policy.onnx")     # reads exported/policy.json
    reply = runtime.decide({"t": 120, "intersections": {"A": {"lane_count": [...], ...}}})

`agents.deploy.service` serves it as JSON lines (stdin or TCP). This module must import without
torch, stable-baselines3, gymnasium or hydra (a signal cabinet has none of them); the tests run
it in a process where those imports fail.

Timing rules, enforced here whatever the model says (seconds; the metadata's ``timing``;
agents/deploy/timing_rules.py). They are the simulator's rules (envs/engine/step.py), so in
closed loop the runtime's own model of each signal (agents/deploy/signals.py) stays in step with
the readings:

- a command to change phase starts ``yellow_s`` of yellow then ``all_red_s`` of red on the
  movements that lose green; a phase keeps its green at least ``min_green_s``: a change asked
  earlier is held back and carried out the moment min green is reached if that falls inside this
  decision interval (``switch_in_s`` in the reply), and dropped otherwise; the reply states the
  change's ``yellow_s`` and ``all_red_s`` (0 for a change that takes no green away);
- a green never lasts beyond ``max_green_s``: a policy that keeps a phase that would reach max
  green before the next decision is overruled, and the next phase of the plan starts when it
  does. Max green counts from the earliest start the runtime holds for the phase, min green from
  the latest it takes (a reported start later than its own is taken for min green only so far
  that min green still ends by max green: `SignalModel.later_start`);
- with ``max_red_s`` set (null or absent in the metadata: off), no movement with a vehicle halting on
  one of its lanes stays red past it: the max-red guard (agents/deploy/max_red.py) takes the
  intersection from the policy, under min green, yellow and all-red, and says so (``"source":
  "max_red"`` in the reply, a warning when it starts, `override_counts`).

Faults and the fail-safe: a missing or mismatched model (opset, input or output shapes and types)
or a failed onnxruntime session puts every intersection on its fixed-time fallback plan;
missing, non-numeric, NaN, negative or out-of-range readings, a reported phase or time in phase
that disagrees with what the runtime commanded, an inference error or an inference slower than
``deadline_ms`` put the affected intersections on it for that decision.
Each fault is logged (``logging`` logger ``gridlight.runtime``) when it starts and when it
clears, and named in the reply; the next decision with good inputs goes back to the policy.
A reported phase other than the one expected is taken as just started and commanded as a change
after min green with the longest clearance into it (the phase before a change that started less than
the tolerance ago is a signal switching late: the change is stated again); a ``t`` before the last one is a clock reset,
not an error: every signal's timing starts again from it, only ever longer, max green aside
(it counts on from the green already shown; agents/deploy/signals.py).
On a SUMO network a message may key a light by its SUMO id as well as by the junction's, and leave
the unsignalised junctions out (agents/deploy/message_keys.py); the reply is keyed as the message.
A missing or unusable metadata file (its checksum missing or not matching included) is an
`envs.errors.ModelError`: without it there is nothing to control; so is a model file whose
SHA-256 is not the metadata's ``model.sha256`` (changed or damaged: not the model exported).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from numbers import Integral, Real
from pathlib import Path

import numpy as np

from agents.deploy.metadata import (
    build_layout, check_action_head, check_features, load_metadata, load_timing, reexport_hint,
)
from agents.deploy.max_red import MaxRedGuard, demand_tables, load_max_red
from agents.deploy.message_keys import MessageKeys
from agents.deploy.model_file import infer, load_session, not_a_model
from agents.deploy.readings import (
    Readings, WholeMessage, check_shapes, numbers, parse_readings, policy_lane_readings, validate_readings,
)
from agents.deploy.signals import SignalModel
from agents.deploy.timing_rules import timing_commands
from envs.errors import ConfigError, ModelError, positive_or_none

LOG = logging.getLogger("gridlight.runtime")
POLICY, FALLBACK, MAX_RED = "policy", "fallback", "max_red"


@dataclass
class Decision:
    """The runtime's answer for every intersection (metadata order)."""

    t: float
    phase: np.ndarray  # [I] int64 the phase to run
    switch_in_s: np.ndarray  # [I] seconds from t at which the change starts (0 = now / no change)
    yellow_s: np.ndarray  # [I] yellow the change shows on the movements losing green (0: none)
    all_red_s: np.ndarray  # [I] then all-red before the new green
    action: np.ndarray  # [I] int64 the policy's action (-1 where the fallback decided)
    source: list[str]  # [I] "policy" | "fallback" | "max_red" (the max-red guard overrode the policy)
    faults: list[list[str]]  # [I]
    global_faults: list[str]

    def reply(self, t, named: list[tuple[str, int]], extra_faults: list[str]) -> dict:
        """The service's JSON reply (docs/deployment.md, "Protocol"): a command under each key of
        `named`, ``(key, intersection index)`` (`MessageKeys.named`)."""
        commands = {
            key: {
                "phase": int(self.phase[i]),
                "switch_in_s": float(self.switch_in_s[i]),
                "yellow_s": float(self.yellow_s[i]),
                "all_red_s": float(self.all_red_s[i]),
                "source": self.source[i],
                "faults": self.faults[i],
            }
            for key, i in named
        }
        return {"t": t, "commands": commands, "faults": self.global_faults + extra_faults}

    def reply_text(self, t, named: list[tuple[str, int]], keys: list[str], extra_faults: list[str]) -> str:
        """``json.dumps(self.reply(t, named, extra_faults))``, character for character, written
        directly (the service's hot path): `keys` are ``json.dumps(key) + ': {"phase": '`` for
        each of `named`; a list of strings is written as json.dumps writes it (ASCII,
        `encode_basestring_ascii`)."""
        floats = (self.switch_in_s, self.yellow_s, self.all_red_s)
        if not all(np.isfinite(values).all() for values in floats):  # json.dumps spells these its own way
            return json.dumps(self.reply(t, named, extra_faults))
        phase, switch_in, yellow, all_red = (values.tolist() for values in (self.phase, *floats))
        source, faults = self.source, self.faults
        quoted = [", ".join(map(encode_basestring_ascii, messages)) for messages in faults]
        commands = ", ".join([
            f'{key}{phase[i]}, "switch_in_s": {switch_in[i]!r}, "yellow_s": {yellow[i]!r}, "all_red_s": '
            f'{all_red[i]!r}, "source": "{source[i]}", "faults": [{quoted[i]}]}}'
            for key, (_, i) in zip(keys, named)
        ])
        message_faults = json.dumps(self.global_faults + extra_faults)
        return f'{{"t": {json.dumps(t)}, "commands": {{{commands}}}, "faults": {message_faults}}}'


class FaultLog:
    """Logs each fault when it starts and when it clears (not at every decision), and counts
    how often each kind started."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids  # as the log names each intersection (`MessageKeys.display`)
        self.counts: dict[str, int] = {}  # fault kind -> times it started
        self._active: dict[tuple[int, str], str] = {}  # (intersection, fault kind) -> message

    def model_failed(self, message: str) -> None:
        LOG.error("fail-safe: %s; every intersection runs its fixed-time plan", message)
        self.counts["model"] = self.counts.get("model", 0) + 1

    def update(self, faults: list[list[str]], absent=None) -> None:
        """`absent` ``[I]`` bool: the unsignalised junctions the message left out (`Readings.absent`)."""
        active: dict[tuple[int, str], str] = {}
        for i in [i for i, messages in enumerate(faults) if messages]:
            for message in faults[i]:
                active[(i, message.partition(":")[0].partition(" ")[0])] = message
        warn, inform = LOG.isEnabledFor(logging.WARNING), LOG.isEnabledFor(logging.INFO)  # once, not per fault
        for key, message in active.items():
            if key not in self._active:
                if warn:
                    LOG.warning("fail-safe at %s: %s; fixed-time plan until inputs are good", self.ids[key[0]], message)
                self.counts[key[1]] = self.counts.get(key[1], 0) + 1
        if inform:
            for key in set(self._active) - set(active):
                held = sorted(kind for i, kind in active if i == key[0])  # another fault keeps it on the fallback
                # one left out runs its one phase by its fallback plan: not the policy
                now = f"still on the fixed-time plan: {', '.join(held)}" if held else \
                    "left out of the message: needs no readings" if absent is not None and absent[key[0]] else \
                    "back on the policy"
                LOG.info("%s %s (%s cleared)", self.ids[key[0]], now, key[1])
        self._active = active


def check_deadline_ms(value, source: str = "<config>", field: str = "deadline_ms") -> float | None:
    """`value`: None (no deadline) or a finite number of milliseconds > 0 (NaN would turn the
    deadline off unasked, 0 or less would put every decision on the fallback)."""
    return positive_or_none(value, source, field, "milliseconds")


class PolicyRuntime:
    """Runs an exported policy for every intersection of one network (see the module doc);
    `deadline_ms`: `check_deadline_ms`'s."""

    def __init__(
        self,
        model_path: str | Path,
        metadata_path: str | Path | None = None,
        *,
        deadline_ms: float | None = 50.0,
        timing_tolerance_s: float = 1.0,
        threads: int = 1,
    ) -> None:
        deadline_ms = check_deadline_ms(deadline_ms)
        # NaN compared False: no time in phase was ever a mismatch (the cross-check off unasked);
        # a negative one made every decision a fault
        if isinstance(timing_tolerance_s, bool) or not isinstance(timing_tolerance_s, Real) \
                or not 0 <= timing_tolerance_s < math.inf:
            raise ConfigError("<config>", "timing_tolerance_s", timing_tolerance_s,
                              "must be a finite number of seconds >= 0")
        # a count below 1 went to onnxruntime as given (0: its own choice, every core), unasked
        if isinstance(threads, bool) or not isinstance(threads, Integral) or threads < 1:
            raise ConfigError("<config>", "threads", threads, "must be a whole number >= 1")
        self.model_path = Path(model_path)
        self.metadata_path = Path(metadata_path) if metadata_path else self.model_path.with_suffix(".json")
        if not self.model_path.exists() and not self.metadata_path.exists():
            # a mistyped --model: name the path the user gave, not the metadata derived from it (a
            # model missing beside its metadata is a model fault, run on the fixed-time fallback)
            raise ModelError(str(self.model_path), "model", str(self.model_path),
                             f"no such ONNX model file (nor its metadata {self.metadata_path.name})")
        wrong_file = not_a_model(self.model_path)
        if wrong_file:
            raise ModelError(str(self.model_path), "model", str(self.model_path), wrong_file)
        self.meta = load_metadata(self.metadata_path)
        self.timing = load_timing(self.meta, str(self.metadata_path))
        self.layout = build_layout(self.meta, str(self.metadata_path), self.timing)
        max_red = load_max_red(self.meta, self.timing, str(self.metadata_path))
        self.deadline_s = math.inf if deadline_ms is None else float(deadline_ms) / 1000.0
        self.max_lanes = int(self.meta["observation"]["max_lanes"])
        self.signals = SignalModel(self.layout, self.timing, timing_tolerance_s)
        # the keys a message may give each intersection (its id; a SUMO light's id), and which need no readings
        self.keys = MessageKeys(self.meta["intersections"])
        self.fault_log = FaultLog([self.keys.display(i) for i in range(len(self.layout.ids))])
        self.guard = None if max_red is None else MaxRedGuard(
            max_red, self.layout.actions, *demand_tables(self.meta["intersections"], self.layout.num_lanes,
                                                          self.max_lanes, str(self.metadata_path)), self.fault_log.ids)
        # the per-lane readings a message must carry: the model's inputs (lane totals, approach counts)
        self.lane_readings = policy_lane_readings(self.meta["model"].get("inputs"))
        self.whole_message = WholeMessage(self.layout, self.max_lanes, self.lane_readings, self.keys)
        self._every = [(inter_id, i) for i, inter_id in enumerate(self.layout.ids)]  # every intersection by its id
        self._reply_keys = [json.dumps(inter_id) + ': {"phase": ' for inter_id in self.layout.ids]
        self.last_t: float | None = None
        self.session, self.model_fault = load_session(self.model_path, self.meta["model"], threads,
                                                      str(self.metadata_path), reexport_hint(self.meta))
        if self.session is not None:  # its outputs match the metadata's names and shapes (check_signature)
            logits = {arg.name: arg.shape for arg in self.session.get_outputs()}["logits"]
            check_action_head(self.layout, logits[-1], str(self.metadata_path))
        check_features(self.meta["observation"], self.lane_readings, self.layout, str(self.metadata_path))
        if self.model_fault:
            self.fault_log.model_failed(self.model_fault)
        else:
            LOG.info("loaded %s (opset %s, %d intersections)", self.model_path, self.meta["model"]["opset"],
                     len(self.layout.ids))

    @property
    def fault_counts(self) -> dict[str, int]:
        """Fault kind -> times it started."""
        return self.fault_log.counts

    @property
    def override_counts(self) -> dict[str, int]:
        """Timing rule -> times it started overriding the policy at an intersection (the max-red guard's
        runs of decisions; empty without the guard)."""
        return {} if self.guard is None else {MAX_RED: self.guard.count}

    def decide(self, message: dict) -> dict:
        """One JSON message in, one JSON-able reply out (the service's schema: docs/deployment.md, "Protocol");
        ValueError for a message that is not one."""
        if not isinstance(message, dict):
            raise ValueError("a message must be a JSON object")
        t = message.get("t")
        parsed = numbers([t])
        if parsed is None or not math.isfinite(parsed[0]):
            raise ValueError(f"field 't' must be a number of seconds, got {str(t)[:40]!r}")
        intersections = message.get("intersections")
        if not isinstance(intersections, dict):
            raise ValueError("field 'intersections' must be an object {intersection id: readings}")
        resolved = self.keys.resolve(intersections)
        given = {self.layout.ids[row]: intersections[keys[0]] for row, keys in resolved.keyed.items() if len(keys) == 1}
        readings = parse_readings(self.layout, self.max_lanes, given, self.lane_readings, self.keys.optional)
        for row, keys in resolved.keyed.items():
            if len(keys) > 1:  # two sets of readings for one signal: neither is taken
                readings.faults[row], readings.absent[row] = [self.keys.twice_fault(row, keys)], False
        decision = self.decide_readings(float(t), readings)
        return decision.reply(t, self.keys.named(resolved), self.keys.message_faults(resolved))

    def decide_text(self, message) -> str | None:
        """`decide`'s reply as its JSON text, for a message that a fast JSON decoder gave and
        that is in the exact expected shape (`WholeMessage`); None, with nothing decided, for
        any other message: `decide` then takes it (from json.loads) and names what is wrong.
        Every reading is still checked (`validate_readings`): a reading out of range is its
        intersection's fault here just as there."""
        decoded = self.whole_message.decode(message)
        return None if decoded is None else self.decide_decoded(decoded)

    def decide_decoded(self, decoded: tuple) -> str:
        """`decide_text`'s reply for what `WholeMessage.decode` made of the message (here or in
        a decoding worker, agents/deploy/decoders.py)."""
        t, values, unknown, keyed = decoded
        if keyed is None:  # every intersection by its id
            readings, named, keys = self.whole_message.readings(values), self._every, self._reply_keys
        else:
            rows, given = keyed
            readings, named = self.whole_message.readings(values, rows), list(zip(given, rows))
            keys = [json.dumps(key) + ': {"phase": ' for key in given]
        decision = self.decide_readings(float(t), readings)
        extra = [f"unknown intersection ids ignored: {unknown}"] if unknown else []
        return decision.reply_text(t, named, keys, extra)

    def decide_arrays(self, t: float, lane_count, lane_halting, phase, time_in_phase, **lane_readings) -> Decision:
        """`decide` for readings already in arrays (metadata order, lanes zero-padded);
        `lane_readings`: the other per-lane readings the policy takes (``approach_moving``, ...)."""
        lanes = {"lane_count": lane_count, "lane_halting": lane_halting, **lane_readings}
        missing = [name for name in self.lane_readings if name not in lanes]
        if missing:
            raise ValueError(f"the policy needs the per-lane readings {missing} as well")
        lanes = {name: lanes[name] for name in self.lane_readings}
        readings = Readings.from_arrays(lanes, phase, time_in_phase)
        check_shapes(readings, len(self.layout.ids), self.max_lanes)
        return self.decide_readings(float(t), readings)

    def decide_readings(self, t: float, readings: Readings) -> Decision:
        """The decision for `readings` taken at `t` (seconds, finite; a `t` before the last one
        is a clock reset, `clock_reset`)."""
        if not math.isfinite(t):  # decide_arrays' callers too: a NaN t made every later t pass the check
            # below and every switch time NaN, so no phase ever changed again (max green broken, no fault)
            raise ValueError(f"field 't' must be a finite number of seconds, got {t!r}")
        faults, signal_ok = validate_readings(self.layout, self.max_lanes, readings)
        global_faults = [self.model_fault] if self.model_fault else []
        if self.last_t is not None and t < self.last_t:
            global_faults.append(self.clock_reset(t))
        self.last_t = t
        # an unsignalised junction left out (`Readings.absent`) runs its one phase, with no fault
        good = np.array([not f for f in faults]) & ~readings.absent
        self.signals.cross_check(t, readings, good, signal_ok, faults)
        action = self._policy_actions(good, readings, faults, global_faults)
        from_policy = action >= 0
        elapsed = self.signals.green_elapsed(t)
        asked = np.where(from_policy, self.layout.actions[np.arange(len(action)), np.maximum(action, 0)], -1)
        rule = self._guard_rule(t, readings, from_policy)
        target, switch_in, guarded = timing_commands(self.signals, elapsed, asked, from_policy,
                                                     self.signals.max_elapsed(t), rule)
        # a change commanded earlier and still to start is stated again, never replaced: the signal
        # still shows the phase before it, which another change's clearance need not cover
        held = self.signals.held(t)
        target, guarded = np.where(held, self.signals.cur_phase, target), np.where(held, -1, guarded)
        yellow, all_red = self.signals.clearance(target)
        pending, remaining, (pending_yellow, pending_red) = self.signals.pending_command(t, target)
        switch_in = np.where(pending, remaining, switch_in)
        yellow, all_red = np.where(pending, pending_yellow, yellow), np.where(pending, pending_red, all_red)
        if self.guard is not None:
            self.guard.record(t, guarded, target, switch_in, asked, self._red)
        self.signals.advance(t, target, switch_in)
        self.fault_log.update(faults, readings.absent)
        # Python bools: no numpy scalars
        source = [MAX_RED if g >= 0 else POLICY if p else FALLBACK for p, g in zip(from_policy.tolist(),
                                                                                  guarded.tolist())]
        return Decision(t, target, switch_in, yellow, all_red, action, source, faults, global_faults)

    def clock_reset(self, t: float) -> str:
        """A `t` before the last one: the cabinet's clock was reset (a reboot that starts it at 0,
        a clock set back, or a last `t` far ahead of it, 1e9 sent once). Not an error: every signal's
        timing starts again from `t`, only ever longer, but for max green, which counts on from the
        green already shown (`SignalModel.clock_reset`); the notice is logged and goes into the reply's
        message faults."""
        notice = (f"clock reset: t went back from {self.last_t!r} to {t!r}; each signal's phase taken as just "
                  "started (min green from now, a clearance in progress restarted in full, a change not yet "
                  "started restated after a full clearance and min green)")
        LOG.warning(notice)
        self.signals.clock_reset(t, self.last_t)
        if self.guard is not None:
            self.guard.clock_reset(t, self.last_t)
        return notice

    def _guard_rule(self, t: float, readings: Readings, from_policy: np.ndarray):
        """The max-red guard's rule for `timing_commands` at this decision (None without a guard)."""
        if self.guard is None:
            return None
        signals = self.signals
        self.guard.observe(t, signals.cur_phase, signals.known)
        self._red = self.guard.calls(t, readings.lane_halting, signals.cur_phase)
        current, active = signals.cur_phase.copy(), from_policy & signals.known
        return lambda target, switch_at: self.guard.due(self.timing, self._red, current, target, switch_at, active)

    def _policy_actions(self, good: np.ndarray, readings: Readings, faults: list[list[str]],
                        global_faults: list[str]) -> np.ndarray:
        """The policy's action [I] for the intersections whose readings are good, -1 elsewhere
        (everywhere if inference fails: that is a fault of every intersection it was run for)."""
        action = np.full(len(self.layout.ids), -1, dtype=np.int64)
        rows = np.flatnonzero(good)
        if self.session is None or not rows.size:
            return action
        chosen, problem = infer(self.session, rows, readings, self.layout.num_actions, self.deadline_s)
        if problem:
            global_faults.append(problem)
            for i in rows:
                faults[i].append(problem)
        else:
            action[rows] = chosen
        return action


__all__ = ["Decision", "FALLBACK", "POLICY", "PolicyRuntime", "check_deadline_ms"]
