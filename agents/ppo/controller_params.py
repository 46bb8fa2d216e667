"""A ``controller_params`` / ``baseline_params`` config node, checked before any work: each
entry a controller of ``CONTROLLERS``, each key one of its parameters, and no value changed for a
controller the run does not build (it would be ignored: ``sotl_tuned`` reads its preset, not
``controller_params.sotl``). A misspelled key (``min_gren_s``, added with ``+``) reached the
constructor as a TypeError traceback; the others passed silently, bad values included. A built
controller's values get its class's own checks here, named by the config key."""

from __future__ import annotations

import dataclasses

from agents.classical import CONTROLLERS
from agents.ppo.schema import parameters
from envs.errors import ConfigError, config_path


def _default(field: dataclasses.Field):
    value = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return list(value) if isinstance(value, tuple) else value  # as a config holds it


def with_newer_defaults(name: str, saved):
    """`saved` (a checkpoint's record of controller `name`'s parameters) with each parameter it lacks,
    one added to the controller after it was written, at its default: a new parameter's default is
    the behaviour it had before, so the checkpoint's evaluations ran it (max_pressure's ``sensing``,
    ``lane``); anything but a mapping of a known controller is returned as it is."""
    if name not in CONTROLLERS or not isinstance(saved, dict):
        return saved
    return {**{f.name: _default(f) for f in parameters(CONTROLLERS[name])}, **saved}


def check_param_names(params: dict, path: str, built: list[str]) -> None:
    """ConfigError from ``<config>`` naming ``path.NAME`` or ``path.NAME.KEY`` for the first entry
    that names no controller or a parameter its controller does not have, or that changes a
    parameter of a controller not in `built` (the names the run builds from these params)."""
    for name, entry in params.items():
        if name not in CONTROLLERS:
            raise ConfigError("<config>", f"{path}.{name}", entry, f"not a controller; known: {sorted(CONTROLLERS)}")
        fields = {f.name: f for f in parameters(CONTROLLERS[name])}
        if entry is None and name not in built:  # nothing set for a controller the run does not build
            continue
        if not isinstance(entry, dict):  # 5, or null for one it builds: a traceback where it is built
            raise ConfigError("<config>", f"{path}.{name}", entry,
                              f"expected a mapping of its parameters ({path}.{name}.FIELD=...); {list(fields)}")
        for key, value in entry.items():
            if key not in fields:
                raise ConfigError("<config>", f"{path}.{name}.{key}", value,
                                  f"not a parameter of {name}; its parameters: {list(fields)}")
            if name not in built and value != _default(fields[key]):
                raise ConfigError("<config>", f"{path}.{name}.{key}", value,
                                  f"{name} is not run here (it builds {built}), so this would be ignored")
        if name in built:  # its values: the class's own checks, named by the key (they came after the scenario
            with config_path("<config>", f"{path}.{name}."):  # and demands had loaded, as <controller:NAME>)
                CONTROLLERS[name](**entry)
