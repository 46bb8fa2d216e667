"""Hydra configs: dataclasses hold every default (agents/ppo/config.py, envs/evaluation/config.py, agents/deploy/
config.py, the controllers' and perturbation specs' classes), a file under configs/ only what its preset changes;
every option of every group, and every app, composes to exactly that, key for key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from agents.classical import CONTROLLERS
from agents.deploy.config import ExportConfig  # registers "export_schema"
from agents.ppo.config import GROUP_SCHEMAS, EvaluateAppConfig, TrainAppConfig, structured
from agents.ppo.schema import parameters
from envs.incidents.perturbations import perturbation_from_config
from tests.config_goldens import COMPOSED_PERTURBATIONS, DEFAULT_EVALUATE_RUN, DEFAULT_TRAIN_RUN

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
GLOBAL = "# @package _global_"


APPS = {"train": TrainAppConfig, "evaluate": EvaluateAppConfig, "export": ExportConfig}


def _compose(config_name: str, overrides=()):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def _plain(node):
    return OmegaConf.to_container(node, resolve=False)


def _preset(group: str, option: str) -> tuple[bool, dict]:
    """(is it a global-package preset, the keys it sets)."""
    text = (CONFIGS / group / f"{option}.yaml").read_text()
    keys = yaml.safe_load(text) or {}
    keys.pop("defaults", None)
    return text.startswith(GLOBAL), keys


def _primary(config_name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{config_name}.yaml").read_text())


def _default_options(config_name: str) -> dict[str, str]:
    """``{target: option}`` of the primary config's defaults list (``controller@a.b``: ``a.b``)."""
    options = {}
    for entry in _primary(config_name)["defaults"]:
        if isinstance(entry, dict):
            (key, value), = entry.items()
            if not key.startswith("override "):
                options[key] = value
    return options


def _expected(group: str, *presets: dict) -> dict:
    """The group's dataclass defaults with `presets` merged over them, in order."""
    node = structured(GROUP_SCHEMAS[group])
    for keys in presets:
        node = OmegaConf.merge(node, keys)
    return _plain(node)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def _class_defaults(name: str) -> dict:
    """A classical controller's parameters: its class's fields and their defaults, in order."""
    return {f.name: f.default for f in parameters(CONTROLLERS[name])}


def _nested(path: str, value) -> dict:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


TRAIN_GROUP_OPTIONS = [(group, option) for group in GROUP_SCHEMAS for option in _options(group)]


@pytest.mark.parametrize(("group", "option"), TRAIN_GROUP_OPTIONS)
def test_every_train_group_option_composes_to_the_dataclass_defaults_plus_its_preset(group, option):
    cfg = _compose("train", [f"{group}={option}"])
    defaults = _default_options("train")
    is_global, keys = _preset(group, option)
    if not is_global:
        assert _plain(cfg[group]) == _expected(group, keys), f"{group}/{option}.yaml"
        return
    # a global preset (train/fast.yaml) changes several groups over their default options
    assert set(keys) <= set(GROUP_SCHEMAS), f"{group}/{option}.yaml sets {sorted(keys)}"
    for touched in GROUP_SCHEMAS:
        if touched == "scenario":
            continue  # no scenario default to merge over here; a global preset never sets one
        base = _preset(touched, defaults[touched])[1]
        expected = _expected(touched, base, keys.get(touched, {}))
        assert _plain(cfg[touched]) == expected, f"{group}/{option}.yaml: {touched}"


@pytest.mark.parametrize(("group", "option"), [
    (group, option) for group in ("scenario", "engine", "perturbation") for option in _options(group)
])
def test_evaluate_groups_share_the_train_schema(group, option):
    cfg = _compose("evaluate", [f"{group}={option}"])
    assert _plain(cfg[group]) == _expected(group, _preset(group, option)[1])
    assert _plain(cfg[group]) == _plain(_compose("train", [f"{group}={option}"])[group])


@pytest.mark.parametrize("app", sorted(APPS))
def test_every_app_composes_to_its_dataclass_defaults_plus_its_presets(app):
    overrides = {"export": {"checkpoint": "x"}}.get(app, {})
    node = structured(APPS[app])
    for target, option in _default_options(app).items():
        if target.startswith("controller@"):
            node = OmegaConf.merge(node, _nested(target.split("@")[1], _class_defaults(option)))
        else:
            is_global, keys = _preset(target, option)
            node = OmegaConf.merge(node, keys if is_global else {target: keys})
    own = {k: v for k, v in _primary(app).items() if k not in ("defaults", "hydra")}
    repeated = sorted(k for k, v in own.items() if k in node and _plain(node)[k] == v)
    assert not repeated, f"configs/{app}.yaml repeats defaults: {repeated}"
    node = OmegaConf.merge(node, own, overrides)
    assert _plain(_compose(app, [f"{k}={v}" for k, v in overrides.items()])) == _plain(node)


def _leaves(keys: dict, prefix=()):
    for key, value in keys.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key)


def _without(keys: dict, path: tuple) -> dict:
    if len(path) == 1:
        return {k: v for k, v in keys.items() if k != path[0]}
    return {**keys, path[0]: _without(keys[path[0]], path[1:])}


@pytest.mark.parametrize(("group", "option"), TRAIN_GROUP_OPTIONS)
def test_no_preset_repeats_a_default(group, option):
    is_global, keys = _preset(group, option)
    for touched, preset in (keys.items() if is_global else [(group, keys)]):
        for leaf in _leaves(preset):  # a key whose removal changes nothing only repeats the default
            assert _expected(touched, _without(preset, leaf)) != _expected(touched, preset), \
                f"{group}/{option}.yaml: {touched}.{'.'.join(leaf)} repeats the default"


def test_scenario_presets_are_named_after_their_file():
    for option in _options("scenario"):
        assert _preset("scenario", option)[1] == {"name": option}


def test_perturbation_presets_compose_what_they_always_have():
    composed = yaml.safe_load(COMPOSED_PERTURBATIONS)
    assert set(_options("perturbation")) == set(composed)
    for option, expected in composed.items():
        for config_name in ("train", "evaluate"):
            cfg = _plain(_compose(config_name, [f"perturbation={option}"]).perturbation)
            assert cfg == expected, (config_name, option)
            assert perturbation_from_config(cfg) == perturbation_from_config(expected)


def test_controller_group_is_the_classes_own_parameters():
    # a YAML file would shadow the class's structured config of the same name (the tuned presets,
    # NAME_tuned_SCENARIO.yaml from agents/classical/tune.py, have names of their own)
    assert not {p.stem for p in (CONFIGS / "controller").glob("*.yaml")} & set(CONTROLLERS)
    evaluate, train = _compose("evaluate"), _compose("train")
    assert list(evaluate.controller_params) == ["fixed_time", "fixed_time_webster", "max_pressure", "sotl",
                                                "efficient_mp", "advanced_mp"]
    assert set(evaluate.controller_params) == set(CONTROLLERS)
    assert list(train.baseline_params) == ["fixed_time", "max_pressure"]
    for cfg in (evaluate.controller_params, train.baseline_params):
        for name in cfg:
            assert _plain(cfg[name]) == _class_defaults(name), name
            assert list(cfg[name]) == list(_class_defaults(name)), name
    assert _compose("evaluate", ["controller_params.sotl.mu=5"]).controller_params.sotl.mu == 5
    with pytest.raises(ConfigCompositionException) as refused:  # parameters are typed: mu is an int
        _compose("evaluate", ["controller_params.sotl.mu=many"])
    assert "'many' of type 'str' could not be converted to Integer" in str(refused.value.__cause__)
    assert "full_key: controller_params.sotl.mu" in str(refused.value.__cause__)
    with pytest.raises(ConfigCompositionException) as refused:
        _compose("train", ["baseline_params.fixed_time.cycle=90"])  # not a parameter
    assert "Key 'cycle' not in 'FixedTimeConfig'" in str(refused.value.__cause__)


def test_default_training_run_composes_what_it_always_has():
    assert OmegaConf.to_yaml(_compose("train")) == DEFAULT_TRAIN_RUN


def test_default_evaluation_run_composes_what_it_always_has():
    cfg, train = _plain(_compose("evaluate")), _plain(_compose("train"))
    assert {k: cfg.pop(k) for k in ("scenario", "engine")} == {k: train[k] for k in ("scenario", "engine")}
    assert cfg == yaml.safe_load(DEFAULT_EVALUATE_RUN)
    mixed = _plain(_compose("evaluate", ["task=incident_detection", "perturbation=mixed"]))
    expected = {**yaml.safe_load(DEFAULT_EVALUATE_RUN), "task": "incident_detection",
                "perturbation": yaml.safe_load(COMPOSED_PERTURBATIONS)["mixed"]}
    assert {k: v for k, v in mixed.items() if k not in ("scenario", "engine")} == expected


def test_export_run_composes_what_it_always_has():
    assert _plain(_compose("export", ["checkpoint=x"])) == {
        "checkpoint": "x", "out": None, "name": None, "opset": 18, "overwrite": False, "max_green_s": 120.0,
        "max_red_s": None,
        "data_dir": None, "check": {"seconds": 600, "copies": 2},
        "engine": {"device": "cpu"}}
    with pytest.raises(ConfigCompositionException) as refused:
        _compose("export", ["checkpoint=x", "opset=latest"])
    assert "'latest' of type 'str' could not be converted to Integer" in str(refused.value.__cause__)


def test_overrides_still_reach_every_group():
    cfg = _compose("train", ["train=fast", "engine.device=cuda", "env.copies=4",
                             "agent=ppo_independent", "env.reward={queue:1.0,delay:0.1}"])
    assert (cfg.engine.device, cfg.engine.compile, cfg.env.copies) == ("cuda", True, 4)
    assert (cfg.agent.policy, cfg.agent.n_epochs, cfg.train.threads) == ("independent", 4, 2)
    assert dict(cfg.env.reward) == {"queue": 1.0, "delay": 0.1}
    assert "split" not in cfg.env  # not a config key: training always draws the train split


def test_train_py_reports_a_bad_value_in_one_line_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run([sys.executable, "train.py", "env.copies=0", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == ["error: <config>: field 'env.copies' = 0: must be >= 1"]
    assert "Traceback" not in proc.stderr + proc.stdout
