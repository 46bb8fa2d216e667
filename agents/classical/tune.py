"""Command line of the classical-controller parameter search (`agents.classical.tuning`).

    python -m agents.classical.tune controller=sotl scenario=hangzhou_4x4
    python -m agents.classical.tune controller=max_pressure scenario=jinan_3x4 trials=16 seeds=2 steps=1800

Arguments are ``key=value``, each key once and never empty: ``controller`` (sotl | max_pressure),
``scenario``, ``scenario.seed`` (a generated scenario's demand seed, as train.py and evaluate.py take it;
default 0; a nonzero one is refused for a scenario with its own files, a dataset, SUMO scenario or path) and
the fields of `TuningSettings` (``trials``, ``random_trials``, ``seeds``, ``steps``, ``batch_trials``,
``search_seed``, ``first_sample``, ``demand_mode``), ``engine.FIELD`` for the engine
settings every trial runs under (`EngineParams`' fields, as train.py and evaluate.py take them:
``engine.min_green_s=10``, ``engine.junction_yielding=true``; the preset records them with the scenario
and its seed), ``threads`` (torch threads; default 2) and ``out`` (the YAML to write; default
``configs/controller/<controller>_tuned_<scenario>.yaml``, loadable as
``controller@controller_params.<controller>=<controller>_tuned_<scenario>``; written elsewhere, its
``# Use:`` line says to copy it there first). Progress: one JSON
line per trial on stdout, then a summary line. Only the training split of demand is drawn
(``demand_mode`` poisson, the default, or jitter; ``original`` is refused: it replays the flow
file that evaluation reports on).
``--help`` / ``-h`` prints this text.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import fields, replace
from pathlib import Path

import torch
import yaml

from agents.classical import CONTROLLERS
from agents.classical.tuned_presets import preset_path
from agents.classical.tuning import SEARCH_SPACES, TuningSettings, tune, tuned_config_text
from envs.engine.state import EngineParams
from envs.errors import ConfigError, config_path, exit_on_error
from envs.scenario import load_scenario, reads_no_dataset, unread_seed_of_known
from envs.scenario.splits import DemandSpec

SOURCE = "<tune>"
SEED_KEY = "scenario.seed"  # the generated scenario's demand seed (train.py's and evaluate.py's key)
INTEGER_KEYS = ("trials", "random_trials", "seeds", "steps", "batch_trials", "search_seed", "first_sample", "threads",
                SEED_KEY)
SETTINGS_KEYS = tuple(f.name for f in fields(TuningSettings))
HELP_FLAGS = ("-h", "--help")
KEYS = ("controller", "scenario", "demand_mode", "out", "data_dir", *INTEGER_KEYS)
ENGINE_PREFIX = "engine."  # engine.FIELD=VALUE: an EngineParams field


def engine_settings(args: dict) -> EngineParams:
    """The `EngineParams` of the ``engine.FIELD=VALUE`` arguments (a value read as YAML: ``true``, ``10``,
    ``0.2``, ``null``), checked; a key that is no field is refused naming it (``engine.device`` and
    ``engine.compile`` too: the tuner runs the engine on the CPU, uncompiled)."""
    known = [f.name for f in fields(EngineParams)]
    given = {}
    for key, value in args.items():
        if not key.startswith(ENGINE_PREFIX):
            continue
        name = key[len(ENGINE_PREFIX):]
        if name not in known:
            raise ConfigError(SOURCE, key, value, f"not an engine setting the tuner reads; it reads "
                              f"{[ENGINE_PREFIX + k for k in known]} (it runs the engine on the CPU, uncompiled)")
        try:
            given[name] = yaml.safe_load(value)
        except yaml.YAMLError:
            given[name] = value  # refused by the check below, as typed
    params = EngineParams(**given)
    with config_path(SOURCE, ENGINE_PREFIX):
        params.validate(SOURCE)
    return params


def parse_args(argv: list[str]) -> dict:
    args: dict = {}
    for item in argv:
        key, sep, value = item.partition("=")
        if not sep or (key not in KEYS and not key.startswith(ENGINE_PREFIX)):
            raise ConfigError(SOURCE, key, value or None, f"expected key=value with key one of {list(KEYS)} "
                              "or engine.FIELD")
        if key in args:  # the last one won silently: controller=sotl controller=max_pressure tuned max pressure
            raise ConfigError(SOURCE, key, value, f"given twice (first {key}={args[key]})")
        if not value:  # read as not given: out= (an unset $OUT) overwrote the committed preset, data_dir= was ignored
            raise ConfigError(SOURCE, key, value, "empty: give a value, or leave the key out for its default")
        if key in INTEGER_KEYS:
            try:
                args[key] = int(value)
            except ValueError:
                raise ConfigError(SOURCE, key, value, "must be an integer") from None
        else:
            args[key] = value
    for key in ("controller", "scenario"):
        if key not in args:
            raise ConfigError(SOURCE, key, None, "required (e.g. controller=sotl scenario=hangzhou_4x4)")
    if args["controller"] not in SEARCH_SPACES:
        raise ConfigError(SOURCE, "controller", args["controller"], f"expected one of {sorted(SEARCH_SPACES)}")
    return args


def scenario_seed(name: str, seed: int) -> int:
    """``scenario.seed``, checked as train.py checks it before loading: an integer >= 0 (a generated preset's
    demand seed), and 0 only for a scenario with its own files, which reads none."""
    if seed < 0:
        raise ConfigError(SOURCE, SEED_KEY, seed, "must be an integer >= 0")
    unread = unread_seed_of_known(name, seed)  # None for an unknown name: refused when loaded
    if unread:
        raise ConfigError(SOURCE, SEED_KEY, seed, f"{unread} (each trial's demand: demand_mode, first_sample)")
    return seed


def writable_out(out: Path) -> Path:
    """`out` if the preset can be written there, else a `ConfigError` naming ``out``: checked before the
    search, which takes minutes (a folder or an unwritable place was a traceback after all of them)."""
    if out.is_dir():
        raise ConfigError(SOURCE, "out", str(out), "is a folder: give the .yaml file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(SOURCE, "out", str(out), f"cannot create its folder: {error.strerror}") from None
    if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(SOURCE, "out", str(out), "not writable")
    return out


def main(argv: list[str]) -> dict:
    if any(arg in HELP_FLAGS for arg in argv):
        print(__doc__.strip())  # the module doc is the usage
        raise SystemExit(0)
    args = parse_args(argv)
    threads = args.pop("threads", 2)
    if threads < 1:
        raise ConfigError(SOURCE, "threads", threads, "must be an integer >= 1")
    torch.set_num_threads(threads)
    settings = TuningSettings()
    settings = replace(settings, **{k: args[k] for k in INTEGER_KEYS if k in args and k in SETTINGS_KEYS})
    if "demand_mode" in args:
        settings = replace(settings, demand=DemandSpec(mode=args["demand_mode"]))
    settings.validate()  # before loading the scenario (a bad steps= read as the scenario's horizon)
    params = engine_settings(args)
    controller, name = args["controller"], args["scenario"]
    no_dataset = reads_no_dataset(name)
    if "data_dir" in args and no_dataset:  # it was ignored silently
        raise ConfigError(SOURCE, "data_dir", args["data_dir"], f"nothing reads it: {name!r} is {no_dataset} and "
                          "reads no dataset")
    seed = scenario_seed(name, args.get(SEED_KEY, 0))
    scenario = load_scenario(name, seed=seed, data_dir=args.get("data_dir"), horizon=settings.steps)
    out = writable_out(Path(args.get("out") or preset_path(controller, name)))

    def progress(entry: dict) -> None:
        print(json.dumps({"tune": controller, "scenario": name, **entry}), flush=True)

    result = tune(controller, CONTROLLERS[controller], scenario, settings, params, progress)
    command = "python -m agents.classical.tune " + shlex.join(argv)  # a path with a space stays one argument
    out.write_text(tuned_config_text(result, settings, command, out))
    summary = {"tune": controller, "scenario": name, "best": result.best, "best_score": result.best_score,
               "default_score": result.default_score, "trials": len(result.trials),
               "samples": result.samples, "wall_s": round(result.wall_s, 1), "written": str(out)}
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    with exit_on_error():
        main(sys.argv[1:])
