"""The names in a ``controller_params`` / ``baseline_params`` config node, checked before any
work: each entry a controller of ``CONTROLLERS``, each key one of its parameters. A misspelled
key (``min_gren_s``, added with ``+``) reached the constructor as a TypeError traceback, and an
entry for an unknown controller was never read."""

from __future__ import annotations

import dataclasses

from envs.errors import ConfigError


def parameter_names(cls: type) -> list[str]:
    """The fields of controller class `cls` a config sets (runtime attachments excluded)."""
    return [f.name for f in dataclasses.fields(cls) if f.init and f.compare]


def check_param_names(params: dict, path: str) -> None:
    """ConfigError from ``<config>`` naming ``path.NAME`` or ``path.NAME.KEY`` for the first entry
    that names no controller or a parameter its controller does not have."""
    from agents.classical import CONTROLLERS

    for name, entry in params.items():
        if name not in CONTROLLERS:
            raise ConfigError("<config>", f"{path}.{name}", entry, f"not a controller; known: {sorted(CONTROLLERS)}")
        known = parameter_names(CONTROLLERS[name])
        for key, value in (entry or {}).items():
            if key not in known:
                raise ConfigError("<config>", f"{path}.{name}.{key}", value,
                                  f"not a parameter of {name}; its parameters: {known}")
