"""SUMO scenarios (.sumocfg + .net.xml + .rou.xml) -> the CityFlow roadnet/flow dicts gridlight's
own parsers validate, with an `ImportReport` counting every approximation and left-out item.
Jobs: xml_fields, config, net_reader (net_unread counts what it does not read, junction_kinds sorts junction types),
additional, route_reader, unread, programs, to_roadnet, to_flow."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from envs.scenario.sumo.additional import read_additional
from envs.scenario.sumo.config import SumoConfig, find_config, read_config
from envs.scenario.sumo.net_reader import read_net
from envs.scenario.sumo.route_reader import read_routes
from envs.scenario.sumo.to_flow import flow_from_sumo, refuse_never_green, turned_around_at
from envs.scenario.sumo.to_roadnet import roadnet_from_sumo, turnaround_only_junctions

log = logging.getLogger(__name__)
# the import reports already logged at INFO: a run loads its scenario more than once (train.py for
# training and for evaluation, at two horizons) and each import gives the same report
_reported: set[str] = set()


@dataclass(frozen=True)
class ImportReport:
    """What a SUMO import represented approximately or left out, as counts by kind."""

    source: str  # the sumocfg
    counts: dict[str, int]

    def summary(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items()) if v)
        return f"{self.source}: {shown}"


@dataclass(frozen=True)
class SumoImport:
    config: SumoConfig
    roadnet: dict  # CityFlow roadnet.json content
    flow: list  # CityFlow flow.json content, one entry per vehicle, times shifted by begin
    report: ImportReport
    # junction id -> {"tls_id": its tlLogic (None: unsignalised), "program_phases": per roadnet
    # phase, the SUMO program phase indices it stands for} (`programs.junction_phases`)
    lights: dict


def import_sumo(folder_or_config: str | Path) -> SumoImport:
    """Read a SUMO scenario (a folder with one ``.sumocfg``, or the sumocfg itself)."""
    path = Path(folder_or_config)
    config = read_config(find_config(path) if path.is_dir() else path)
    counts: Counter = Counter(f"sumocfg_{option}_ignored" for option in config.ignored)
    net = read_net(config.net_file)
    for kind, number in net.skipped.items():
        counts[kind] += number
    merged = None
    for additional in config.additional_files:  # after the net, before the route files, as SUMO loads them
        merged = read_additional(additional, net, counts, (config.begin, config.end), merged)
    for route_file in config.route_files:  # one namespace of vTypes and routes, as in SUMO
        merged = read_routes(route_file, counts, (config.begin, config.end), merged)
    connected = {(c.from_edge, c.to_edge) for c in net.connections}
    roads = frozenset(net.edges)
    # the boundary's turnarounds are left out (virtual junctions) unless a vehicle needs one: route
    # without them; if some vehicles cannot go, route with all of them and keep the ones they turn at
    keep, trial, lights, made = frozenset(), Counter(), {}, []
    roadnet = roadnet_from_sumo(net, trial, keep, lights)
    flow = flow_from_sumo(merged, roadnet, config.begin, config.end, trial, connected, roads, made)
    if trial["trips_without_route_left_out"] or trial["routes_through_left_out_turns_left_out"]:
        boundary = turnaround_only_junctions(net)
        every = roadnet_from_sumo(net, Counter(), frozenset(boundary))
        keep = frozenset(turned_around_at(
            flow_from_sumo(merged, every, config.begin, config.end, Counter(), connected, roads), every, boundary))
        if keep:  # else the first roadnet and flow stand (no turnaround helps the vehicles left out)
            trial, lights, made = Counter(), {}, []
            roadnet = roadnet_from_sumo(net, trial, keep, lights)
            flow = flow_from_sumo(merged, roadnet, config.begin, config.end, trial, connected, roads, made)
    refuse_never_green(flow, made, roadnet, lights)
    counts.update(trial)
    counts["boundary_turnarounds_kept"] = len(keep)
    counts["begin_shift_s"] = int(config.begin)
    report = ImportReport(str(config.path), {k: int(v) for k, v in sorted(counts.items()) if v})
    summary = report.summary()
    log.log(logging.DEBUG if summary in _reported else logging.INFO, "SUMO import %s", summary)
    _reported.add(summary)
    return SumoImport(config, roadnet, flow, report, lights)


__all__ = ["ImportReport", "SumoImport", "import_sumo"]
