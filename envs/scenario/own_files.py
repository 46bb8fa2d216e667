"""A scenario given by path instead of a registered name: the user's own network.

``scenario.name`` (and ``load_scenario``'s name) may be a folder holding CityFlow's
``roadnet.json`` and ``flow.json`` (what ``write_cityflow`` writes), a folder holding one SUMO
``.sumocfg``, or a ``.sumocfg`` file. Registered names come first; a name that is not registered
is read as a path when it looks like one (it holds a slash, ends in ``.sumocfg``, or exists). A CityFlow
folder's own ``config.json`` is checked (`envs.scenario.cityflow_config`).
"""

from __future__ import annotations

import os
from pathlib import Path

from envs.errors import ConfigError
from envs.scenario.cityflow import FLOW_FILE, ROADNET_FILE
from envs.scenario.cityflow_config import CONFIG_FILE, check_cityflow_config, cityflow_config, named_files

SOURCE = "<scenario path>"
FIELD = "scenario.name"
FORMS = (f"a folder with {ROADNET_FILE} and {FLOW_FILE} (CityFlow), a folder with one .sumocfg (SUMO), "
         "or a .sumocfg file")


def looks_like_path(name: str) -> bool:
    """Whether an unregistered scenario name is meant as a path (not a misspelt registered name); a
    name that is no string (5, None) is not, so it stays an unknown scenario rather than a TypeError."""
    if not isinstance(name, str):
        return False
    return "/" in name or os.sep in name or name.endswith(".sumocfg") or Path(name).expanduser().exists()


def own_scenario_files(name: str) -> tuple[str, Path]:
    """``("cityflow", folder)`` or ``("sumo", folder or .sumocfg)`` for a scenario given by path;
    a `ConfigError` naming ``scenario.name`` and the path when it is none of `FORMS`."""
    path = Path(name).expanduser()

    def refuse(reason: str) -> ConfigError:
        return ConfigError(SOURCE, FIELD, name, f"{reason}; a scenario given by path is {FORMS}")

    if not path.exists():
        where = "" if path.is_absolute() else f" (a relative path is read from {Path.cwd()})"
        raise refuse(f"no such file or folder{where}")
    if path.is_file():
        if path.suffix == ".sumocfg":
            return "sumo", path
        raise refuse("a file that is not a .sumocfg (give the folder that holds a CityFlow scenario's files)")
    present = [file for file in (ROADNET_FILE, FLOW_FILE) if (path / file).is_file()]
    sumocfgs = sorted(p.name for p in path.glob("*.sumocfg"))
    if present and sumocfgs:  # which one the user meant is not ours to guess
        raise refuse(f"the folder holds both CityFlow's {' and '.join(present)} and SUMO's {', '.join(sumocfgs)}: "
                     "name the .sumocfg to read SUMO's files, or keep one format in the folder")
    if len(present) == 2:
        check_cityflow_config(path)
        return "cityflow", path
    if present:
        missing = FLOW_FILE if present == [ROADNET_FILE] else ROADNET_FILE
        raise refuse(f"the folder has {present[0]} but no {missing}")
    if sumocfgs:
        return "sumo", path  # several are refused by the SUMO reader, naming them
    config = cityflow_config(path)
    names = "" if config is None else (f"; its {CONFIG_FILE} (CityFlow's) names {named_files(config)}: "
                                       f"gridlight reads {ROADNET_FILE} and {FLOW_FILE}, so copy or link the "
                                       "files under those names")
    raise refuse(f"the folder holds neither {ROADNET_FILE} and {FLOW_FILE} nor a .sumocfg{names}")


__all__ = ["FORMS", "looks_like_path", "own_scenario_files"]
