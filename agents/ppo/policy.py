"""Trained PPO policies: checkpoints and a controller that drives a `Simulator` with one.

A checkpoint is SB3's zip (``MaskablePPO.save``) with one more member, ``gridlight.json``: the
composed training config, the training env's ``describe()`` (observation features in order,
normalisation, intersections, actions, decision interval) and the training progress. So a
single file says everything needed to rebuild the policy's observations:

    from agents.ppo.policy import PolicyController, load_policy
    model, meta = load_policy("outputs/.../checkpoints/best.zip")
    sim.run(3600, PolicyController(model=model, meta=meta))   # or PolicyController("...zip")

`PolicyController` implements the classical controllers' interface (``reset(sim)``,
``act(sim) -> [B, I]``): every ``decision_interval_s`` simulated seconds it computes the same
features as the training env (`envs.rl.features`) from the simulator's state, asks the policy for
an action per intersection (deterministic by default, masked as the env masks it) and maps it
to a phase command in the checkpoint's ``action_mode`` with the env's own `envs.rl.actions.ActionDecoder`
(phase, keep-or-switch, or phase-and-duration with its holds); between decisions it re-issues
that command, exactly as the env does within an interval.

A policy that observes probe features (``probe_reports``, ``probe_halted``, ``probe_queue_gap``)
gets a probe sensor of its own (`envs.incidents.probes.ProbeSensor`) with the checkpoint's
``env.probes`` spec, fed the evaluation copies' state every second as the env feeds its own.
Copy b's probes are keyed as sample ``probe_samples[b]`` = ``(split, index)`` (default: eval
sample b; evaluate.py sets each copy's demand seed), so a copy running eval seed s sees the
same probe vehicles whatever controller or condition it runs, and never a training draw.

``max_green_s`` (off by default, as in training) adds the deployment controller's max-green
rule (agents/deploy/runtime.py): a phase the policy keeps is ended, for the next action's phase, at
the second its green reaches ``max_green_s``. With it, this controller and the exported one
driving the simulator take the same decisions, second for second.
"""

from __future__ import annotations

import io
import json
import numbers
import zipfile
from dataclasses import fields, replace
from pathlib import Path

import torch
from sb3_contrib import MaskablePPO

from agents.ppo.atomic_files import atomic_path
from envs.engine.simulator import Simulator
from envs.engine.state import EngineParams
from envs.errors import CheckpointError, CommandError, ConfigError, positive_or_none
from envs.incidents.probes import ProbeSensor, probes_from_config
from envs.rl.features import check_observation_names, feature_context, observe
from envs.rl.probe_features import reads_probes
from envs.engine.signals import green_elapsed
from envs.engine.intersections import current_action, intersection_layout, next_action_phase
from envs.rl.actions import ActionDecoder, action_settings

# the EngineParams a policy learns under: all but max_vehicles, which only sizes the slot table
LEARNED_ENGINE_RULES = tuple(f.name for f in fields(EngineParams) if f.name != "max_vehicles")

META_NAME = "gridlight.json"
META_FORMAT = 1
RNG_NAME = "rng_state.pt"  # torch, numpy and Python random state at the save
# the meta's env keys that the controller and export.py read
ENV_KEYS = ("observations", "normalise", "decision_interval_s", "intersections")


def with_newer_rules(engine: dict) -> dict:
    """A checkpoint's recorded engine rules (`engine`, its meta's) with each learned rule it lacks, one
    added to the engine after it was written, at its default: a new rule's default is the engine as it
    was (``junction_yielding`` off), so that is what the policy learned. An empty record (a hand-made
    meta) stays empty: nothing to hold the run to."""
    if not isinstance(engine, dict) or not engine:
        return engine
    defaults = {f.name: f.default for f in fields(EngineParams) if f.name in LEARNED_ENGINE_RULES}
    return {**defaults, **engine}


# ---- checkpoints ---------------------------------------------------------------------------------


def save_checkpoint(model: MaskablePPO, path: str | Path, meta: dict, rng: dict | None = None) -> Path:
    """Write SB3's zip plus ``gridlight.json`` (and the random state `rng`, agents/ppo/atomic_files.py)
    to `path`, atomically: a run killed mid-save leaves the previous checkpoint intact."""
    path = Path(path)
    with atomic_path(path) as partial:
        model.save(partial)
        with zipfile.ZipFile(partial, "a") as archive:
            archive.writestr(META_NAME, json.dumps({"format": META_FORMAT, **meta}, indent=2))
            if rng is not None:
                saved = io.BytesIO()
                torch.save(rng, saved)
                archive.writestr(RNG_NAME, saved.getvalue())
    return path


def _unreadable(path: Path, what: str, error: Exception) -> CheckpointError:
    return CheckpointError(str(path), what, str(path), f"truncated or corrupted ({type(error).__name__}: "
                                                       f"{str(error)[:120]})")


def _not_a_zip(path: Path, error: Exception) -> str:
    if path.suffix != ".zip":  # export.py's .onnx / .json given as a checkpoint: no damage to report
        return ("not a train.py checkpoint (.zip from trainer=sb3, .pt from trainer=torchrl); an exported "
                ".onnx model runs with evaluate.py deployed=")
    return f"not a readable zip archive: truncated or corrupted ({error})"


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_env_meta(meta, source: str) -> dict:
    """`meta` (a checkpoint's, either trainer) if its ``env`` has every key of `ENV_KEYS`, each
    observation feature a ``size`` and the decision interval whole seconds >= 1; otherwise a
    `CheckpointError` naming `source`, the key and its value (a hand-edited meta was a KeyError
    or, with a 0 interval, a ZeroDivisionError far from the file)."""
    env = meta.get("env") if isinstance(meta, dict) else None
    if not isinstance(env, dict):
        raise CheckpointError(source, "env", env, "missing: not a checkpoint saved by train.py")
    for key in ENV_KEYS:
        if key not in env:
            raise CheckpointError(source, f"env.{key}", None, "missing")
    observations = env["observations"]
    if not isinstance(observations, dict) or not observations:
        raise CheckpointError(source, "env.observations", observations, "expected {feature: {size: N, ...}}")
    wholes = [(f"env.observations.{name}.size", entry.get("size") if isinstance(entry, dict) else entry)
              for name, entry in observations.items()]
    for key, value in wholes + [("env.decision_interval_s", env["decision_interval_s"])]:
        if not _whole(value):
            raise CheckpointError(source, key, value, "must be an integer >= 1")
    return meta


def read_meta(path: str | Path) -> dict:
    """The ``gridlight.json`` of a checkpoint; `CheckpointError` naming the file and what is wrong
    with it (missing, truncated, a corrupted member, not saved by train.py)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(str(path), "checkpoint", str(path), "no such checkpoint file")
    try:
        with zipfile.ZipFile(path) as archive:
            if META_NAME not in archive.namelist():
                raise CheckpointError(
                    str(path), META_NAME, None,
                    "not a gridlight checkpoint (saved by train.py), or one truncated or corrupted",
                )
            damaged = archive.testzip()  # every member's CRC: a corrupted byte anywhere is found here
            if damaged is not None:
                raise CheckpointError(str(path), damaged, None, "corrupted: the member fails its checksum")
            meta = json.loads(archive.read(META_NAME))
    except CheckpointError:
        raise
    except zipfile.BadZipFile as error:
        raise CheckpointError(str(path), "checkpoint", str(path), _not_a_zip(path, error)) from None
    except (ValueError, OSError, EOFError, zipfile.LargeZipFile) as error:  # JSON, decompression, I/O
        raise _unreadable(path, META_NAME, error) from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise CheckpointError(str(path), f"{META_NAME}.format", meta.get("format") if isinstance(meta, dict) else meta,
                              f"expected {META_FORMAT}")
    return check_env_meta(meta, str(path))


def read_rng(path: str | Path) -> dict | None:
    """The random state saved with a checkpoint (None for checkpoints saved without one)."""
    with zipfile.ZipFile(path) as archive:
        if RNG_NAME not in archive.namelist():
            return None
        return torch.load(io.BytesIO(archive.read(RNG_NAME)), weights_only=False)


def load_policy(path: str | Path, device: str = "cpu", env=None, **kwargs) -> tuple[MaskablePPO, dict]:
    """``(model, meta)`` of a checkpoint. `env` and `kwargs` go to ``MaskablePPO.load`` (to
    continue training); for evaluation neither is needed."""
    meta = read_meta(path)
    try:
        model = MaskablePPO.load(str(path), env=env, device=device, **kwargs)
    except (ValueError, RuntimeError, KeyError, OSError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, ValueError) and "observation" in str(error).lower():
            raise  # a mismatching env, not a damaged file
        raise _unreadable(Path(path), "policy", error) from None
    return model, meta


# ---- the controller ------------------------------------------------------------------------------


def checkpoint_meta(path: str | Path) -> dict:
    """The meta of a train.py checkpoint of either trainer: ``.pt`` (TorchRL) or SB3's ``.zip``."""
    if Path(path).suffix == ".pt":
        from agents.ppo.torchrl_policy import read_torchrl_meta  # TorchRL loads only for its files

        return read_torchrl_meta(path)
    return read_meta(path)


def controller_for_checkpoint(path: str | Path, **kwargs) -> "PolicyController":
    """The controller that runs a train.py checkpoint of either trainer in a simulator."""
    if Path(path).suffix == ".pt":
        from agents.ppo.torchrl_policy import TorchRLPolicyController

        return TorchRLPolicyController(path, **kwargs)
    return PolicyController(str(path), **kwargs)


class PolicyController:
    """A trained policy behind the classical controller interface (see the module doc)."""

    def __init__(
        self,
        checkpoint: str | None = None,
        *,
        model: MaskablePPO | None = None,
        meta: dict | None = None,
        deterministic: bool = True,
        device: str = "cpu",
        max_green_s: float | None = None,
    ) -> None:
        if model is None:
            if checkpoint is None:
                raise ConfigError("<controller:ppo>", "checkpoint", None, "need a checkpoint path or a model")
            model, meta = load_policy(checkpoint, device=device)
        if meta is None:
            raise ConfigError("<controller:ppo>", "meta", None, "a model needs its checkpoint meta")
        self.source = str(checkpoint or "<controller:ppo>")
        self.policy = model.policy
        self.meta = meta
        self.deterministic = deterministic
        env = meta["env"]
        self.feature_sizes = {name: entry["size"] for name, entry in env["observations"].items()}
        self.features = check_observation_names(list(self.feature_sizes), self.source)
        self.normalise = bool(env["normalise"])
        self.decision_interval_s = int(env["decision_interval_s"])
        if max_green_s is not None and action_settings(env)[0] == "phase_duration":
            # the policy times its own greens; a max green cutting a hold would fight it
            raise ConfigError(self.source, "max_green_s", max_green_s,
                              "a phase_duration policy chooses its green durations: leave it unset")
        # None: no max-green rule (a negative or NaN max green was taken as given)
        self.max_green_s = positive_or_none(max_green_s, self.source, "max_green_s", "seconds")
        self.detectors = None  # envs.incidents.perturbations.DetectorFaults: what faulty detectors show it
        # (split, index) keying each copy's probe vehicles (module doc); None: copy b = eval sample b
        self.probe_samples: list[tuple[str, int]] | None = None
        self.probes: ProbeSensor | None = None  # built by reset() for a policy that observes probes
        self.last_actions: torch.Tensor | None = None  # [B, I] set at each decision by act()
        self._context = None
        self._command: torch.Tensor | None = None

    def check_fits(self, network, run_on: str | None = None):
        """The network's intersection layout, if the policy's observations fit it; else a
        CheckpointError naming the scenario it was trained on (and `run_on`, where known). A
        different scenario of the same layout passes: a transfer test may mean it."""
        layout = intersection_layout(network)
        trained = self.meta["env"].get("scenario", "a scenario its meta does not name")  # older metas
        scenarios = f"trained on {trained}" + (f", run on {run_on}" if run_on else "")
        trained_on = list(self.meta["env"]["intersections"])
        if list(layout.ids) != trained_on:
            # evaluate.py runs its own scenario= (grid_4x4 unless given), not the checkpoint's: say which to give
            hint = f"; run it on its scenario: scenario.name={trained}" if "scenario" in self.meta["env"] else ""
            raise CheckpointError(self.source, "env.intersections", list(layout.ids),
                                  f"the policy was trained on intersections {trained_on} ({scenarios}){hint}")
        for feature in self.features:
            if feature.size(layout) != self.feature_sizes[feature.name]:
                raise CheckpointError(
                    self.source, f"env.observations.{feature.name}.size", feature.size(layout),
                    f"the policy expects {self.feature_sizes[feature.name]} ({scenarios})",
                )
        return layout

    def check_engine(self, params) -> None:
        """ConfigError when `params` (EngineParams) differ from the engine the policy was trained
        under in a rule it learned (timing, halting speed, right of way): it ran silently under the
        run's rules, so a checkpoint's row and its export's (which keeps the trained timing) differed."""
        trained = with_newer_rules(self.meta["env"].get("engine", {}))
        for name in LEARNED_ENGINE_RULES:
            if name in trained and getattr(params, name) != trained[name]:
                raise ConfigError(self.source, f"engine.{name}", getattr(params, name),
                                  f"the policy was trained with engine.{name}={trained[name]}: run it under "
                                  f"the rules it learned (engine.{name}={trained[name]})")

    def reset(self, sim: Simulator) -> None:
        self.check_engine(sim.params)
        layout = self.check_fits(sim.network)
        self.layout = layout
        mode, durations = action_settings(self.meta["env"])
        self.decoder = ActionDecoder(layout, sim.network, sim.params, mode, durations, sim.batch_size, self.source)
        self._context = feature_context(sim.network, layout, sim.params)
        if self.detectors is not None:
            self._context = replace(self._context, detectors=self.detectors)
        self.probes = self._probe_sensor(sim)
        if self.probes is not None:
            self._context = replace(self._context, probes=self.probes)
        self._command = sim.keep_command()
        self.policy.set_training_mode(False)

    def _probe_sensor(self, sim: Simulator) -> ProbeSensor | None:
        """The checkpoint's probe sensor over the simulator's copies (None: no probe feature)."""
        if not any(reads_probes(f.name) for f in self.features):
            return None
        spec = probes_from_config(self.meta["env"].get("probes"), self.source)
        if spec.p <= 0:  # the training env refuses this; a hand-made meta could still say it
            raise CheckpointError(self.source, "env.probes.p", spec.p, "the policy observes probe features")
        samples = self.probe_samples
        if samples is not None and len(samples) != sim.batch_size:
            raise ConfigError(self.source, "probe_samples", len(samples),
                              f"need one (split, index) per copy ({sim.batch_size})")
        sensor = ProbeSensor(spec, sim.network, sim.batch_size, "eval")
        for b, (split, index) in enumerate(samples or []):
            sensor.start_episode(b, split, int(index))
        sensor.restart(torch.ones(sim.batch_size, dtype=torch.bool, device=sim.device), sim.state)
        return sensor

    def observe(self, sim: Simulator) -> torch.Tensor:
        """Observations ``[B, I, F]``, as `BatchedSignalEnv.observe` computes them."""
        if self.probes is not None:  # fed once per time: after act's feed this computes nothing
            self.probes.observe(sim.state)
        return observe(self.features, self._context.at(sim.state), self.normalise)

    def actions(self, sim: Simulator) -> torch.Tensor:
        """The policy's action index per intersection ``[B, I]`` for the current state."""
        obs = self.observe(sim)
        batch, inter, width = obs.shape
        mask = self.decoder.mask(sim.state).reshape(batch * inter, -1)
        with torch.no_grad():
            dist = self.policy.get_distribution(obs.reshape(-1, width).to(self.policy.device),
                                                action_masks=mask.to(self.policy.device))
            chosen = dist.get_actions(deterministic=self.deterministic)
        return chosen.reshape(batch, inter).to(device=sim.device, dtype=torch.int64)

    def act(self, sim: Simulator) -> torch.Tensor:
        if self._command is None:
            raise CommandError(self.source, "reset", None, "call reset(sim) before act(sim)")
        if self.probes is not None:  # the env feeds its sensor after every step: the same state
            self.probes.observe(sim.state)
        due = sim.state.t % self.decision_interval_s == 0  # [B]; copies may run out of step
        if bool(due.any()):
            actions = self.actions(sim)
            self.last_actions = actions  # [B, I] the policy's choice at the latest decision
            command = self.decoder.commands(actions, sim.state, deciding=due)
            self._command = torch.where(due.unsqueeze(1), command, self._command)
        if self.max_green_s is not None:
            state = sim.state
            overdue = (
                (self._command == state.phase)
                & (current_action(self.layout, state) >= 0)
                & (green_elapsed(sim.network, sim.params, state) >= self.max_green_s)
            )
            self._command = torch.where(overdue, next_action_phase(self.layout, state), self._command)
        return self._command


__all__ = ["META_NAME", "PolicyController", "check_env_meta", "load_policy", "read_meta",
           "save_checkpoint", "with_newer_rules"]
