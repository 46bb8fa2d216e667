"""Argument checks shared by the grid and demand generators; each failure is a `ScenarioError`
naming the generated source, the argument and its value."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.errors import ScenarioError


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def require_positive_int(source: str, field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ScenarioError(source, field, value, "must be an integer >= 1")
    return int(value)


def require_positive(source: str, field: str, value: Any) -> float:
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise ScenarioError(source, field, value, "must be a finite number > 0")
    return float(value)


def require_non_negative(source: str, field: str, value: Any) -> float:
    if not is_number(value) or not math.isfinite(value) or value < 0:
        raise ScenarioError(source, field, value, "must be a finite number >= 0")
    return float(value)


def is_sequence(value: Any) -> bool:
    # A bare string is a Sequence too, but it would silently iterate letter by letter.
    return isinstance(value, Sequence) and not isinstance(value, str)
