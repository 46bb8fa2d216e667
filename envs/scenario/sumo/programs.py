"""SUMO traffic-light programs -> gridlight light phases, one junction at a time.

SUMO gives one signal character per lane-to-lane connection (``linkIndex``) and lists yellow
and all-red steps as phases of their own; gridlight gives one green set per phase to road-to-road
movements and inserts its own intergreen (``yellow_s`` + ``all_red_s``) at the start of every
commanded phase. The translation:

- a movement is green in a phase when any of its lane connections is ('G', 'g', and the
  yield-like 's', 'o', 'O'); lane connections of one movement showing different greens are
  counted (``mixed_lane_states``);
- 'g' (and 's', 'o') greens are *permissive*: they yield inside the box in SUMO; gridlight has no
  in-box conflicts, so they flow like other greens but may cross them (``PhaseSpec.permissive``);
  SUMO's 's' (a right turn on red, ``traffic_light_right_on_red``) also stops first: counted per green
  phase and movement (``right_on_red_signals_driven_as_yield``; see `junction_kinds`);
- a static program's ``<param>``s and unknown attributes are counted (``program_<name>_ignored``,
  ``phase_<name>_ignored``; `net_unread`); a program of another type is run static, counted as a whole;
- a SUMO phase in which any movement of the junction shows yellow ('y', 'Y', 'u') is a
  transition: its duration is added to the next green phase (cyclically), so that the cycle
  length and each green's start match SUMO's program (the green itself then starts after
  gridlight's intergreen); consecutive phases with the same greens are merged;
- movements of a signalised junction that no traffic light controls (turnarounds included) are
  permissive greens in every phase; a turnaround the light controls shows its signal's greens,
  always as permissive ones; a junction without any signal gets one all-permissive phase, and so
  does one whose light runs a program of ``type="off"`` (SUMO switches that light off and the
  junction runs by its priorities; counted as ``off_programs_unsignalised``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from envs.errors import ScenarioError
from envs.scenario.json_fields import BEYOND_MAX_MAGNITUDE, MAX_MAGNITUDE
from envs.scenario.sumo.net_reader import SumoProgram

GREEN, PERMISSIVE, YELLOW, RED = "G", "g", "y", "r"
_CHAR_CLASS = {"G": GREEN, "O": GREEN, "g": PERMISSIVE, "s": PERMISSIVE, "o": PERMISSIVE,
               "y": YELLOW, "Y": YELLOW, "u": YELLOW, "r": RED}
UNCONTROLLED_PHASE_S = 60.0  # the one phase of an unsignalised junction (any length serves)


@dataclass(frozen=True)
class LinkSignals:
    """The signal slots of one movement: ``(tl id, linkIndex)`` per lane connection, empty when
    no traffic light controls it; `turnaround` movements always yield."""

    slots: tuple[tuple[str, int], ...]
    turnaround: bool = False


def link_state(chars: list[str], counts: Counter) -> str:
    """One movement's state from its lane connections' characters."""
    classes = {_CHAR_CLASS[c] for c in chars}
    if len(classes) > 1:
        counts["mixed_lane_states"] += 1
    for state in (GREEN, PERMISSIVE, YELLOW):
        if state in classes:
            return state
    return RED


def junction_phases(
    junction: str, links: list[LinkSignals], programs: dict[str, SumoProgram], source: str,
    counts: Counter, lights: dict | None = None,
) -> list[dict]:
    """CityFlow light phases (``time``, ``availableRoadLinks``, ``permissiveRoadLinks``).
    `lights`, where given, gets ``lights[junction] = {"tls_id", "program_phases", "transition_s"}``:
    the tlLogic that runs the junction (None when none does) and, per phase returned, the SUMO
    program's phase indices it stands for (the transitions folded into it first, then its green or
    merged greens) and the seconds of those transitions in its ``time`` (its green is the rest): what
    a deployment needs to map a cabinet's light and phase readings to the metadata's, and to run the
    program's greens."""
    tls = sorted({tl for link in links for tl, _ in link.slots})
    always = [k for k, link in enumerate(links) if not link.slots or link.turnaround]
    lights = {} if lights is None else lights
    if not tls:
        counts["uncontrolled_junctions"] += 1
        lights[junction] = {"tls_id": None, "program_phases": [[]], "transition_s": [0.0]}
        return [{"time": UNCONTROLLED_PHASE_S, "availableRoadLinks": always,
                 "permissiveRoadLinks": always}]
    if len(tls) > 1:
        raise ScenarioError(source, f"junction[id={junction}]", tls,
                            "connections of one junction are controlled by several traffic "
                            "lights; gridlight runs one program per intersection")
    program = programs[tls[0]]
    if program.type == "off":  # SUMO switches the light off: the junction runs by its priorities, unsignalised
        counts["off_programs_unsignalised"] += 1
        lights[junction] = {"tls_id": None, "program_phases": [[]], "transition_s": [0.0]}  # off: no phase to read
        every = list(range(len(links)))
        return [{"time": UNCONTROLLED_PHASE_S, "availableRoadLinks": every, "permissiveRoadLinks": every}]
    counts["signalised_junctions"] += 1
    counts["unsignalised_links_at_signals"] += sum(1 for link in links if not link.slots)
    if program.type != "static":
        counts[f"{program.type}_programs_run_static"] += 1
    counts.update(program.unread)  # a static program's <param>s, ... (a program of another type is counted whole)
    if program.offset:
        counts["program_offsets_ignored"] += 1
    # a phase's `next` other than the following phase changes SUMO's cycle; the phases run in file order
    counts["phase_next_ignored"] += sum(phase.next not in ((), (str((k + 1) % len(program.phases)),))
                                        for k, phase in enumerate(program.phases))
    for k, char in ((k, c) for p in program.phases for k, c in enumerate(p.state)):
        if char not in _CHAR_CLASS:
            raise ScenarioError(source, f"tlLogic[id={program.id}].phase@state", char,
                                f"unknown signal state at linkIndex {k}")
    phases: list[dict] = []
    indices: list[list[int]] = []  # per phase, the SUMO phase indices it stands for
    transition_s: list[float] = []  # per phase, the seconds of transitions folded into it
    pending = 0.0  # transition time waiting for the next green phase
    pending_indices: list[int] = []
    # an all-red clearance (every signal red, for every road user) is part of the transition, as a
    # yellow is; a phase red for cars only (green for a bicycle or tram link the import left out)
    # stops the cars for its duration and stays a phase; a program of nothing but red stays as it is
    all_red = [all(_CHAR_CLASS[c] == RED for c in phase.state) for phase in program.phases]
    for index, (sumo_phase, red) in enumerate(zip(program.phases, all_red)):
        states = [
            link_state([sumo_phase.state[index] for _, index in link.slots], counts)
            if link.slots else PERMISSIVE for link in links
        ]
        if YELLOW in states or (red and not all(all_red)):
            counts["red_phases_folded" if red else "transition_phases_folded"] += 1
            pending += sumo_phase.duration
            pending_indices.append(index)
            continue
        green = [k for k, s in enumerate(states) if s in (GREEN, PERMISSIVE)]
        # SUMO's right turn on red ('s') stops before it may go; the engine's permissive green does not stop
        counts["right_on_red_signals_driven_as_yield"] += sum(
            1 for link, s in zip(links, states)
            if s == PERMISSIVE and any(sumo_phase.state[index] == "s" for _, index in link.slots))
        permissive = sorted({k for k, s in enumerate(states) if s == PERMISSIVE}
                            | (set(always) & set(green)))
        if phases and pending == 0 and phases[-1]["availableRoadLinks"] == green \
                and phases[-1]["permissiveRoadLinks"] == permissive:
            counts["equal_phases_merged"] += 1
            phases[-1]["time"] += sumo_phase.duration
            indices[-1].append(index)
            continue
        phases.append({"time": sumo_phase.duration + pending, "availableRoadLinks": green,
                       "permissiveRoadLinks": permissive})
        indices.append(pending_indices + [index])
        transition_s.append(pending)
        pending, pending_indices = 0.0, []
    if not phases:
        raise ScenarioError(source, f"tlLogic[id={program.id}]", len(program.phases),
                            f"junction {junction!r} shows yellow in every phase of the program")
    phases[0]["time"] += pending  # the cycle's last transition leads into its first green
    indices[0][:0] = pending_indices
    transition_s[0] += pending
    _check_runnable(program, junction, links, phases, indices, source)
    lights[junction] = {"tls_id": program.id, "program_phases": indices, "transition_s": transition_s}
    counts["permissive_greens"] += sum(len(p["permissiveRoadLinks"]) for p in phases)
    return phases


def _check_runnable(program: SumoProgram, junction: str, links: list[LinkSignals], phases: list[dict],
                    indices: list[list[int]], source: str) -> None:
    """What the roadnet checks would refuse in the phases built, refused here under the program's own
    fields: the roadnet's path (``intersections[1].trafficLight.lightphases``) is in no file a user has."""
    if not any(phase["availableRoadLinks"] for phase in phases):
        controlled = sorted(index for link in links for _, index in link.slots)
        raise ScenarioError(source, f"tlLogic[id={program.id}].phase@state", tuple(p.state for p in program.phases),
                            f"no phase greens a movement passenger cars may use at junction {junction!r} "
                            f"(linkIndex {controlled}): no car could ever cross it")
    for phase, stands_for in zip(phases, indices):
        if phase["time"] > MAX_MAGNITUDE:  # each SUMO phase is within the limit; merged and folded ones may not be
            raise ScenarioError(source, f"tlLogic[id={program.id}].phase@duration",
                                tuple(program.phases[k].duration for k in stands_for),
                                f"phases {stands_for} run as one phase of junction {junction!r} "
                                f"({phase['time']:g} s), {BEYOND_MAX_MAGNITUDE}")
