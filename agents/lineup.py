"""The controllers an evaluation runs (evaluate.py, the incident-detection task): classical ones
by name (``<name>_tuned``: the scenario's tuned preset), trained checkpoints (``checkpoint=``)
and exported models run by the deployment controller (``deployed=``), each checked before any
work and named in the table (two checkpoints of one agent: ``ppo_shared``, ``ppo_shared_2``)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from agents.classical import CONTROLLERS
from agents.classical.tuned_presets import base_controller, preset_path, tuned_params
from agents.ppo.run_messages import last_in_folder
from agents.ppo.schema import parameters
from agents.ppo.value_checks import plain
from envs.errors import CheckpointError, ConfigError, GridlightError, ModelError, config_path


def _tuned(name: str, scenario: str):
    """``<controller>_tuned``'s controller from its preset for `scenario`. A key its class lacks (a
    TypeError traceback) or a bad value (found once the scenario and demands were loaded) is a
    ConfigError naming the preset file and the key."""
    base = base_controller(name)
    params, source = tuned_params(name, scenario), str(preset_path(base, scenario))
    known = [f.name for f in parameters(CONTROLLERS[base])]
    for key, value in params.items():
        if key not in known:
            raise ConfigError(source, key, value, f"not a parameter of {base}; its parameters: {known}")
    with config_path(source, ""):  # the class's own check, named as the preset's field
        return CONTROLLERS[base](**params)


def check_known(name: str, cfg: DictConfig, field: str = "controllers") -> None:
    """`field`: the key that named the controller (``detection.controller`` for the detection task)."""
    if base_controller(name) in CONTROLLERS:  # sotl_tuned: its preset for this scenario must exist and build
        _tuned(name, cfg.scenario.name)
    elif name not in CONTROLLERS:
        raise ConfigError("<config>", field, name,
                          f"unknown controller; known: {sorted(CONTROLLERS)} (the tuned ones also as <name>_tuned)")


def build_controller(name: str, cfg: DictConfig):
    check_known(name, cfg)
    if base_controller(name) in CONTROLLERS:
        return _tuned(name, cfg.scenario.name)
    params = OmegaConf.to_container(cfg.controller_params.get(name, {}), resolve=True)
    return CONTROLLERS[name](**params)


def existing_paths(cfg: DictConfig, key: str, what: str, error: type[GridlightError]) -> list[str]:
    """``cfg[key]``: a path or a list of them (none: empty), each an existing file."""
    paths = cfg.get(key)
    # Hydra reads checkpoint=123 as an int, true as a bool: each taken as the path typed; a nested list is refused
    paths = [] if paths is None else list(paths) if OmegaConf.is_list(paths) else [paths]
    seen: dict[Path, str] = {}
    for k, path in enumerate(paths):
        field = key if len(paths) == 1 else f"{key}[{k}]"  # a list's entry by its index
        if not isinstance(path, (str, int, float)):
            raise error("<config>", field, plain(path), f"expected a path ({what}) or a list of paths")
        if Path(str(path)).is_dir():  # a run's (or a sweep job's) folder: name the file to give, as resume= does
            raise error("<config>", field, str(path), _folder_hint(Path(str(path)), key))
        if not Path(str(path)).is_file():
            raise error("<config>", field, str(path), f"no such {what}")
        resolved = Path(str(path)).resolve()
        if resolved in seen:  # it ran twice, as ppo_shared and ppo_shared_2: two rows that agree to the digit
            raise error("<config>", key, str(path), f"listed twice (also as {seen[resolved]}): one file is one "
                        "policy; give each once, as controllers= names each controller once")
        seen[resolved] = str(path)
    return [str(path) for path in paths]


# the file a run folder holds for each key: train.py's last checkpoint, export.py's model of it
LAST_FILES = {"checkpoint": ("last.zip", "last.pt"), "deployed": ("last.onnx",)}


def _folder_hint(folder: Path, key: str) -> str:
    names = LAST_FILES[key]
    found = last_in_folder(folder, names)
    if found:
        return f"is a folder: {key}={found}"
    return f"is a folder, with no {' or '.join(names)} in it or its checkpoints/"


def trained_policies(cfg: DictConfig) -> dict[str, tuple[str, object]]:
    """``{name: (path, PolicyController)}`` for the checkpoint(s) in ``cfg.checkpoint``."""
    paths = existing_paths(cfg, "checkpoint", "checkpoint file", CheckpointError)
    if not paths:
        return {}
    # loads SB3 only when asked
    from agents.ppo.policy import checkpoint_meta, controller_for_checkpoint

    policies: dict[str, tuple[str, object]] = {}
    for path in paths:
        name = str(checkpoint_meta(path).get("config", {}).get("agent", {}).get("name") or Path(path).stem)
        name = name if name not in policies and name not in cfg.controllers else f"{name}_{len(policies) + 1}"
        with config_path(path, "checkpoint_"):  # its max_green_s is checkpoint_max_green_s; on the engine device
            policies[name] = path, controller_for_checkpoint(path, max_green_s=cfg.get("checkpoint_max_green_s"),
                                                             device=str(cfg.engine.device))
    return policies


def deployed_policies(cfg: DictConfig, taken: list[str]) -> dict[str, tuple[str, object]]:
    """``{name: (path, SimulatedRuntime)}`` for the exported model(s) in ``cfg.deployed``: the
    deployment controller, with its timing rules and fail-safe, as a field device runs it."""
    paths = existing_paths(cfg, "deployed", "ONNX model file", ModelError)
    if not paths:
        return {}
    from agents.deploy.metadata import load_metadata
    from agents.deploy.model_file import load_session, not_a_model
    from agents.deploy.simulated import SimulatedRuntime, check_timing  # loads onnxruntime only when asked

    out: dict[str, tuple[str, object]] = {}
    for path in paths:
        wrong_file = not_a_model(Path(path))
        if wrong_file:
            raise ModelError(path, "deployed", path, f"not a model export.py wrote: {wrong_file}")
        try:
            meta = load_metadata(Path(path).with_suffix(".json"))
        except ModelError as error:  # a checkpoint given as the model has no export metadata beside it
            raise ModelError(path, "deployed", path, f"not a model export.py wrote: {error}") from None
        # a model that cannot load (a checkpoint or another export given as the model) would run its
        # fixed-time fallback all along, reported under the model's name; faults during the run
        # (readings, deadlines) stay the fail-safe this evaluation measures
        try:
            _, fault = load_session(Path(path), meta["model"], threads=1)
        except ModelError as error:  # a model file other than the one its metadata was exported with
            fault = error.reason
        if fault:
            raise ModelError(path, "deployed", path, f"the model cannot run: {fault}")
        check_timing(meta, path, cfg.engine)
        name = f"{meta['training'].get('agent') or 'policy'}_onnx"
        name = name if name not in out and name not in taken else f"{name}_{len(out) + 1}"
        out[name] = path, SimulatedRuntime(path)
    return out


def controller_names(cfg: DictConfig) -> tuple[list[str], dict[str, object], dict[str, str]]:
    """The table's controllers in order (classical, trained, deployed), the loaded policies and
    the file each policy's name stands for (two checkpoints of one agent: ``ppo_shared_2``)."""
    classical = list(cfg.controllers)
    if len(set(classical)) != len(classical):
        raise ConfigError("<config>", "controllers", classical, "need distinct controller names")
    for name in classical:  # before any work
        check_known(name, cfg)
    loaded = trained_policies(cfg)
    loaded.update(deployed_policies(cfg, classical + list(loaded)))
    controllers = classical + list(loaded)
    if not controllers:
        raise ConfigError("<config>", "controllers", classical, "nothing to evaluate")
    policies = {name: policy for name, (_, policy) in loaded.items()}
    return controllers, policies, {name: str(path) for name, (path, _) in loaded.items()}


__all__ = ["build_controller", "check_known", "controller_names", "deployed_policies", "existing_paths",
           "trained_policies"]
