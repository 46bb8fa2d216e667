"""Structured configs of train.py: the schema every composed training config must match.

The dataclasses below are registered with Hydra's ConfigStore as ``train_schema`` (first entry
of ``configs/train.yaml``'s defaults), so composition itself rejects a wrong key or a value of
the wrong type, naming the key (``agent.n_steps``), before anything runs. What a type cannot
say (ranges, names from a registry, enums) `check_config` checks next, raising `ScenarioError`
with the field's full path, still before any scenario is loaded.

Groups mirror the code: ``scenario`` / ``engine`` (shared with evaluate.py), ``env``
(envs/rl/signal_env.py), ``agent`` (PPO and the policy, agents/ppo/indexed_policy.py), ``train`` (the
run), ``eval`` (periodic evaluation on held-out demand).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from agents.classical import CONTROLLERS
from envs.engine.state import EngineParams
from envs.errors import ScenarioError
from envs.rl.features import check_observation_names, check_reward_weights
from envs.incidents.perturbations import perturbation_from_config
from envs.scenario.splits import DemandSpec

SOURCE = "<config>"
POLICIES = ("shared", "independent")
ACTIVATIONS = ("tanh", "relu")
ID_FEATURE = "intersection_id"


@dataclass
class ScenarioSchema:
    name: str = MISSING
    seed: int = 0
    horizon: Optional[int] = None
    data_dir: Optional[str] = None


@dataclass
class EngineSchema:
    yellow_s: int = 3
    all_red_s: int = 2
    min_green_s: int = 5
    halting_speed: float = 0.1
    max_vehicles: Optional[int] = None
    device: str = "cpu"
    compile: bool = False


@dataclass
class DemandSchema:
    mode: str = "poisson"
    scale: float = 1.0
    jitter_s: float = 30.0


@dataclass
class EnvSchema:
    copies: int = 8
    decision_interval_s: int = 10
    episode_s: int = 3600
    observations: List[str] = field(
        default_factory=lambda: ["phase_onehot", "time_in_phase", "lane_count", "lane_halting"]
    )
    reward: Dict[str, float] = field(default_factory=lambda: {"queue": 1.0})
    normalise: bool = True
    demand: DemandSchema = field(default_factory=DemandSchema)


@dataclass
class AgentSchema:
    name: str = MISSING
    policy: str = "shared"  # shared | independent
    intersection_id: bool = True  # append the intersection_id one-hot to the observation
    net_arch: List[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"
    ortho_init: bool = True
    n_steps: int = 64
    batch_size: int = 1024
    n_epochs: int = 10
    learning_rate: float = 1e-3
    gamma: float = 0.95
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: Optional[float] = None
    normalize_advantage: bool = True
    reward_scale: float = 0.05


@dataclass
class TrainSchema:
    total_agent_steps: int = 1_000_000
    eval_every: int = 100_000  # agent-steps; 0 = evaluate only at the start and the end
    checkpoint_every: int = 100_000  # agent-steps; 0 = only at the end
    device: str = "auto"  # the policy's device (SB3): auto | cpu | cuda | cuda:N
    compile: bool = False  # torch.compile the policy network
    progress: bool = True
    threads: Optional[int] = None  # torch threads; null = torch's default


@dataclass
class EvalSchema:
    seeds: int = 3
    steps: int = 3600
    demand: DemandSchema = field(default_factory=DemandSchema)
    baselines: List[str] = field(default_factory=lambda: ["fixed_time", "max_pressure"])


@dataclass
class TrainAppSchema:
    scenario: ScenarioSchema = MISSING
    engine: EngineSchema = MISSING
    env: EnvSchema = field(default_factory=EnvSchema)  # a node, so register_configs can flag it
    agent: AgentSchema = MISSING
    train: TrainSchema = MISSING
    eval: EvalSchema = MISSING
    baseline_params: Dict[str, Any] = field(default_factory=dict)
    # training under perturbations (configs/perturbation/, envs/incidents/perturbations.py checks it)
    perturbation: Dict[str, Any] = field(default_factory=lambda: {"name": "clean"})
    seed: int = 0
    resume: Optional[str] = None


# nested schemas by the name their annotations carry (`from __future__ import annotations`)
_NESTED = {cls.__name__: cls for cls in (
    ScenarioSchema, EngineSchema, DemandSchema, EnvSchema, AgentSchema, TrainSchema, EvalSchema,
)}


def register_configs() -> None:
    node = OmegaConf.structured(TrainAppSchema)
    # Hydra makes the whole config struct (no new keys); the reward is a {term: weight} mapping
    # that an override such as env.reward={queue:1.0,delay:0.1} extends (weights still typed).
    OmegaConf.set_struct(node.env.reward, False)
    ConfigStore.instance().store(name="train_schema", node=node)


register_configs()


# ---- value checks -------------------------------------------------------------------------------


def _fail(field_path: str, value, reason: str):
    raise ScenarioError(SOURCE, field_path, value, reason)


def _at_least(cfg, path: str, low: float) -> None:
    value = _get(cfg, path)
    if value < low:
        _fail(path, value, f"must be >= {low:g}")


def _in_range(cfg, path: str, low: float, high: float, low_open: bool = False) -> None:
    value = _get(cfg, path)
    if not (low < value <= high if low_open else low <= value <= high):
        _fail(path, value, f"must be in {'(' if low_open else '['}{low:g}, {high:g}]")


def _get(cfg, path: str):
    node = cfg
    for part in path.split("."):
        node = node[part]
    return node


def demand_spec(cfg_demand, path: str) -> DemandSpec:
    """A `DemandSpec` from a config node; its errors name the config path (``eval.demand.mode``)."""
    try:
        return DemandSpec(
            mode=cfg_demand.mode, scale=float(cfg_demand.scale), jitter_s=float(cfg_demand.jitter_s)
        )
    except ScenarioError as error:
        raise ScenarioError(SOURCE, f"{path}.{error.field}", error.value, error.reason) from None


def engine_params(cfg) -> EngineParams:
    params = EngineParams(
        yellow_s=cfg.engine.yellow_s, all_red_s=cfg.engine.all_red_s, min_green_s=cfg.engine.min_green_s,
        halting_speed=cfg.engine.halting_speed, max_vehicles=cfg.engine.max_vehicles,
    )
    try:
        params.validate()
    except ScenarioError as error:
        raise ScenarioError(SOURCE, f"engine.{error.field}", error.value, error.reason) from None
    return params


def observation_names(cfg) -> list[str]:
    """The features the policy sees: ``env.observations``, plus ``intersection_id`` last when the
    agent asks for it (the independent policy reads each row's intersection from it)."""
    names = list(cfg.env.observations)
    return names + [ID_FEATURE] if cfg.agent.intersection_id else names


def _check_keys(node, schema, prefix: str) -> None:
    """Keys the schema does not know. Composition already rejects them, except those added on
    purpose with ``+agent.foo=...``: a typo there would otherwise be silently ignored."""
    known = {f.name: f for f in fields(schema)}
    for key in node:
        path = f"{prefix}{key}"
        if key not in known:
            _fail(path, node[key], f"unknown key; known: {sorted(known)}")
        nested = _NESTED.get(known[key].type)
        if nested is not None and node[key] is not None:
            _check_keys(node[key], nested, f"{path}.")


def perturbation_config(cfg) -> dict | None:
    """The training perturbation as a plain mapping, checked (errors name the field)."""
    if cfg.get("perturbation") is None:
        return None
    plain = OmegaConf.to_container(cfg.perturbation, resolve=True)
    perturbation_from_config(plain, SOURCE)
    return plain


def check_config(cfg) -> None:
    """Value checks a type cannot express; raises `ScenarioError` naming the full field path."""
    _check_keys(cfg, TrainAppSchema, "")
    for path in ("env.copies", "env.decision_interval_s", "env.episode_s", "agent.n_steps",
                 "agent.n_epochs", "train.total_agent_steps", "eval.seeds", "eval.steps"):
        _at_least(cfg, path, 1)
    _at_least(cfg, "agent.batch_size", 2)  # advantage normalisation needs two samples
    for path in ("train.eval_every", "train.checkpoint_every", "agent.ent_coef", "agent.vf_coef", "seed"):
        _at_least(cfg, path, 0)
    if cfg.env.episode_s % cfg.env.decision_interval_s:
        _fail("env.episode_s", cfg.env.episode_s,
              f"must be a multiple of env.decision_interval_s ({cfg.env.decision_interval_s})")
    names = list(cfg.env.observations)
    try:
        check_observation_names(names, SOURCE)
        check_reward_weights(dict(cfg.env.reward), SOURCE)
    except ScenarioError as error:
        raise ScenarioError(SOURCE, f"env.{error.field}", error.value, error.reason) from None
    if ID_FEATURE in names and cfg.agent.intersection_id:
        _fail("env.observations", names,
              f"{ID_FEATURE!r} is appended by the agent (agent.intersection_id=true); remove it here")
    demand_spec(cfg.env.demand, "env.demand")
    demand_spec(cfg.eval.demand, "eval.demand")
    engine_params(cfg)
    perturbation_config(cfg)

    agent = cfg.agent
    if agent.policy not in POLICIES:
        _fail("agent.policy", agent.policy, f"expected one of {list(POLICIES)}")
    if agent.policy == "independent" and not agent.intersection_id:
        _fail("agent.intersection_id", agent.intersection_id,
              "the independent policy picks each row's weights from the intersection_id feature")
    if agent.activation not in ACTIVATIONS:
        _fail("agent.activation", agent.activation, f"expected one of {list(ACTIVATIONS)}")
    for k, width in enumerate(agent.net_arch):
        if width < 1:
            _fail(f"agent.net_arch[{k}]", width, "layer widths must be >= 1")
    _in_range(cfg, "agent.gamma", 0.0, 1.0, low_open=True)
    _in_range(cfg, "agent.gae_lambda", 0.0, 1.0)
    for path in ("agent.learning_rate", "agent.clip_range", "agent.max_grad_norm", "agent.reward_scale"):
        if _get(cfg, path) <= 0:
            _fail(path, _get(cfg, path), "must be > 0")
    if agent.target_kl is not None and agent.target_kl <= 0:
        _fail("agent.target_kl", agent.target_kl, "must be > 0 or null")

    device = cfg.train.device
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        _fail("train.device", device, "expected auto, cpu, cuda or cuda:N")
    if cfg.train.threads is not None and cfg.train.threads < 1:
        _fail("train.threads", cfg.train.threads, "must be >= 1 or null")

    for k, name in enumerate(cfg.eval.baselines):
        if name not in CONTROLLERS:
            _fail(f"eval.baselines[{k}]", name, f"unknown controller; known: {sorted(CONTROLLERS)}")


__all__ = [
    "AgentSchema", "DemandSchema", "EngineSchema", "EnvSchema", "EvalSchema", "ScenarioSchema",
    "TrainAppSchema", "TrainSchema", "check_config", "demand_spec", "engine_params", "observation_names",
]
