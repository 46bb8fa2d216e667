"""The house rules, checked: imports flow one way, every package says what it is for, no module
grows past 400 lines and no line past pyproject.toml's ``[tool.ruff] line-length``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400

# import order: a package may import itself and packages of a strictly lower rank
RANKS = {
    "envs.errors": 0,
    # the SUMO importer: a room of envs.scenario (it uses the CityFlow parsers) that
    # load_scenario opens, so it ranks just below its facade
    "envs.scenario.sumo": 0.5,
    "envs.scenario": 1,
    "envs.engine": 2,
    "envs.incidents": 3,
    "envs.evaluation": 4,
    "envs.rl": 5,
    "envs": 5.5,  # envs/__init__.py registers the Gymnasium id and opens the RL adapters
    "agents": 6,
    "agents.classical": 6,
    "agents.incidents": 6,
    "agents.ppo": 7,
    "agents.deploy": 8,
    "agents.lineup": 9,  # what evaluate.py runs: classical, trained and deployed controllers
}
PACKAGES = sorted((p for p in ROOT.glob("*/**/__init__.py") if p.parts[len(ROOT.parts)] in ("envs", "agents")))


def owner(module: str) -> str:
    """The most specific entry of RANKS that `module` belongs to."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in RANKS:
            return ".".join(parts[:n])
    raise KeyError(module)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(source: str) -> list[tuple[int, str]]:
    """(line, module) for every gridlight import in `source`, lazy ones inside functions too."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            # `from agents import classical` imports the subpackage
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names
                    if (ROOT / node.module.replace(".", "/") / a.name).is_dir()]
    return [(line, m) for line, m in out if m.split(".")[0] in ("envs", "agents")]


def back_edges(module: str, source: str) -> list[str]:
    """The imports of `module` that reach a package of the same or a higher rank."""
    me = owner(module)
    back = []
    for line, target in imported(source):
        them = owner(target)
        if them != me and not module.startswith(them + ".") and RANKS[them] >= RANKS[me]:
            back.append(f"{module}:{line} ({me}) imports {target} ({them})")
    return back


SOURCES = sorted(p for top in ("envs", "agents") for p in (ROOT / top).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path):
    back = back_edges(module_name(path), path.read_text())
    assert not back, "imports that run back up the layers:\n" + "\n".join(back)


def test_layer_check_catches_back_edges():
    engine = ("import torch\nfrom envs.scenario import load_scenario\n\n"
              "def f():\n    from envs.rl.features import observe\n")
    assert back_edges("envs.engine.step", engine) == [
        "envs.engine.step:5 (envs.engine) imports envs.rl.features (envs.rl)"]
    assert back_edges("agents.classical.sotl", "from agents.ppo.policy import PolicyController\n")
    assert back_edges("agents.incidents.rule", "from agents.classical.sotl import SOTL\n")  # same rank, other room
    assert not back_edges("agents.deploy.export", "from agents.ppo.policy import read_meta\nimport envs\n")


@pytest.mark.parametrize("init", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_package_says_what_it_is_for(init):
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc, f"{init.relative_to(ROOT)} has no docstring"
    lines = [line for line in doc.splitlines() if line.strip()]
    assert 2 <= len(lines) <= 4, f"{init.relative_to(ROOT)}: say it in 2-4 lines, not {len(lines)}"
    assert module_name(init) in RANKS, f"{module_name(init)} has no place in RANKS (its import rank)"


PYTHON_FILES = sorted(
    p for p in ROOT.rglob("*.py")
    if not any(part.startswith(".") or part in ("outputs", "multirun", "runs") for part in p.relative_to(ROOT).parts)
)


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PYTHON_FILES
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def line_length() -> int:
    """pyproject.toml's ``[tool.ruff] line-length``, the one limit ruff and this test share."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10 has no tomllib: read the one line of the section
        section = text.split("[tool.ruff]\n", 1)[1].split("\n[", 1)[0]
        return int(re.search(r"^line-length\s*=\s*(\d+)", section, re.MULTILINE).group(1))
    return tomllib.loads(text)["tool"]["ruff"]["line-length"]


def test_no_line_over_the_line_length():
    limit = line_length()
    long = [f"{p.relative_to(ROOT)}:{n} ({len(line)})" for p in PYTHON_FILES
            for n, line in enumerate(p.read_text().splitlines(), 1) if len(line) > limit]
    assert not long, f"lines over pyproject.toml's line-length ({limit} characters):\n" + "\n".join(long)
