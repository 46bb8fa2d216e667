"""Range checks of config values (agents/ppo/config.py's `check_config` and
`check_evaluate_config`): each failure is a `ConfigError` from ``<config>`` naming the field's
full path (``agent.clip_range``) and the value.

Written as ``not value >= low`` and `math.isfinite`, never ``value < low``: NaN compares false
with everything and inf passes every lower bound, so either would slip through."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import fields
from typing import Any, NoReturn

from omegaconf import OmegaConf

from envs.errors import ConfigError

SOURCE = "<config>"


def fail(field_path: str, value: Any, reason: str) -> NoReturn:
    raise ConfigError(SOURCE, field_path, value, reason)


def plain(value) -> Any:
    """A config node as plain Python (resolved), for messages and comparisons; other values as they are."""
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def config_value(cfg, path: str) -> Any:
    """``cfg`` at the dotted `path` (``agent.learning_rate``)."""
    node = cfg
    for part in path.split("."):
        node = node[part]
    return node


def at_least(cfg, path: str, low: float) -> None:
    value = config_value(cfg, path)
    if not value >= low:
        fail(path, value, f"must be >= {low:g}")
    finite(path, value)


def positive(cfg, path: str, or_null: bool = False) -> None:
    value = config_value(cfg, path)
    if value is None and or_null:
        return
    if not value > 0:
        fail(path, value, "must be > 0 or null" if or_null else "must be > 0")
    finite(path, value)


def finite(path: str, value: Any) -> None:
    # no coefficient, rate, count or duration means anything at infinity
    if not math.isfinite(value):
        fail(path, value, "must be a finite number")


def in_range(cfg, path: str, low: float, high: float, low_open: bool = False) -> None:
    value = config_value(cfg, path)
    if not (low < value <= high if low_open else low <= value <= high):
        fail(path, value, f"must be in {'(' if low_open else '['}{low:g}, {high:g}]")


def check_keys(node, schema, prefix: str = "") -> None:
    """Keys the schema does not know. Composition already rejects them, except those added on
    purpose with ``+agent.foo=...``: a typo there would otherwise be silently ignored."""
    known = {f.name for f in fields(schema) if not f.metadata.get("omegaconf_ignore")}
    types = typing.get_type_hints(schema)
    for key in node:
        path = f"{prefix}{key}"
        if key not in known:
            fail(path, node[key], f"unknown key; known: {sorted(known)}")
        if dataclasses.is_dataclass(types[key]) and node[key] is not None:
            check_keys(node[key], types[key], f"{path}.")
