"""Read, validate and write CityFlow-format scenarios (``roadnet.json`` + ``flow.json``).

The parsers turn the JSON dicts into the frozen dataclasses of `envs.scenario.spec`. Every problem
raises `ScenarioError(file, field, value, reason)` with a JSON path such as
``roads[12].lanes[1].maxSpeed`` (roadnet) or ``[17].route[2]`` (flow file, whose top level is a
list). Nothing is dropped, clamped or defaulted silently; the only defaults are CityFlow's own
(a flow without ``startTime`` starts at 0, one without ``endTime`` runs until the horizon).

`departure_steps` reproduces the vehicle generator of CityFlow (``Flow::nextStep``) so that the
number and timing of departures match what CityFlow would produce with a 1 s step.

The work is split by job: `json_fields` (typed JSON access), `roadnet_parser`
(`parse_roadnet`), `flow_parser` (`parse_flow`), `departures` (`departure_steps`); this module
reads and writes the files and re-exports the rest.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envs.errors import ConfigError, ScenarioError
from envs.scenario.departures import (
    STEP_SECONDS,
    count_departures,
    departure_steps,
)
from envs.scenario.flow_parser import NO_END_TIME, parse_flow
from envs.scenario.json_fields import MISSING, key_path
from envs.scenario.roadnet_parser import parse_roadnet
from envs.scenario.spec import FlowFileSpec, RoadnetSpec

ROADNET_FILE = "roadnet.json"
FLOW_FILE = "flow.json"
WRITE_SOURCE = "<write_cityflow>"  # the source a folder it cannot write in is named under


def read_json(path: str | Path) -> Any:
    """A JSON file's document; every problem reading it is a `ScenarioError` naming the file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "<file>", source, "file not found") from None
    except UnicodeDecodeError as err:
        raise ScenarioError(source, "<json>", err.start, f"not UTF-8 text: {err.reason}") from None
    except OSError as err:
        raise ScenarioError(source, "<file>", source, f"cannot read: {err.strerror}") from None
    repeats: list[_RepeatedKey] = []
    try:
        document = json.loads(text, object_pairs_hook=lambda pairs: _json_object(pairs, repeats))
    except json.JSONDecodeError as err:
        excerpt = text[max(0, err.pos - 30) : err.pos + 30]
        reason = (
            f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno} (char {err.pos})"
        )
        raise ScenarioError(source, "<json>", excerpt, reason) from None
    except RecursionError:  # nesting deeper than Python's stack; no CityFlow file nests past a few levels
        raise ScenarioError(source, "<json>", None, "malformed JSON: nested too deeply to read") from None
    except ValueError as err:  # an integer longer than Python's digit limit (4300 by default)
        raise ScenarioError(source, "<json>", _long_number(text), f"unreadable number: {err}") from None
    if repeats:
        path, obj = _first_repeat(document, "")
        raise ScenarioError(source, key_path(path, obj.key), obj.values,
                            "key given twice in one object: Python's JSON reader keeps the last value, "
                            "CityFlow's the first; keep one")
    return document


class _RepeatedKey(dict):
    """A JSON object that gives `key` more than once (`values`, in file order)."""

    key: str
    values: list[Any]


def _json_object(pairs: list[tuple[str, Any]], repeats: list[_RepeatedKey]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            break
        seen.add(key)
    repeated = _RepeatedKey(obj)
    repeated.key, repeated.values = key, [v for k, v in pairs if k == key]
    repeats.append(repeated)
    return repeated


def _first_repeat(value: Any, path: str) -> tuple[str, _RepeatedKey] | None:
    """The JSON path of the first object (in file order) that repeats a key, and that object."""
    if isinstance(value, _RepeatedKey):
        return path, value
    if isinstance(value, dict):
        children = ((key_path(path, key), child) for key, child in value.items())
    elif isinstance(value, list):
        children = ((f"{path}[{k}]", child) for k, child in enumerate(value))
    else:
        return None
    for child_path, child in children:
        found = _first_repeat(child, child_path)
        if found is not None:
            return found
    return None


def _long_number(text: str) -> str:
    """Where the first over-long run of digits starts, and its length (the digits themselves would
    fill the message)."""
    match = re.search(r"\d{%d,}" % (sys.get_int_max_str_digits() + 1), text)
    return "<none found>" if match is None else f"<{len(match.group())} digits at char {match.start()}>"


def load_roadnet(path: str | Path) -> RoadnetSpec:
    return parse_roadnet(read_json(path), str(path))


def load_flow(path: str | Path, roadnet: RoadnetSpec) -> FlowFileSpec:
    return parse_flow(read_json(path), str(path), roadnet)


def write_cityflow(
    directory: str | Path, roadnet_obj: Mapping[str, Any], flow_obj: Sequence[Any]
) -> tuple[Path, Path]:
    """Write ``roadnet.json`` and ``flow.json`` into `directory` (created if needed); a
    directory that cannot be made or written in (a file on its path, no write access) is a
    `ConfigError` naming it, before either file is written; so is a value JSON cannot hold (a numpy
    number, NaN, infinity: CityFlow's reader refuses the tokens Python would write for the last two)."""
    texts = [_json_text(roadnet_obj, "roadnet_obj"), _json_text(flow_obj, "flow_obj")]
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        problem = ("a file is in the way: not a folder" if isinstance(error, (FileExistsError, NotADirectoryError))
                   else error.strerror)
        raise ConfigError(WRITE_SOURCE, "directory", str(directory),
                          f"cannot write {ROADNET_FILE} and {FLOW_FILE} there: {problem}") from None
    roadnet_path = directory / ROADNET_FILE
    flow_path = directory / FLOW_FILE
    roadnet_path.write_text(texts[0], encoding="utf-8")
    flow_path.write_text(texts[1], encoding="utf-8")
    return roadnet_path, flow_path


def _json_text(obj: Any, name: str) -> str:
    """`obj` as JSON text; json.dump used to stop mid-file on such a value, leaving the file cut short."""
    try:
        return json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as error:
        where, value = _unwritable(obj, name) or (name, type(obj).__name__)
        raise ConfigError(WRITE_SOURCE, where, value, f"not writable as JSON: {error}") from None


def _unwritable(value: Any, path: str) -> tuple[str, Any] | None:
    """The path and value of the first value in `value` that JSON cannot hold, if any."""
    if value is None or isinstance(value, (str, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if isinstance(value, dict):
        for key, child in value.items():
            if not (key is None or isinstance(key, (str, int, float))):
                return f"{path}.{key!r}", key
            found = _unwritable(child, f"{path}.{key}")
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for k, child in enumerate(value):
            found = _unwritable(child, f"{path}[{k}]")
            if found is not None:
                return found
        return None
    return path, value


__all__ = [
    "FLOW_FILE", "MISSING", "NO_END_TIME", "ROADNET_FILE", "STEP_SECONDS", "count_departures",
    "departure_steps", "load_flow", "load_roadnet", "parse_flow", "parse_roadnet", "read_json", "write_cityflow",
]
