"""Every command README.md and docs/*.md give still parses with the code as it is (flags and
overrides drift as code changes): a ``python benchmarks/X.py`` command's flags through the
script's own argparse parser, a ``python train.py`` / ``evaluate.py`` / ``export.py`` command's
overrides through Hydra's composition and the project's config checks. Nothing runs: no
dataset, no simulation, no training. In a command ``a|b`` stands for each alternative, ``[...]``
for an optional part (checked without and with it), ``GROUP=NAME`` for each option of that
config group, ``-m`` for each run of the sweep; ``...`` (the rest of a command) and a Hydra
override holding a shell variable (``seed=$s``) are left out."""

from __future__ import annotations

import argparse
import importlib
import itertools
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

import agents.deploy.config  # noqa: F401  (registers "export_schema")
import agents.ppo.config
import evaluate

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPT = r"python3?\s+(?:benchmarks/\w+\.py|train\.py|evaluate\.py|export\.py)(?=\s|$)"
# in a fenced line, a command starts the line or follows env assignments, `&&`, `;`, `(` or `do`
FENCED = re.compile(r"(?:^|[;&(]\s*|\bdo\s+)(?:[A-Z_]+=\S*\s+)*(" + SCRIPT + r".*)")
FENCE = re.compile(r"^\s*```.*?^\s*```", re.S | re.M)
CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.S)  # `x` or ``x`` (which may hold a `)


def _variants(command: str) -> list[str]:
    """`command` with each ``[optional part]`` left out and kept, each ``a|b`` as each word."""
    optional = re.search(r" \[(--[^\]]+|[\w.]+=[^\]]*)\]", command)
    if optional:
        head, tail = command[:optional.start()], command[optional.end():]
        return _variants(head + tail) + _variants(f"{head} {optional.group(1)}{tail}")
    alternative = re.search(r"(?<![\w=|])\w+(?:\|\w+)+(?![\w|])", command)
    if alternative:
        head, tail = command[:alternative.start()], command[alternative.end():]
        return [v for word in alternative.group(0).split("|") for v in _variants(head + word + tail)]
    return [command]


def _argv(command: str) -> list[str]:
    """The words after ``python``, up to the shell's first `;`, `)`, `<`, `&&`; no comment."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(itertools.takewhile(lambda w: not (w and set(w) <= set(";()<>|&")), lexer))  # "" is a word
    return [w for w in words[1:] if w != "..."]


def documented_commands() -> list[tuple[str, list[str]]]:
    """(``file:line``, argv from the script on) of every such command, fenced or inline."""
    found = []
    for path in DOCS:
        text, name = path.read_text(), path.relative_to(ROOT)
        for block in FENCE.finditer(text):
            first, lines = text.count("\n", 0, block.start()) + 1, block.group(0).split("\n")
            k = 0
            while k < len(lines):
                start, line = k, lines[k]
                while line.endswith("\\") and k + 1 < len(lines):  # a `\` continuation
                    k += 1
                    line = line[:-1] + " " + lines[k].strip()
                match = FENCED.search(line.strip())
                found += [(f"{name}:{first + start}", c) for c in _variants(match.group(1))] if match else []
                k += 1
        prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
        for span in CODE_SPAN.finditer(prose):
            inline = " ".join(span.group(2).split())
            if re.match(SCRIPT, inline):
                found += [(f"{name}:{prose.count(chr(10), 0, span.start()) + 1}", c) for c in _variants(inline)]
    return [(where, _argv(command)) for where, command in found]


COMMANDS = documented_commands()
BENCHMARKS = [(w, argv) for w, argv in COMMANDS if argv[0].startswith("benchmarks/")]
HYDRA = [(w, argv) for w, argv in COMMANDS if not argv[0].startswith("benchmarks/")]


class Parsed(Exception):
    """Raised in place of running the script once its parser has accepted the command."""


def parse_benchmark(argv: list[str], monkeypatch) -> argparse.Namespace:
    """``benchmarks/X.py ARGS`` through the parser X's ``main()`` builds, stopped right after."""
    accept = argparse.ArgumentParser.parse_args

    def parse_and_stop(parser, args=None, namespace=None):
        raise Parsed(accept(parser, args, namespace))

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as `python benchmarks/X.py` has it
    module = importlib.import_module(Path(argv[0]).stem)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(Parsed) as parsed:
        module.main()
    return parsed.value.args[0]


def hydra_runs(script: str, overrides: list[str]) -> list[list[str]]:
    """The override lists `script`'s command runs: one, or one per point of a ``-m`` sweep."""
    overrides = [o for o in overrides if "$" not in o]
    sweep = "-m" in overrides
    overrides = [o for o in overrides if o not in ("-m", "--multirun")]
    choices = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        group = ROOT / "configs" / key
        if override.value() == "NAME" and group.is_dir():
            choices.append([f"{key}={p.stem}" for p in sorted(group.glob("*.yaml"))])
        elif sweep and override.is_sweep_override():
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(run) for run in itertools.product(*choices)]


def check_hydra(script: str, overrides: list[str]) -> None:
    """Compose as `script` does, then its value checks (those it runs before any work)."""
    name = Path(script).stem
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None if name == "export" else "1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    if name == "train":
        agents.ppo.config.check_config(cfg)
    elif name == "evaluate":
        agents.ppo.config.check_evaluate_config(cfg)
        for controller in cfg.controllers:
            evaluate.build_controller(controller, cfg)  # its parameters reach its class


@pytest.mark.parametrize("where,argv", BENCHMARKS, ids=[w for w, _ in BENCHMARKS])
def test_documented_benchmark_command_parses(where, argv, monkeypatch):
    parse_benchmark(argv, monkeypatch)


@pytest.mark.parametrize("where,argv", HYDRA, ids=[w for w, _ in HYDRA])
def test_documented_hydra_command_composes(where, argv, monkeypatch):
    # CUDA may be absent here: engine.device=cuda is a device check, not drift
    monkeypatch.setattr(agents.ppo.config, "check_device", lambda device, *_: torch.device(device))
    for overrides in hydra_runs(argv[0], argv[1:]):
        check_hydra(argv[0], overrides)


def test_the_docs_hold_commands_of_both_kinds():
    assert len(BENCHMARKS) > 20 and len(HYDRA) > 50


def test_a_made_up_flag_or_key_fails(monkeypatch):
    with pytest.raises(SystemExit):
        parse_benchmark(["benchmarks/sim_throughput.py", "--no-such-flag", "1"], monkeypatch)
    with pytest.raises(Exception, match="no_such_key"):
        check_hydra("train.py", ["train.no_such_key=1"])
