"""Typed access to the members of a parsed JSON document, for the CityFlow parsers: every
failure is a `ScenarioError` naming the file, the JSON path (``roads[12].lanes[1].maxSpeed``)
and the value."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from envs.errors import ScenarioError

MISSING = "<missing>"  # the "value" shown for a required field that is absent
# No metre, m/s, m/s^2 or second in a scenario comes near this (1e9 m is 25 times round the
# earth, 1e9 s 31 years); beyond it float32 sums and products lose all meaning or overflow.
MAX_MAGNITUDE = 1e9
BEYOND_MAX_MAGNITUDE = (f"beyond {MAX_MAGNITUDE:g} in magnitude (gridlight's limit for any length, "
                        "speed, acceleration or time in a scenario)")

Point = tuple[float, float]
POINT_KEYS = frozenset({"x", "y"})
# keys other tools write into CityFlow files, which CityFlow ignores: not misspellings of a key
# gridlight reads, though they resemble one (gt_virtual: virtual)
FOREIGN_KEYS = frozenset({"gt_virtual", "_compass_angle"})


def key_path(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class JsonFields:
    """Typed access to JSON members; every failure is a ScenarioError naming `source` and path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: Any, reason: str) -> NoReturn:
        raise ScenarioError(self.source, path, value, reason)

    def as_object(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, value, f"expected a JSON object, got {json_type(value)}")
        return value

    def as_array(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, value, f"expected a JSON array, got {json_type(value)}")
        return value

    def member(self, obj: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in obj:
            # a near miss ("intervall") is the author's spelling of `key`: report it by its own name
            near = near_miss(key, obj)
            if near is not None:
                self.fail(key_path(path, near), obj[near],
                          f"unknown field; did you mean {key!r}? (required field {key!r} is missing)")
            present = ", ".join(sorted(map(str, obj))) or "none"
            self.fail(key_path(path, key), MISSING, f"missing required field (present: {present})")
        return obj[key]

    def refuse_misspelled_keys(self, obj: Mapping[str, Any], known: frozenset[str], path: str) -> None:
        """Refuse a key that is a near miss of one in `known` (``endtime``, ``sigme``): CityFlow
        ignores keys it does not read, so a misspelled optional key would silently leave its
        default in force. Other keys are ignored, as CityFlow ignores them: converters write their
        own (LibSignal's ``gt_virtual``, CityFlow's ``_compass_angle``), and a key that resembles
        none gridlight reads cannot be one of them misspelled."""
        if not obj.keys() - known:  # the common case, checked at C speed
            return
        for key in obj:  # the first misspelling in the file
            if key in known or key in FOREIGN_KEYS:
                continue
            near = near_miss(str(key), known)
            if near is not None:
                also = f" ({near!r} is there too)" if near in obj else ""
                self.fail(key_path(path, str(key)), obj[key], f"unknown field; did you mean {near!r}?{also}")

    def object(self, obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        return self.as_object(self.member(obj, key, path), key_path(path, key))

    def array(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
        return self.as_array(self.member(obj, key, path), key_path(path, key))

    def string(self, obj: Mapping[str, Any], key: str, path: str) -> str:
        value = self.member(obj, key, path)
        if not isinstance(value, str):
            self.fail(key_path(path, key), value, f"expected a string, got {json_type(value)}")
        return value

    def identifier(self, obj: Mapping[str, Any], key: str, path: str) -> str:
        """A string naming something (an id): empty or blank would match nothing a user can name."""
        value = self.string(obj, key, path)
        if not value.strip():
            self.fail(key_path(path, key), value, "an id must be a non-empty string")
        return value

    def boolean(self, obj: Mapping[str, Any], key: str, path: str) -> bool:
        value = self.member(obj, key, path)
        if not isinstance(value, bool):
            self.fail(key_path(path, key), value, f"expected true/false, got {json_type(value)}")
        return value

    def as_number(self, value: Any, path: str) -> float:
        # bool is an int subclass in Python, but `true` is not a number in JSON.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(path, value, f"expected a number, got {json_type(value)}")
        # Python's json accepts NaN/Infinity literals; they would poison every later computation.
        if not math.isfinite(value):
            self.fail(path, value, "expected a finite number")
        if abs(value) > MAX_MAGNITUDE:
            self.fail(path, value, BEYOND_MAX_MAGNITUDE)
        return float(value)

    def number(self, obj: Mapping[str, Any], key: str, path: str) -> float:
        return self.as_number(self.member(obj, key, path), key_path(path, key))

    def positive(self, obj: Mapping[str, Any], key: str, path: str) -> float:
        value = self.number(obj, key, path)
        if value <= 0:
            self.fail(key_path(path, key), obj[key], "must be > 0")
        return value

    def non_negative(self, obj: Mapping[str, Any], key: str, path: str) -> float:
        value = self.number(obj, key, path)
        if value < 0:
            self.fail(key_path(path, key), obj[key], "must be >= 0")
        return value

    def as_index(self, value: Any, path: str, size: int, what: str) -> int:
        if isinstance(value, float) and value.is_integer():  # 1.0, as numpy-based exporters write 1
            self.fail(path, value, "expected an integer index: write it without a decimal point")
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, value, f"expected an integer index, got {json_type(value)}")
        if not 0 <= value < size:
            self.fail(path, value, f"index out of range: {what} has {size} (valid 0..{size - 1})")
        return value

    def index(self, obj: Mapping[str, Any], key: str, path: str, size: int, what: str) -> int:
        return self.as_index(self.member(obj, key, path), key_path(path, key), size, what)

    def point(self, value: Any, path: str) -> Point:
        obj = self.as_object(value, path)
        self.refuse_misspelled_keys(obj, POINT_KEYS, path)
        return (self.number(obj, "x", path), self.number(obj, "y", path))


def near_miss(word: str, candidates: Iterable[Any]) -> str | None:
    """The candidate `word` is most likely a misspelling of (or of which it is one), if any."""
    near = difflib.get_close_matches(word, [c for c in candidates if isinstance(c, str)], n=1, cutoff=0.8)
    return near[0] if near else None


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
