"""Command-line overrides whose value the structured schema's type refuses, checked before Hydra
composes the config: ``perturbation.incidents.count=1.5`` or ``eval.steps=abc`` got Hydra's
multi-line "Error merging override ... could not be converted to Integer" with its reference
types; here they are one `ConfigError` naming the key, the value and the type the key takes.

The value is parsed as Hydra parses it (``1.5`` a float, ``'3'`` a string) and validated by
OmegaConf's own node of the schema's type, so what passes here passes composition. Keys the
schema does not type (``Any``, an unknown key, a group choice), interpolations, deletions and
sweeps other than a list of choices (``a=1,2``, ``choice(1,2)``: each choice is checked; ``glob()``,
``range()``, ``interval()`` are not) are left to Hydra. With ``--config-name X`` (``-cn X``,
``--config-name=X``) the primary config is X: its schema when one is registered (``X_schema``), else
no check (``--config-path`` / ``-cp``, another folder's X, is never checked): never a false refusal.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from omegaconf import OmegaConf, ValidationError
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode, StringNode

from envs.errors import ConfigError

NODES = {int: (IntegerNode, "an integer"), float: (FloatNode, "a number"), bool: (BooleanNode, "true or false"),
         str: (StringNode, "a string")}


CONFIG_NAME, CONFIG_PATH = ("--config-name", "-cn"), ("--config-path", "-cp")


def _registered(name: str) -> bool:
    """Whether ``<name>_schema`` is registered with Hydra's ConfigStore: train and evaluate here, export
    where export.py has imported agents.deploy.config (elsewhere ``-cn export`` is left to Hydra)."""
    import agents.ppo.config  # noqa: F401  (registers train_schema and evaluate_schema)

    try:
        ConfigStore.instance().load(f"{name}_schema.yaml")
    except Exception:  # noqa: BLE001  (no such schema: ConfigLoadError or the like)
        return False
    return True


def _named_primary(argv: list[str], primary: str) -> tuple[str | None, list[str]]:
    """(the primary config whose schema types `argv`'s overrides, None for no check; the overrides,
    without Hydra's own flags and the config name given after one)."""
    named, items, k = primary, [], 0
    while k < len(argv):
        flag, eq, value = argv[k].partition("=")
        if flag in CONFIG_NAME + CONFIG_PATH:
            if not eq:
                k += 1
                value = argv[k] if k < len(argv) else ""
            named = None if flag in CONFIG_PATH else value.removesuffix(".yaml") if named is not None else None
        elif not argv[k].startswith("-"):
            items.append(argv[k])
        k += 1
    return (named if named is not None and (named == primary or _registered(named)) else None), items


def _roots(primary: str):
    """The schema dataclass of ``configs/<primary>.yaml`` (as registered with Hydra's ConfigStore,
    ``<primary>_schema``: export.py registers its own) and its typed dict nodes by name."""
    import agents.ppo.config  # noqa: F401  (registers train_schema and evaluate_schema)
    from agents.classical import CONTROLLERS
    from agents.ppo.schema import schema_of

    root = OmegaConf.get_type(ConfigStore.instance().load(f"{primary}_schema.yaml").node)
    controllers = {name: schema_of(cls) for name, cls in CONTROLLERS.items()}
    return root, {"baseline_params": controllers, "controller_params": controllers}


def _optional(annotation) -> tuple[Any, bool]:
    """(the type inside ``Optional[...]``, whether None is allowed)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Any), True
    return annotation, False


def key_type(primary: str, key: str):
    """(type, optional) of dotted `key` in the schema, or None where the schema does not type it."""
    node, named = _roots(primary)
    parts, optional, k = key.split("."), False, 0
    while k < len(parts):
        part = parts[k]
        if k == 0 and part in named and len(parts) >= 3:  # controller_params.NAME.x: that controller's schema
            if parts[1] not in named[part]:
                return None
            node, k = named[part][parts[1]], 2
            continue
        if dataclasses.is_dataclass(node):
            if part not in {f.name for f in dataclasses.fields(node)}:
                return None
            node, optional = _optional(typing.get_type_hints(node)[part])
        elif typing.get_origin(node) is dict and len(typing.get_args(node)) == 2:  # env.reward.queue: its values'
            node, optional = _optional(typing.get_args(node)[1])
        else:
            return None
        k += 1
    return node, optional


def _check_value(key: str, value: Any, annotation, optional: bool) -> None:
    if isinstance(value, str) and "${" in value:  # an interpolation: resolved after composition
        return
    if typing.get_origin(annotation) in (list, typing.List) and isinstance(value, list):
        item, item_optional = _optional(typing.get_args(annotation)[0]) if typing.get_args(annotation) else (Any, True)
        for element in value:
            _check_value(key, element, item, item_optional)
        return
    if annotation not in NODES:
        return
    node, what = NODES[annotation]
    try:
        node(value=value, is_optional=optional)
    except ValidationError:
        raise ConfigError("<config>", key, value, f"must be {what}{', or null' if optional else ''}") from None


def check_typed_overrides(argv: list[str], primary: str) -> None:
    """ConfigError for the first override of `argv` whose value the schema's type for its key
    refuses (see the module doc); `primary` is the script's own config unless `argv` names another."""
    primary, items = _named_primary(argv, primary)
    if primary is None:  # another config, with no registered schema: Hydra checks it
        return
    try:
        overrides = OverridesParser.create().parse_overrides(items)
    except Exception:  # noqa: BLE001  (a grammar error: Hydra's own message names it)
        return
    for override in overrides:
        key = override.key_or_group
        if override.is_delete() or override.package is not None or "/" in key:
            continue
        typed = key_type(primary, key)
        if typed is None:
            continue
        if override.is_sweep_override():
            if not isinstance(override.value(), ChoiceSweep):  # glob(): a group's options, range(), interval()
                continue
            values = list(override.value().list)
        else:
            values = [override.value()]
        for value in values:
            _check_value(key, value, *typed)


__all__ = ["check_typed_overrides", "key_type"]
