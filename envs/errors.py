"""Errors raised for bad scenario input.

Every error names the file (or the generated source), the field (a JSON path such as
``roads[3].lanes[1].maxSpeed``) and the offending value, so a user can fix the input without
reading the loader.
"""

from __future__ import annotations

from typing import Any


class ScenarioError(ValueError):
    """A scenario file, generated scenario or engine argument is invalid."""

    def __init__(self, file: str, field: str, value: Any, reason: str) -> None:
        self.file = str(file)
        self.field = field
        self.value = value
        self.reason = reason
        shown = repr(value)
        if len(shown) > 200:
            shown = shown[:197] + "..."
        super().__init__(f"{self.file}: field {field!r} = {shown}: {reason}")
