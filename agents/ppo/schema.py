"""Structured-config schemas made from the classes that hold the defaults.

A classical controller (agents/classical/) or a perturbation spec (envs/incidents/) is a
dataclass whose field defaults are its parameters' defaults. `schema_of` turns such a class
into a dataclass Hydra's ConfigStore accepts: the same field names, defaults and order, with
types OmegaConf can check (``X | None`` -> ``Optional[X]``, ``tuple[T, ...]`` -> ``List[T]``,
``object`` -> ``Any``, a nested spec -> its own schema). A config group built from them needs
no YAML repeating the defaults, and an override of the wrong type fails at composition.

Fields that are not parameters are left out: those the constructor does not take
(``init=False``) and runtime attachments marked ``compare=False`` (a controller's
``detectors``, set by the evaluation, never by a config).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, List, Optional

_SCHEMAS: dict[type, type] = {}
_PLAIN = (str, int, float, bool)


def _config_type(annotation):
    """`annotation` as a type OmegaConf can check."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _config_type(rest[0]) if len(rest) == 1 else Any
        return Optional[inner] if type(None) in args else inner
    if origin in (tuple, list):
        item = args[0] if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else Any
        return List[_config_type(item)]
    if dataclasses.is_dataclass(annotation):
        return schema_of(annotation)
    return annotation if annotation in _PLAIN or annotation is Any else Any


def _default(f: dataclasses.Field):
    """The field's default in the form `dataclasses.field` takes (lists need a factory)."""
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory)
    value = f.default
    if isinstance(value, (tuple, list)):
        return dataclasses.field(default_factory=lambda value=value: list(value))
    return dataclasses.field(default=value)


def parameters(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass `cls` that a config sets (see the module doc)."""
    return [f for f in dataclasses.fields(cls) if f.init and f.compare]


def schema_of(cls: type) -> type:
    """The structured-config schema of dataclass `cls` (built once, then cached)."""
    if cls not in _SCHEMAS:
        hints = typing.get_type_hints(cls)
        specs = [(f.name, _config_type(hints[f.name]), _default(f)) for f in parameters(cls)]
        _SCHEMAS[cls] = dataclasses.make_dataclass(f"{cls.__name__}Config", specs)
    return _SCHEMAS[cls]


__all__ = ["parameters", "schema_of"]
