"""What both PPO trainers (`agents.ppo.sb3_trainer`, `agents.ppo.torchrl_trainer`) share to set a
run up and to keep its books, so that neither imports the other: the training and evaluation
scenarios, the checks that a resumed checkpoint fits this run (architecture, env layout), and
`RunRecord` (the eval history, the best eval travel time, the training wall clock and the meta
every checkpoint carries).
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from agents.ppo.atomic_files import write_bytes_atomic
from agents.ppo.config import demand_spec
from agents.ppo.controller_params import with_newer_defaults
from agents.ppo.periodic_eval import PRIMARY, Evaluator
from agents.ppo.policy import LEARNED_ENGINE_RULES, with_newer_rules
from agents.ppo.run_messages import say
from envs.engine.intersections import deciding_intersections, intersection_layout
from envs.errors import CheckpointError, ConfigError, config_path, recorded
from envs.evaluation.metrics import METRIC_NAMES
from envs.evaluation.runner import Metrics
from envs.incidents.perturbations import check_incident_lanes, perturbation_from_config
from envs.rl.actions import action_settings
from envs.scenario import Scenario, load_scenario
from envs.scenario.splits import SOURCE as DEMAND_SPEC
from envs.scenario.splits import check_scale

SAMPLES_PER_SEED = 1_000_000  # training demand samples of seed s start at s * this (disjoint)
# describe() entries that fix what the policy's inputs and outputs mean: a resumed run must match.
# The keys one sets (env.observations) come before the size they change, so a difference is named as set
LAYOUT_KEYS = ("scenario", "intersections", "observations", "observation_size", "normalise", "actions",
               "decision_interval_s", "action_mode", "green_durations_s")
ARCH_KEYS = ("policy", "intersection_id", "net_arch", "activation")


def load_scenarios(cfg: DictConfig) -> tuple[Scenario, Scenario]:
    """(training scenario, evaluation scenario). Training cuts the flow at the episode length
    unless ``scenario.horizon`` says otherwise; evaluation loads it as evaluate.py does."""
    def load(horizon):
        return load_scenario(cfg.scenario.name, seed=cfg.scenario.seed, data_dir=cfg.scenario.data_dir,
                             horizon=horizon, device=cfg.engine.device)

    train_horizon = cfg.scenario.horizon if cfg.scenario.horizon is not None else cfg.env.episode_s
    evaluation = load(cfg.scenario.horizon)
    perturbation = perturbation_from_config(OmegaConf.to_container(cfg.perturbation, resolve=True))
    check_incident_lanes(perturbation, evaluation.network, "<config>")  # before the baselines run
    if not perturbation.is_clean:  # the eval/* figures and the best checkpoint are the clean demand's
        say(f"training under perturbation {perturbation.name!r}; periodic evaluation (eval/*, best checkpoint) "
            f"runs the clean held-out demand: evaluate.py perturbation=... measures the policy under it")
    late = perturbation.windows_past(cfg.env.episode_s)
    if late:  # else a short env.episode_s trains clean where the run says it trains perturbed (as evaluate.py says)
        say(f"warning: perturbation {perturbation.name}: {'; '.join(late)} reach past the {cfg.env.episode_s} s "
            "training episode (env.episode_s): what falls after its end is never trained on")
    training = evaluation if train_horizon == cfg.scenario.horizon else load(train_horizon)
    cap_copies(cfg, training)  # before anything reads env.copies
    # a scale too large to draw, or whose samples held at once would not fit in memory: refused now. Training
    # holds one sample a copy (env.copies), or its pool's (env.demand_pool); evaluation one an eval seed
    held = {"env": int(cfg.env.demand_pool) or int(cfg.env.copies), "eval": int(cfg.eval.seeds)}
    for scenario, group in ((training, "env"), (evaluation, "eval")):
        with config_path("<config>", f"{group}.demand.", only_from=DEMAND_SPEC):  # named as the key to change
            check_scale(scenario, demand_spec(cfg[group].demand, f"{group}.demand"), samples=held[group])
    return training, evaluation


def cap_copies(cfg: DictConfig, scenario: Scenario) -> None:
    """``train.max_agents_per_step``: where ``env.copies`` copies of `scenario` would step more deciding
    intersections than that together, train on fewer copies (at least one), written back into ``cfg.env.copies``
    so that every later reader (the env, the minibatch checks, the checkpoints) sees the copies that run, and said.

    Why: a larger batch of agents no longer makes the CPU much faster per agent-step (``grid_16x8``'s 128
    intersections: 8 or 16 copies about as fast as 64), while the rollout (``agent.n_steps`` x copies x deciding
    intersections) grows with it, and PPO updates its policy once per rollout: `train=fast`'s 64 copies gave
    ``grid_16x8`` 6 rollouts in 3 M agent-steps and travel times 4% longer than 8 or 16 copies (docs/training.md)."""
    cap = cfg.train.max_agents_per_step
    deciding = int(deciding_intersections(intersection_layout(scenario.network).action_phase).sum())
    if cap is None or deciding == 0 or int(cfg.env.copies) * deciding <= cap:  # none deciding: refused later
        return
    copies = max(1, int(cap) // deciding)
    say(f"train.max_agents_per_step={cap}: {copies} cop{'y' if copies == 1 else 'ies'} of {scenario.name} "
        f"({deciding} deciding intersections, {copies * deciding:,} agents a step) instead of "
        f"env.copies={cfg.env.copies} ({int(cfg.env.copies) * deciding:,})")
    cfg.env.copies = copies


def check_minibatches(agent: DictConfig, copies: int, intersections: int, trainer: str, of: int | None = None) -> None:
    """ConfigError, before any work, when ``agent.batch_size`` does not fit the rollout of
    ``agent.n_steps x env.copies x intersections`` agent-steps (`intersections`: those that decide, of
    `of` when some do not: `agents.ppo.deciding`): larger, it was silently cut to the
    rollout; under SB3, one that leaves a last minibatch of one agent-step turned the policy NaN
    (MaskablePPO normalises each minibatch's advantages by their standard deviation); under TorchRL,
    one below a sample of all intersections. A TorchRL size between whole samples is said rounded down."""
    rollout = int(agent.n_steps) * int(copies) * int(intersections)
    given = int(agent.batch_size)
    which = "intersections" if of in (None, intersections) else f"deciding intersections (of {of})"
    sizes = f"agent.n_steps {agent.n_steps} x env.copies {copies} x {intersections} {which}"
    if given > rollout:
        raise ConfigError("<config>", "agent.batch_size", given, f"exceeds the rollout of {rollout} agent-steps "
                          f"({sizes}): lower it, or raise agent.n_steps or env.copies")
    if trainer == "sb3" and rollout % given == 1:
        raise ConfigError("<config>", "agent.batch_size", given, f"leaves a last minibatch of one agent-step of the "
                          f"rollout of {rollout} ({sizes}), whose advantages SB3 normalises to NaN")
    # the TorchRL trainer's minibatches are whole (copy, step) samples of every intersection (its
    # centralised and per-intersection networks read them together): below one sample it took one
    # anyway, and a size between whole samples was cut to the one below, both silently
    if trainer == "torchrl" and given < intersections:
        raise ConfigError("<config>", "agent.batch_size", given, f"trainer=torchrl takes minibatches of whole "
                          f"samples of all {intersections} {which}: at least {intersections}")
    if trainer == "torchrl" and given % intersections:
        samples = given // intersections
        say(f"agent.batch_size={given} is rounded down to {samples} sample{'s' if samples != 1 else ''} of all "
            f"{intersections} {which}: {samples * intersections:,} agent-steps per minibatch")


def check_architecture(path: str, meta: dict, agent: DictConfig) -> None:
    """CheckpointError unless the checkpoint's agent config (in its `meta`) has this run's architecture."""
    given = OmegaConf.to_container(agent, resolve=True)
    for key in ARCH_KEYS:
        saved = recorded(meta, path, f"config.agent.{key}", "resume checks the architecture against it")
        if saved != given[key]:
            raise CheckpointError(path, f"agent.{key}", given[key],
                                  f"the checkpoint was trained with {saved!r}; resume needs the same")


def check_evaluation(path: str, meta: dict, cfg: DictConfig) -> None:
    """CheckpointError unless the checkpoint's periodic evaluations ran as this run's would: the
    same episodes (``eval.seeds``, ``eval.steps``, ``eval.demand``), baselines (``eval.baselines``
    and their ``baseline_params``) and engine rules (``engine.yellow_s`` ...). The resumed run
    carries the evaluation history, its reductions and the best travel time on, which another
    demand, baseline or rule would mix with its own."""
    given = OmegaConf.to_container(cfg, resolve=True)
    keys = [("eval", key) for key in ("seeds", "steps", "demand", "baselines")]
    keys += [("baseline_params", name) for name in given["eval"]["baselines"]]
    # the rules a policy learns, as evaluate.py checks them (a rule newer than the checkpoint at its default)
    engine = with_newer_rules(recorded(meta, path, "config.engine", "resume checks its engine rules"))
    keys += [("engine", name) for name in LEARNED_ENGINE_RULES if name in engine]
    for group, key in keys:
        saved = engine[key] if group == "engine" else \
            recorded(meta, path, f"config.{group}.{key}", "resume carries its evaluation history on")
        if group == "baseline_params":  # a parameter newer than the checkpoint: its evaluations ran the default
            saved = with_newer_defaults(key, saved)
        if saved != given[group][key]:
            raise CheckpointError(path, f"{group}.{key}", given[group][key], f"the checkpoint's evaluations ran "
                                  f"{saved!r}; resume needs the same (its history and best travel time carry on)")


def check_layout(path: str, meta: dict, layout: dict, command: DictConfig | None = None) -> None:
    """CheckpointError unless the checkpoint's env layout (in its `meta`) is this env's (older
    checkpoints have no action-mode keys: they chose phases). `command`: this run's config, whose
    settings the refusal's hint leaves out where they are already the checkpoint's."""
    mode, durations = action_settings(meta["env"])
    saved = {"env": {**meta["env"], "action_mode": mode, "green_durations_s": list(durations)}}
    for key in LAYOUT_KEYS:
        value = recorded(saved, path, f"env.{key}", "resume checks this run's layout against it")
        given = layout[key]
        if key == "observations":  # names in order and sizes: a feature's doc text may be reworded since
            value, given = _feature_sizes(value), _feature_sizes(given)
        if value != given:
            names = [[name for name, _ in sizes] for sizes in (value, given)] if key == "observations" else None
            if names and names[0] != names[1]:  # their names, as env.observations has them
                value, given = names
            # the scenario is the one layout entry set by a key of another name (scenario.name=, scenario=)
            field = "scenario.name" if key == "scenario" else f"env.{key}"
            raise CheckpointError(path, field, given, f"differs from the checkpoint's {value!r}"
                                  + _resume_with(meta, field, command))


def _feature_sizes(observations: dict) -> list[tuple[str, int]]:
    """(name, size) of each observation feature, in order, from a layout's `observations` record."""
    return [(name, entry["size"] if isinstance(entry, dict) else entry) for name, entry in observations.items()]


def _resume_with(meta: dict, field: str, command: DictConfig | None = None) -> str:
    """'; resume it with FIELD=VALUE', the override the checkpoint's run had (its recorded config), or
    nothing where it records none: an older checkpoint resumed under defaults that moved since (the
    observations, the decision interval) is refused until its own are given, and its value in the
    layout (observations with the agent's intersection_id) is not the one to give. Nothing where
    `command` already gives that value (the layout differs for another reason: a feature's size)."""
    node = meta.get("config")
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            return ""
        node = node[part]
    if isinstance(node, dict) or node is None:
        return ""
    if command is not None:
        given = OmegaConf.select(command, field, default=None)
        if (OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else given) == node:
            return ""
    return f"; resume it with {field}={hydra_value(node)}"


def hydra_value(value) -> str:
    """`value` as a Hydra override writes it, to be pasted on a command line: true/false, null, lists
    as [a,b]; a string quoted where Hydra would read it as something else (a number, a boolean, a
    list) or split it (a comma, a space)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{hydra_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, str) and (not re.fullmatch(r"[A-Za-z_/][\w./:+-]*", value)
                                   or value.lower() in ("true", "false", "null")):
        return "'" + value.replace("'", "\\'") + "'"
    return str(value)


# what a resumed run is expected to set afresh: the checkpoint to read, how far to go, how it shows
# progress and where this machine keeps the datasets
SET_ON_RESUME = ("resume", "train.total_agent_steps", "train.progress", "scenario.data_dir")


def changed_settings(saved, given, prefix: str = "") -> list[str]:
    """``KEY=VALUE (checkpoint: VALUE)`` for each setting of this run's config (`given`, plain)
    that differs from the checkpoint's (`saved`), sub-configs compared key by key; a key the
    checkpoint does not record (newer than it) is left out."""
    changed = []
    for key, old in saved.items():
        path, new = f"{prefix}{key}", given.get(key)
        if key not in given or path in SET_ON_RESUME or old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed += changed_settings(old, new, f"{path}.")
        else:
            shown = ["{...}" if isinstance(value, dict) else repr(value) for value in (new, old)]
            changed.append(f"{path}={shown[0]} (checkpoint: {shown[1]})")
    return changed


def say_resumed(path: str, steps: int, meta: dict, cfg: DictConfig) -> None:
    """The resume line, and the settings this run changes: a resumed run trains with this command's
    config, not the checkpoint's, so the documented ``python train.py resume=PATH
    train.total_agent_steps=N`` after a run under ``perturbation=mixed`` or ``train=fast`` trained clean,
    or with the default copies and epochs, and said nothing."""
    say(f"resumed from {path} at {steps:,} agent-steps")
    changed = changed_settings(meta.get("config", {}), OmegaConf.to_container(cfg, resolve=True))
    if changed:
        say(f"this run's settings differ from the checkpoint's run, and apply from here on: {'; '.join(changed)} "
            "(give the first run's overrides again to continue it unchanged)")


def carry_best_checkpoint(path: str, run_dir: Path, meta: dict) -> None:
    """A run resumed into another folder carries the best evaluation's travel time on, so its
    ``best`` checkpoint is written only by an evaluation that beats it: the folder had none, while
    its summary.json named that best figure. The checkpoint's own run's ``best`` (beside it, holding
    that figure) is copied in; one not found is said."""
    best = meta.get("best_eval_travel_time")
    source = Path(path).with_name("best" + Path(path).suffix)
    target = run_dir / "checkpoints" / source.name
    if best is None or not math.isfinite(best) or target.exists():
        return
    from agents.ppo.policy import checkpoint_meta  # SB3 or TorchRL, as the checkpoint needs

    if source.is_file() and checkpoint_meta(source).get("best_eval_travel_time") == best:
        write_bytes_atomic(target, source.read_bytes())
    else:
        say(f"the best evaluation so far ({best:.1f} s) has no {source.name} beside the checkpoint to copy into "
            f"{target.parent}: one is written there when an evaluation beats it")


def start_demand(core, seed_env, seed: int, resumed: dict | None, path: str | None) -> None:
    """Where the training demand starts: a new run at sample ``seed * SAMPLES_PER_SEED``
    (`seed_env` seeds the adapter's next reset); a resumed one where its checkpoint (`resumed`, its
    meta, from `path`) left the stream: each copy restarts on the sample its episode ran and the
    stream carries on (with a demand pool, the pool kept). Checkpoints older than
    ``train_demand`` restart the copies on consecutive samples from ``train_next_sample``."""
    if resumed is None:
        seed_env(seed * SAMPLES_PER_SEED)
    elif "train_demand" in resumed:
        core.resume_demand(resumed["train_demand"], path)  # the adapter's next reset applies it
    else:
        seed_env(int(resumed["train_next_sample"]))


class RunRecord:
    """A run's books, carried on by a resume (`meta`: the checkpoint's, None for a new run): the
    eval history, the best eval travel time, and the wall clock of training."""

    def __init__(self, meta: dict | None) -> None:
        meta = meta or {}
        self.best = meta.get("best_eval_travel_time", math.inf)
        self.history: list[dict] = list(meta.get("eval_history", []))
        # wall_s of the runs before a resume; a checkpoint older than this key goes on from its last
        # evaluation's (the training after it is not known): from 0, its history's wall_s went back
        last_eval = max((float(entry.get("wall_s", 0.0)) for entry in self.history), default=0.0)
        self.wall_before = meta.get("wall_s", last_eval)
        self.started = time.perf_counter()  # again when training starts (start_clock)

    def start_clock(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since this run (or resume) started training."""
        return time.perf_counter() - self.started

    def wall_s(self) -> float:
        """Seconds of training since the first run began (resumes included)."""
        return self.wall_before + time.perf_counter() - self.started

    def evaluation_due(self, step: int, every: int) -> bool:
        """Whether a run resumed at `step` agent-steps owes the evaluation that its schedule (every
        `every` agent-steps, at the first update past each multiple) put at or before `step`: an
        interrupt during that update saved the checkpoint before the evaluation that follows it."""
        if not every or not self.history:
            return False
        last = max(int(entry["agent_steps"]) for entry in self.history)
        return step > last and step // every > last // every

    def final_evaluation_owed(self, step: int) -> bool:
        """Whether a checkpoint at `step` agent-steps lacks the evaluation a run ending there makes."""
        return all(int(entry["agent_steps"]) != step for entry in self.history)

    def evaluation(self, record, evaluator: Evaluator, metrics: Metrics, step: int) -> tuple[dict, dict, bool]:
        """Log an evaluation's `metrics` at agent-step `step` through `record(tag, value)` (the
        tags of the module doc of `agents.ppo.sb3_trainer`) and add it to the history. Returns
        the history entry, the reductions vs each baseline and whether it lowered the best travel time."""
        reductions = evaluator.reductions(metrics)
        for name in METRIC_NAMES:
            record(f"eval/{name}", float(metrics[name].mean()))
        for base, values in evaluator.baselines.items():
            record(f"eval/reduction_vs_{base}", reductions[base])
            for name in METRIC_NAMES:
                record(f"baseline/{base}/{name}", float(values[name].mean()))
        travel = float(metrics[PRIMARY].mean())
        entry = {"agent_steps": int(step), "wall_s": round(self.wall_s(), 1),
                 PRIMARY: travel, **{f"reduction_vs_{k}": v for k, v in reductions.items()}}
        self.history.append(entry)
        improved = travel < self.best
        if improved:
            self.best = travel
        record("eval/best_travel_time", self.best)
        return entry, reductions, improved

    def meta(self, cfg: DictConfig, core, num_timesteps: int, evaluator: Evaluator, **trainer_keys) -> dict:
        """A checkpoint's meta; `trainer_keys` (the trainer's own entries) follow the config."""
        return {
            "config": OmegaConf.to_container(cfg, resolve=True),
            **trainer_keys,
            "env": core.describe(),
            "num_timesteps": int(num_timesteps),
            "train_demand": core.demand_state,  # resume continues the demand stream (start_demand)
            "train_next_sample": core.resume_sample,  # what checkpoints without train_demand resume from
            "best_eval_travel_time": self.best,
            "eval_history": self.history,
            "wall_s": self.wall_s(),  # a resumed run's eval_history carries on from it
            "baselines": {name: {k: float(v.mean()) for k, v in values.items()}
                          for name, values in evaluator.baselines.items()},
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


__all__ = ["ARCH_KEYS", "LAYOUT_KEYS", "SAMPLES_PER_SEED", "RunRecord", "carry_best_checkpoint", "changed_settings",
           "cap_copies", "check_architecture", "check_layout", "check_evaluation", "check_minibatches",
           "load_scenarios", "hydra_value", "say_resumed", "start_demand"]
