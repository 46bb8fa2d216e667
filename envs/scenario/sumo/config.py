"""A SUMO scenario folder: its ``.sumocfg`` names the net file, the route files and the
simulated time window (``begin``/``end``, SUMO seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from envs.errors import ScenarioError
from envs.scenario.sumo.xml_fields import XmlFields, read_xml

DEFAULT_BEGIN_S = 0.0  # SUMO's default when the config leaves the begin out
# wherever they stand (SUMO ignores sections)
READ_OPTIONS = ("net-file", "route-files", "additional-files", "begin", "end")
# the root element: older configs (RESCO's) write <configuration>, SUMO 1.28's `sumo -C` and netedit
# <sumoConfiguration>
ROOT_TAGS = ("configuration", "sumoConfiguration")


@dataclass(frozen=True)
class SumoConfig:
    path: Path
    net_file: Path
    route_files: tuple[Path, ...]
    begin: float
    end: float
    # options the import does not follow (step-length, teleports, outputs, ...), for its report
    ignored: tuple[str, ...] = ()
    additional_files: tuple[Path, ...] = ()  # read before the route files, as SUMO loads them


def find_config(folder: str | Path) -> Path:
    configs = sorted(Path(folder).glob("*.sumocfg"))
    if len(configs) != 1:
        raise ScenarioError(str(folder), "<folder>", [c.name for c in configs],
                            "expected exactly one .sumocfg file")
    return configs[0]


def read_config(path: str | Path) -> SumoConfig:
    path = Path(path)
    fields = XmlFields(str(path))
    root = read_xml(path, ROOT_TAGS)

    # SUMO reads an option wherever it stands (its section names are for people): options by name,
    # each labelled "section.option" (or just the option, outside a section) for the messages
    options: dict[str, tuple[str, object]] = {}
    for section in root:
        for element in (list(section) if len(section) else [section]):
            label = element.tag if element is section else f"{section.tag}.{element.tag}"
            if element.tag in options:
                fields.fail(label, "value", element.get("value"), f"given twice (also as {options[element.tag][0]})")
            options[element.tag] = (label, element)

    def value(section: str, name: str) -> str | None:
        label, element = options.get(name, (f"{section}.{name}", None))
        return None if element is None else fields.string(element, "value", label)

    net = value("input", "net-file")
    if net is None:
        fields.fail("input.net-file", "value", None, "the config names no net file")
    routes = value("input", "route-files")
    if routes is None:
        fields.fail("input.route-files", "value", None, "the config names no route file")
    # SUMO splits the list at commas and cannot open an empty name; skipping it could hide a
    # missing file name, and "," (nothing but empty entries) left no route file at all
    if any(not entry.strip() for entry in routes.split(",")):
        fields.fail("input.route-files", "value", routes,
                    "an entry of the comma-separated list of route files is empty")
    label, element = options.get("additional-files", ("input.additional-files", None))
    additional = "" if element is None else element.get("value", "")  # SUMO reads an empty value as no file
    if additional.strip() and any(not entry.strip() for entry in additional.split(",")):
        fields.fail(label, "value", additional, "an entry of the comma-separated list of additional files is empty")
    times = {}
    for name in ("begin", "end"):
        label, element = options.get(name, (f"time.{name}", None))
        if element is not None:
            times[name] = fields.time(element, "value", label)
        elif name == "begin":
            times[name] = DEFAULT_BEGIN_S
        else:  # an assumed end would cut the demand at a time the scenario never gave
            fields.fail("time.end", "value", None,
                        "the config gives no end (SUMO then runs until every vehicle has left); "
                        "gridlight simulates a bounded window: add <time><end value=\"...\"/></time>")
    if times["end"] <= times["begin"]:
        fields.fail("time.end", "value", times["end"], f"must be > begin ({times['begin']:g})")
    ignored = tuple(label for name, (label, _) in options.items() if name not in READ_OPTIONS)
    return SumoConfig(path, path.parent / net,
                      tuple(path.parent / name for name in routes.replace(",", " ").split()),
                      times["begin"], times["end"], ignored,
                      tuple(path.parent / name for name in additional.replace(",", " ").split()))
