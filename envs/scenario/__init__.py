"""Scenarios: CityFlow and SUMO datasets by short name, generated grids by preset name, and a
user's own CityFlow or SUMO files by path, through one entry point, ``load_scenario(name)``: parse
and validate, compile the `Network`, expand the flow file into the ``original`` trip table.
May import envs.errors only: everything else in gridlight builds on scenarios."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from envs.errors import ConfigError, is_whole
from envs.scenario.cityflow import FLOW_FILE, ROADNET_FILE, load_flow, load_roadnet, parse_flow, parse_roadnet
from envs.scenario.demand import Demand, Trips, stack_demand, trips_from_flows
from envs.scenario.network import Network, compile_network
from envs.scenario.own_files import FORMS, looks_like_path, own_scenario_files
from envs.scenario.presets import DEFAULT_PRESET, PRESETS
from envs.scenario.registry import data_dir as resolve_data_dir
from envs.scenario.registry import dataset_paths, known_datasets, known_sumo_datasets, sumo_folder
from envs.scenario.spec import FlowFileSpec, RoadnetSpec


@dataclass(frozen=True, eq=False)
class Scenario:
    name: str
    roadnet: RoadnetSpec
    flows: FlowFileSpec
    network: Network
    trips: Trips  # the scenario's own ("original") demand
    info: dict[str, Any] = field(default_factory=dict)

    def demand(self, copies: int | None = None, trips: list[Trips] | None = None) -> Demand:
        """A batched demand: `copies` copies of the original trips (default 1), or one copy per
        sample in `trips` (then `copies` is their number, and may only be left out)."""
        if trips is not None:
            if copies is not None:  # was ignored: B is len(trips)
                raise ConfigError(self.name, "copies", copies, "set by trips (one copy per sample): leave it out")
            listed = isinstance(trips, Sequence) and not isinstance(trips, (str, bytes))
            if not listed or not all(isinstance(sample, Trips) for sample in trips):
                shown = [type(x).__name__ for x in trips][:4] if listed else type(trips).__name__
                raise ConfigError(self.name, "trips", shown, "expected a list of Trips, one per copy "
                                  "(e.g. envs.scenario.splits.sample_trips)")
            return stack_demand(list(trips), self.network)
        copies = 1 if copies is None else copies
        if not is_whole(copies) or copies < 1:
            raise ConfigError(self.name, "copies", copies, "need an integer B >= 1")
        return stack_demand([self.trips] * int(copies), self.network)


def known_scenarios() -> list[str]:
    return sorted(PRESETS) + known_datasets() + known_sumo_datasets()


def given_by_path(name) -> bool:
    """Whether `load_scenario` reads `name` as a path to one's own files (`envs.scenario.own_files`):
    no registered name, and it looks like a path."""
    return name not in known_scenarios() and looks_like_path(name)


def reads_no_dataset(name) -> str | None:
    """Why a data directory means nothing to scenario `name` ("generated", "given by path"); None
    for a dataset or a SUMO scenario, which are looked up in one."""
    return "given by path" if given_by_path(name) else "generated" if name in PRESETS else None


def reads_seed(name) -> bool:
    """Whether scenario `name` draws its demand from a seed (``scenario.seed``): a generated preset does;
    a dataset, SUMO scenario or path has its own files."""
    return name in PRESETS


def unread_seed(name, seed) -> str | None:
    """Why a demand `seed` means nothing to scenario `name`: only a generated preset draws its demand
    from one; a dataset, SUMO scenario or path has its own files, loaded as for seed 0. None when
    the seed is 0 or the scenario a preset."""
    if reads_seed(name) or (seed == 0 and not isinstance(seed, bool)):
        return None
    return f"only a generated preset draws its demand from it; {name!r} has its own files"


def unread_seed_of_known(name, seed) -> str | None:
    """`unread_seed` for a known scenario or one given by path; None for any other name, whose
    "unknown scenario" error comes later (loading it), not a seed complaint first."""
    return unread_seed(name, seed) if name in known_scenarios() or given_by_path(name) else None


def load_scenario(
    name: str | os.PathLike = DEFAULT_PRESET,
    *,
    seed: int = 0,
    data_dir: str | Path | None = None,
    horizon: int | None = None,
    device: str | torch.device = "cpu",
) -> Scenario:
    """Load a generated preset (``grid_4x4``, ``grid_16x8``, ...), a CityFlow dataset
    (``hangzhou_4x4``), a SUMO scenario (``resco_cologne1``, ``manhattan_28x7``), or one's own
    files by path (`envs.scenario.own_files`: a CityFlow folder, a SUMO folder or .sumocfg; a str or a Path).
    ``seed`` is a generated preset's demand seed; any other scenario has its own files and refuses one."""
    name = os.fspath(name) if isinstance(name, os.PathLike) else name  # a Path was a TypeError
    if name in known_sumo_datasets():
        _check_unread_seed(name, seed)
        return scenario_from_sumo(sumo_folder(name, data_dir), name=name, horizon=horizon,
                                  device=device)
    if name in PRESETS:
        roadnet_obj, flow_obj, info = PRESETS[name](seed)
        return scenario_from_dicts(
            roadnet_obj, flow_obj, name=name, horizon=horizon, device=device, info=info
        )
    else:
        if name not in known_datasets():
            if looks_like_path(name):
                _check_unread_seed(name, seed)
                return scenario_from_path(name, horizon=horizon, device=device)
            raise ConfigError(
                "<scenario registry>", "scenario.name", name,
                "unknown scenario; known: " + ", ".join(known_scenarios()) + f"; or by path, {FORMS}",
            )
        _check_unread_seed(name, seed)
        roadnet_path, flow_path = dataset_paths(name, data_dir)
        roadnet = load_roadnet(roadnet_path)
        flows = load_flow(flow_path, roadnet)
        info = {"dataset": name, "data_dir": str(resolve_data_dir(data_dir))}
    network = compile_network(roadnet, device=device)
    trips = trips_from_flows(flows, network, horizon)
    return Scenario(name, roadnet, flows, network, trips, {**info, "horizon": horizon})


def _check_unread_seed(name: str, seed) -> None:
    reason = unread_seed(name, seed)
    if reason:
        raise ConfigError("<scenario registry>", "seed", seed,
                          f"{reason} (per-episode demand: DemandSpec, envs.scenario.splits)")


def scenario_from_dicts(
    roadnet_obj: dict, flow_obj: list, *, name: str = "custom", horizon: int | None = None,
    device: str | torch.device = "cpu", info: dict[str, Any] | None = None,
) -> Scenario:
    """Build a scenario from CityFlow-format dicts (e.g. the grid and demand generators')."""
    source = f"<generated:{name}>"
    roadnet = parse_roadnet(roadnet_obj, source)
    flows = parse_flow(flow_obj, source, roadnet)
    network = compile_network(roadnet, device=device)
    trips = trips_from_flows(flows, network, horizon)
    return Scenario(name, roadnet, flows, network, trips, {**(info or {}), "horizon": horizon})


def scenario_from_files(
    roadnet_path: str | Path, flow_path: str | Path, *, name: str | None = None,
    horizon: int | None = None, device: str | torch.device = "cpu",
) -> Scenario:
    roadnet = load_roadnet(roadnet_path)
    flows = load_flow(flow_path, roadnet)
    network = compile_network(roadnet, device=device)
    trips = trips_from_flows(flows, network, horizon)
    return Scenario(
        name or str(roadnet_path), roadnet, flows, network, trips,
        {"roadnet": str(roadnet_path), "horizon": horizon},
    )


def scenario_from_path(
    path: str | Path, *, horizon: int | None = None, device: str | torch.device = "cpu",
) -> Scenario:
    """One's own scenario by path (`envs.scenario.own_files.FORMS`), named by the path as given."""
    kind, found = own_scenario_files(str(path))
    if kind == "sumo":
        return scenario_from_sumo(found, name=str(path), horizon=horizon, device=device)
    return scenario_from_files(found / ROADNET_FILE, found / FLOW_FILE, name=str(path), horizon=horizon,
                               device=device)


def scenario_from_sumo(
    folder_or_config: str | Path, *, name: str | None = None, horizon: int | None = None,
    device: str | torch.device = "cpu",
) -> Scenario:
    """Import a SUMO scenario (folder with one .sumocfg, or the sumocfg) through the CityFlow
    parsers; ``info["sumo_report"]`` counts what the import approximated or left out."""
    from envs.scenario.sumo import import_sumo

    imported = import_sumo(folder_or_config)
    config = imported.config
    roadnet = parse_roadnet(imported.roadnet, str(config.net_file))
    flows = parse_flow(imported.flow, str(config.route_files[0]), roadnet)
    network = compile_network(roadnet, device=device)
    trips = trips_from_flows(flows, network, horizon)
    info = {"sumocfg": str(config.path), "sumo_begin_s": config.begin,
            "sumo_end_s": config.end, "sumo_report": imported.report.counts, "sumo_lights": imported.lights,
            "horizon": horizon}
    return Scenario(name or str(config.path), roadnet, flows, network, trips, info)


__all__ = [
    "DEFAULT_PRESET", "Demand", "Network", "Scenario", "Trips", "given_by_path", "known_scenarios", "reads_no_dataset",
    "reads_seed", "unread_seed", "unread_seed_of_known", "load_scenario", "scenario_from_dicts", "scenario_from_files",
    "scenario_from_path", "scenario_from_sumo",
]
