"""How a message names the intersections it carries readings for (docs/deployment.md, "Protocol").

Every intersection is keyed by gridlight's id (the metadata's ``id``; for a SUMO scenario the
junction's id). For a policy trained on a SUMO scenario an intersection run by a SUMO light may
also be keyed by that light's id (its metadata's ``sumo.tls_id``), as a TraCI bridge or a city's
cabinets name it: in ``resco_ingolstadt7`` the light ``gneJ143`` runs the junction
``cluster_1041665625_...``. The reply answers each intersection under the key the message used.

A key that could mean two intersections (a light id equal to another junction's id, or one light
running several junctions) is refused whichever it was meant for: taken one way, readings meant
for one intersection would run another. An intersection keyed twice (by its id and by its light
id) has two sets of readings and neither is taken. An unsignalised junction (no SUMO light, one
phase, one action) has nothing to decide and the lights' decisions do not read it (every exported
actor decides each intersection from its own row): a message may leave it out, and it is then
neither a fault nor in the reply. A SUMO light with one phase and one action has nothing to decide
either but needs its readings: its cabinet is there to fall silent, and the bridge expects its command.
numpy only, like the rest of the runtime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

LOG = logging.getLogger("gridlight.runtime")


@dataclass
class Resolved:
    """What a message's keys name: per row (metadata index), the keys it was given under in the
    message's order; the unknown and the ambiguous keys."""

    keyed: dict[int, list[str]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    light_named: bool = False  # some intersection keyed by a light id that is not its own id


class MessageKeys:
    """The keys a message may use for each intersection of one exported network."""

    def __init__(self, intersections: list[dict]) -> None:
        self.ids = [entry["id"] for entry in intersections]
        sumo = [entry.get("sumo") if isinstance(entry.get("sumo"), dict) else None for entry in intersections]
        # a light's own key, where it differs from the junction's id (resco's '32564122' runs '32564122')
        self.lights = [s.get("tls_id") if s and isinstance(s.get("tls_id"), str) and s.get("tls_id") != i else None
                       for s, i in zip(sumo, self.ids)]
        # needs no readings: no light to run and one phase to show (CityFlow's metadata has no 'sumo')
        self.optional = np.array([s is not None and s.get("tls_id") is None and len(e["phases"]) == 1
                                  and len(e["actions"]) == 1 for s, e in zip(sumo, intersections)], dtype=bool)
        meanings: dict[str, list[int]] = {}
        for row, key in [(r, k) for r, k in enumerate(self.ids)] + [(r, k) for r, k in enumerate(self.lights) if k]:
            meanings.setdefault(key, []).append(row)
        self.index = {key: rows[0] for key, rows in meanings.items() if len(rows) == 1}
        self.ambiguous = {key: sorted(rows) for key, rows in meanings.items() if len(rows) > 1}
        # every intersection by its id, each needing readings (CityFlow, grids): the fast path's plain case; lights
        # named as their junctions beside unsignalised junctions (resco_cologne8) are not, or a message of the
        # lights alone would never take the fast path
        self.plain = not self.ambiguous and not any(self.lights) and not self.optional.any()
        self.required = np.flatnonzero(~self.optional)
        for row in self.required:  # both its keys ambiguous: nothing can carry its readings
            if not any(key in self.index for key in (self.ids[row], self.lights[row])):
                LOG.warning("intersection %r cannot be given readings: %s", self.ids[row],
                            self.ambiguous_fault(self.ids[row]))

    def display(self, row: int) -> str:
        """The intersection as logs name it: its id, and its SUMO light's where that differs."""
        light = self.lights[row]
        return f"{self.ids[row]} (SUMO light {light})" if light else self.ids[row]

    def resolve(self, keys) -> Resolved:
        """Each of a message's keys (its ``intersections`` object's) to the row it names."""
        resolved = Resolved()
        for key in keys:
            row = self.index.get(key)
            if row is not None:
                resolved.keyed.setdefault(row, []).append(key)
                resolved.light_named |= key != self.ids[row]
            elif key in self.ambiguous:
                resolved.ambiguous.append(key)
            else:
                resolved.unknown.append(key)
        return resolved

    def default_key(self, row: int, light_named: bool) -> str:
        """The key of an intersection the message left out: its light's where the message named
        some intersection by its light, else its id — whichever of the two names it alone (a reply
        under a key that also names another intersection would be read as that one's); its id where
        neither does (the load warned of it)."""
        light, own = self.lights[row], self.ids[row]
        for key in ((light, own) if light_named else (own, light)):
            if key and key in self.index:
                return key
        return own

    def named(self, resolved: Resolved) -> list[tuple[str, int]]:
        """The reply's ``(key, row)`` pairs in metadata order: each key the message gave an
        intersection, and for an intersection left out that needs readings its `default_key`
        (its ``readings missing`` fault goes under it); an unsignalised junction left out is not
        answered."""
        named = []
        for row in range(len(self.ids)):
            keys = resolved.keyed.get(row)
            if keys:
                named += [(key, row) for key in keys]
            elif not self.optional[row]:
                named.append((self.default_key(row, resolved.light_named), row))
        return named

    def twice_fault(self, row: int, keys: list[str]) -> str:
        shown = " and ".join(repr(key) + (" (SUMO light id)" if key != self.ids[row] else "") for key in keys)
        return f"readings given {'twice' if len(keys) == 2 else f'{len(keys)} times'}, keyed {shown}: " \
               "key an intersection once"

    def message_faults(self, resolved: Resolved) -> list[str]:
        """The reply's message faults for the keys that name no intersection."""
        faults = [f"unknown intersection ids ignored: {sorted(resolved.unknown)}"] if resolved.unknown else []
        return faults + [f"ambiguous intersection ids ignored: {self.ambiguous_fault(key)}"
                         for key in resolved.ambiguous]

    def ambiguous_fault(self, key: str) -> str:
        """What an ambiguous `key` could mean, and how each of those intersections is keyed instead."""
        rows = self.ambiguous[key]
        meanings = [f"the id of junction {self.ids[r]!r}" if self.ids[r] == key else
                    f"the SUMO light id of junction {self.ids[r]!r}" for r in rows]
        advice = []
        for row in rows:
            others = [k for k in (self.ids[row], self.lights[row]) if k and k != key and k in self.index]
            advice.append(f"key junction {self.ids[row]!r} by {others[0]!r}" if others else
                          f"junction {self.ids[row]!r} needs no readings" if self.optional[row] else
                          f"junction {self.ids[row]!r} has no other key")
        return f"{key!r} is {' and '.join(meanings)}; {'; '.join(advice)}"


__all__ = ["MessageKeys", "Resolved"]
