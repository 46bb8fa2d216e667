"""CityFlow's own ``config.json`` found beside a user's ``roadnet.json`` and ``flow.json``.

CityFlow's examples, and folders copied from tools built on it, keep the engine's config there. It is
not gridlight's config, but it says how the authors ran the files: a step other than 1 s or lane
changes would give other dynamics than gridlight's, and file names other than the two gridlight
reads mean the folder's ``roadnet.json``/``flow.json`` may not be the files the config meant. Those
are refused, naming config.json, the key and the value; keys that change nothing gridlight runs
(``seed``, ``dir``, ``rlTrafficLight``, ``saveReplay``, the log files) are not read. A ``config.json``
without CityFlow's ``roadnetFile`` or ``flowFile`` is another tool's and is not read either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envs.scenario.cityflow import FLOW_FILE, ROADNET_FILE, read_json
from envs.scenario.departures import STEP_SECONDS
from envs.scenario.json_fields import JsonFields

CONFIG_FILE = "config.json"
FILE_KEYS = {"roadnetFile": ROADNET_FILE, "flowFile": FLOW_FILE}


def cityflow_config(folder: Path) -> dict[str, Any] | None:
    """The folder's config.json when it is CityFlow's (an object naming roadnetFile or flowFile), else
    None; malformed JSON is a `ScenarioError` naming it (CityFlow would refuse it too)."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        return None
    document = read_json(path)
    if not isinstance(document, dict) or not document.keys() & FILE_KEYS.keys():
        return None
    return document


def named_files(config: dict[str, Any]) -> str:
    """What the config names, for a message: ``roadnetFile 'a.json' and flowFile 'b.json'``."""
    return " and ".join(f"{key} {config[key]!r}" for key in FILE_KEYS if key in config)


def check_cityflow_config(folder: Path) -> None:
    """Refuse a CityFlow config.json in `folder` that asks for what gridlight does not run."""
    config = cityflow_config(folder)
    if config is None:
        return
    fields = JsonFields(str(folder / CONFIG_FILE))
    for key, expected in FILE_KEYS.items():
        if key in config:
            # `dir` is relative to the directory CityFlow was started in, unknown here: the name is compared
            name = Path(fields.string(config, key, "")).name
            if name != expected:
                fields.fail(key, config[key], f"gridlight reads the folder's {expected}, not the file CityFlow's "
                                              f"config names: rename that file to {expected} (and set {key} to it)")
    if "interval" in config:
        interval = fields.number(config, "interval", "")
        if interval != STEP_SECONDS:
            fields.fail("interval", config["interval"],
                        f"gridlight's engine steps {STEP_SECONDS:g} s, so the flows' departures and the dynamics "
                        f"would differ from CityFlow's {interval:g} s steps: set interval to {STEP_SECONDS:g}")
    if "laneChange" in config and fields.boolean(config, "laneChange", ""):
        fields.fail("laneChange", True, "gridlight's engine has no lane changes (a vehicle keeps the lane it "
                                        "entered a road on): set laneChange to false")


__all__ = ["CONFIG_FILE", "check_cityflow_config", "cityflow_config", "named_files"]
