"""gridlight's errors: one base, a subclass per source, one line that says what to fix.

Every error names where the bad input came from (a file, a generated source such as
``<config>``), the field (a path such as ``roads[3].lanes[1].maxSpeed`` or ``env.copies``) and
the offending value: ``SOURCE: field 'PATH' = VALUE: reason``. The subclass says which kind of
input was wrong, so a caller can catch one kind; the entry points print the line and exit 2
(`exit_on_error`).
"""

from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Any, Iterator

EXIT_STATUS = 2  # what train.py, evaluate.py, export.py and the runtime service exit with
DEBUG_ENV = "HYDRA_FULL_ERROR"  # set to 1 for the traceback (Hydra's own switch)


class GridlightError(ValueError):
    """Bad input to gridlight; the message is ``SOURCE: field 'PATH' = VALUE: reason``."""

    def __init__(self, source: str, field: str, value: Any, reason: str) -> None:
        self.source = str(source)
        self.field = field
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 200:
            shown = shown[:197] + "..."
        super().__init__(f"{self.source}: field {field!r} = {shown}: {reason}")

    @property
    def file(self) -> str:
        """The source, under the name scenario errors have always used."""
        return self.source


class ScenarioError(GridlightError):
    """A scenario file (roadnet, flow, SUMO net) or a generated scenario is invalid."""


class ConfigError(GridlightError):
    """A configuration value (Hydra config, env or engine argument, controller parameter)."""


class CommandError(GridlightError):
    """A call the engine or an environment cannot take: a bad phase command, a wrong call order."""


class CheckpointError(GridlightError):
    """A training checkpoint is missing, unreadable or does not fit what it is asked to do."""


class ModelError(GridlightError):
    """An exported model or its metadata is missing, unreadable or inconsistent."""


def flag(value: Any, source: str, field: str) -> bool:
    """`value` if it is a bool, else a `ConfigError`: ``bool("false")`` is True, so a string or a
    number taken as a switch silently turned it on."""
    if not isinstance(value, bool):
        raise ConfigError(source, field, value, "expected true or false")
    return value


def is_whole(value: Any) -> bool:
    """An integer, Python's or numpy's (``np.int64`` read from an array is one), but not a bool:
    True is not 1 copy or 1 second."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def positive_or_none(value: Any, source: str, field: str, unit: str) -> Any:
    """`value` if it is None or a finite number > 0 (a duration, a deadline), else a `ConfigError`
    naming `source` and `field`. NaN passes ``x <= 0`` and would switch a rule off unasked, inf
    would never fire, True is not 1 `unit`."""
    number = isinstance(value, Real) and not isinstance(value, bool)
    if value is not None and not (number and math.isfinite(value) and value > 0):
        raise ConfigError(source, field, value, f"must be a finite number of {unit} > 0, or null for none")
    return value


@contextmanager
def config_path(source: str, prefix: str, own_prefix: str = "", only_from: str | None = None) -> Iterator[None]:
    """A `ConfigError` raised inside comes out again from `source`, its field under the path the
    user typed: a spec names its own fields (``incidents.capacity``, ``probes.p``), the caller
    knows where the spec sits in the config (``perturbation.``, ``env.probes.``). `own_prefix`
    is dropped from the field first (``probes.``, which the spec writes itself). `only_from`: only
    errors from that source are renamed (a demand spec's, among the others a run may raise)."""
    try:
        yield
    except ConfigError as error:
        if only_from is not None and error.source != only_from:
            raise
        field = error.field[len(own_prefix):] if error.field.startswith(own_prefix) else error.field
        raise ConfigError(source, prefix + field, error.value, error.reason) from None


@contextmanager
def exit_on_error(debug: bool = False) -> Iterator[None]:
    """Turn a GridlightError into its one line on stderr and exit status 2, no traceback.

    ``debug`` (a ``--debug`` flag) or ``HYDRA_FULL_ERROR=1`` lets the exception through."""
    try:
        yield
    except GridlightError as error:
        if debug or os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(EXIT_STATUS)


def recorded(meta: Any, source: str, dotted: str, needed_for: str) -> Any:
    """The value at `dotted` (``config.scenario.name``) in a checkpoint's meta; where the meta lacks
    it, a `CheckpointError` naming `source`, the key and what needs it. train.py records every key
    read this way: a meta without one was written by hand or by another program."""
    value = meta
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            raise CheckpointError(source, dotted, None, f"missing from the checkpoint's meta; {needed_for} "
                                  "(train.py's checkpoints record it)")
        value = value[key]
    return value
