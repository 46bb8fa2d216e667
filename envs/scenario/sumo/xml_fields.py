"""Typed access to the attributes of SUMO XML elements: every failure is a `ScenarioError`
naming the file, the element (``edge[id=A0B0].lane[index=2]``) and the attribute."""

from __future__ import annotations

import gzip
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NoReturn

from envs.errors import ScenarioError
from envs.scenario.json_fields import BEYOND_MAX_MAGNITUDE, MAX_MAGNITUDE, MISSING

GZIP_MAGIC = b"\x1f\x8b"  # the first two bytes of a gzip file


def read_xml(path: str | Path, root_tag: str | tuple[str, ...]) -> ET.Element:
    """The root element of a SUMO XML file, checked to be `root_tag` (or one of them); gzip-compressed
    or not (``.net.xml.gz``), as SUMO reads every input file. Element tags lose any XML namespace
    (``<net xmlns="http://sumo.dlr.de/xsd/net_file.xsd">`` reads as ``<net>``)."""
    source = str(path)
    try:
        with open(source, "rb") as head:
            compressed = head.read(2) == GZIP_MAGIC
        with gzip.open(source) if compressed else open(source, "rb") as handle:
            root = ET.parse(handle).getroot()
    except FileNotFoundError:
        raise ScenarioError(source, "<file>", source, "file not found") from None
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a cut-off .gz an EOFError
        raise ScenarioError(source, "<file>", source, f"cannot read: {getattr(err, 'strerror', None) or err}") from None
    except ET.ParseError as err:
        line, column = err.position
        raise ScenarioError(source, "<xml>", f"line {line}, column {column}",
                            f"malformed XML: {err}") from None
    for element in root.iter():  # a namespace (<net xmlns="...">) names every tag "{uri}net": drop it, as SUMO does
        if isinstance(element.tag, str) and element.tag.startswith("{"):
            element.tag = element.tag.split("}", 1)[1]
    tags = (root_tag,) if isinstance(root_tag, str) else root_tag
    if root.tag not in tags:
        raise ScenarioError(source, "<root>", root.tag, f"expected a {' or '.join(f'<{t}>' for t in tags)} document")
    return root


def element_path(element: ET.Element, parent: str = "") -> str:
    """``tag[id=...]`` (or index=, or the bare tag) under `parent`, for error messages."""
    for key in ("id", "index"):
        if key in element.attrib:
            name = f"{element.tag}[{key}={element.get(key)}]"
            break
    else:
        name = element.tag
    return f"{parent}.{name}" if parent else name


class XmlFields:
    """Typed attribute access; failures name `source`, the element path and the attribute."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, attribute: str | None, value, reason: str) -> NoReturn:
        field = f"{where}@{attribute}" if attribute else where
        raise ScenarioError(self.source, field, value, reason)

    def string(self, element: ET.Element, attribute: str, where: str) -> str:
        value = element.get(attribute)
        if value is None or value == "":
            self.fail(where, attribute, MISSING, "missing required attribute")
        return value

    def new_id(self, element: ET.Element, where: str, seen: set[str]) -> str:
        """The element's id, added to `seen`; refused when an earlier element of its kind has it
        (SUMO refuses that too; keeping either definition would silently change what uses the other)."""
        ident = self.string(element, "id", where)
        if ident in seen:
            self.fail(where, "id", ident, f"another <{element.tag}> has this id")
        seen.add(ident)
        return ident

    def number(self, element: ET.Element, attribute: str, where: str,
               default: float | None = None) -> float:
        raw = element.get(attribute)
        if raw is None:
            if default is None:
                self.fail(where, attribute, MISSING, "missing required attribute")
            return default
        try:
            value = float(raw)
        except ValueError:
            self.fail(where, attribute, raw, "expected a number")
        return self.within_limits(value, where, attribute, raw)

    def time(self, element: ET.Element, attribute: str, where: str, default: float | None = None) -> float:
        """A time in seconds, written as seconds or, as SUMO also reads every time, as
        ``[days:]hours:minutes:seconds`` (``1:00:00`` is 3600; each part a number >= 0)."""
        raw = element.get(attribute)
        if raw is None or ":" not in raw:
            return self.number(element, attribute, where, default)
        parts = raw.split(":")
        try:
            values = [float(part) for part in parts]
        except ValueError:
            values = []
        if len(parts) not in (3, 4) or len(values) != len(parts) or not all(v >= 0 for v in values):
            self.fail(where, attribute, raw, "expected seconds or [days:]hours:minutes:seconds, each a number >= 0")
        seconds = sum(value * unit for value, unit in zip(reversed(values), (1, 60, 3600, 86400)))
        return self.within_limits(seconds, where, attribute, raw)

    def within_limits(self, value: float, where: str, attribute: str, written: str) -> float:
        """`value` (read from the text `written`) unless nan, inf or beyond `MAX_MAGNITUDE`:
        checked here, where the attribute is read, so that the error names it as written
        rather than the roadnet or flow field it would later become."""
        if not math.isfinite(value):
            self.fail(where, attribute, written, "expected a finite number")
        if abs(value) > MAX_MAGNITUDE:
            self.fail(where, attribute, written, BEYOND_MAX_MAGNITUDE)
        return value

    def positive(self, element: ET.Element, attribute: str, where: str,
                 default: float | None = None) -> float:
        value = self.number(element, attribute, where, default)
        if not value > 0:
            self.fail(where, attribute, element.get(attribute), "must be > 0")
        return value

    def non_negative(self, element: ET.Element, attribute: str, where: str,
                     default: float | None = None) -> float:
        value = self.number(element, attribute, where, default)
        if not value >= 0:
            self.fail(where, attribute, element.get(attribute), "must be >= 0")
        return value

    def integer(self, element: ET.Element, attribute: str, where: str) -> int:
        raw = self.string(element, attribute, where)
        try:
            value = int(raw)
        except ValueError:
            self.fail(where, attribute, raw, "expected an integer")
        if value < 0:
            self.fail(where, attribute, raw, "must be >= 0")
        return value

    def shape(self, element: ET.Element, attribute: str, where: str
              ) -> tuple[tuple[float, float], ...]:
        raw = self.string(element, attribute, where)
        points = []
        for token in raw.split():
            parts = token.split(",")
            try:
                # a third coordinate (z, an elevation) is dropped, not counted: shapes only draw the roads (the
                # engine's network is flat), and a lane's length, which the import reads, is measured in 3D
                x, y = float(parts[0]), float(parts[1])
            except (ValueError, IndexError):
                self.fail(where, attribute, token, "expected 'x,y' points separated by spaces")
            points.append((self.within_limits(x, where, attribute, token),
                           self.within_limits(y, where, attribute, token)))
        if len(points) < 2:
            self.fail(where, attribute, raw, "a shape needs at least 2 points")
        return tuple(points)
