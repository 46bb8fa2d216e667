"""Structured configs of train.py and evaluate.py: the schema every composed config must match,
and the one place its defaults are written.

The dataclasses below (and those they reuse: `EnvConfig` from envs/rl/env_config.py,
`EngineParams` from envs/engine/state.py, `DemandSpec` from envs/scenario/splits.py, the
evaluation and detection configs of envs/evaluation/config.py) are registered with Hydra's
ConfigStore as ``train_schema`` (first entry of ``configs/train.yaml``'s defaults) and
``evaluate_schema`` (``configs/evaluate.yaml``). The ``controller`` group's options are the
classical controllers' own dataclasses and the ``perturbation`` node is `Perturbation`'s, both
made Hydra-ready by `agents.ppo.schema.schema_of`. Their field defaults are the configs'
defaults: a YAML file under ``configs/`` holds only what its preset changes. Composition rejects a wrong key
or a value of the wrong type, naming the key (``agent.n_steps``), before anything runs. What a type cannot
say (ranges, names from a registry, enums) `check_config` (evaluate.py: `check_evaluate_config`) checks
next, raising `ConfigError` with the field's full path, still before any scenario is loaded.

Groups mirror the code: ``scenario`` / ``engine`` (shared with evaluate.py), ``env`` (envs/rl/env_config.py), ``agent``
(PPO and the policy, agents/ppo/indexed_policy.py), ``train`` (the run), ``eval`` (periodic evaluation on held-out
demand), ``controller`` (a classical controller's parameters: ``controller@baseline_params.NAME`` in train.yaml,
``controller@controller_params.NAME`` in evaluate.yaml), ``perturbation``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from agents.classical import CONTROLLERS
from agents.ppo.controller_params import check_param_names
from agents.ppo.evaluate_options import check_task_options
from agents.ppo.schema import schema_of
from agents.ppo.value_checks import SOURCE, at_least, check_keys, fail, in_range, positive
from envs.engine.state import EngineParams
from envs.errors import ConfigError
from envs.evaluation.config import DetectionConfig, EvalEpisodes, EvaluationConfig
from envs.rl.actions import check_action_config, check_durations_read
from envs.rl.env_config import EnvConfig, check_demand_pool, check_reward_weights
from envs.rl.features import check_observation_names
from envs.rl.probe_features import check_probe_observations
from envs.incidents.perturbations import Perturbation, perturbation_from_config
from envs.incidents.probes import probes_from_config
from envs.scenario import given_by_path, reads_no_dataset, unread_seed_of_known
from envs.scenario.network import check_device
from envs.scenario.splits import DemandSpec

POLICIES = ("shared", "independent")
ACTIVATIONS = ("tanh", "relu")
ID_FEATURE = "intersection_id"


@dataclass
class ScenarioConfig:
    name: str = MISSING  # a preset (envs/scenario/presets.py) or a dataset (envs/scenario/registry.py)
    seed: int = 0  # demand seed (generated presets only)
    horizon: Optional[int] = None  # cut the flow file at this many seconds (null = keep all)
    # where datasets live; GRIDLIGHT_DATA_DIR or ../shared/datasets when null
    data_dir: Optional[str] = "${oc.env:GRIDLIGHT_DATA_DIR,null}"


@dataclass(frozen=True)
class EngineConfig(EngineParams):
    """The ``engine`` group: `EngineParams`' timing rules, plus where and how the step runs."""

    device: str = "cpu"  # or cuda
    compile: bool = False  # torch.compile the step (faster after a ~30 s compile)


@dataclass
class AgentConfig:
    name: str = MISSING
    policy: str = "shared"  # shared | independent (agents/ppo/indexed_policy.py)
    intersection_id: bool = True  # append the intersection_id feature (last) to env.observations
    net_arch: List[int] = field(default_factory=lambda: [64, 64])  # hidden layers, policy and value nets
    activation: str = "tanh"  # tanh | relu
    ortho_init: bool = True
    n_steps: int = 64  # decisions per sub-env per rollout (rollout = n_steps x copies x intersections)
    batch_size: int = 1024
    n_epochs: int = 10
    learning_rate: float = 1e-3  # grid_4x4, ~100k agent-steps: eval travel time 309 s vs 798 s at SB3's 3e-4
    # per decision (env.decision_interval_s, 5 s by default): an effective horizon of
    # 1 / (1 - 0.95) = 20 decisions, ~100 s at the default interval
    gamma: float = 0.95
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: Optional[float] = None
    normalize_advantage: bool = True
    reward_scale: float = 0.05  # rewards are multiplied by this for learning (keeps value targets O(10))


@dataclass
class TrainConfig:
    total_agent_steps: int = 2_000_000  # SB3 num_timesteps: one per intersection decision
    eval_every: int = 200_000  # agent-steps between evaluations (also at the start and the end); 0 = start/end only
    checkpoint_every: int = 200_000  # agent-steps between checkpoints/last.zip; 0 = only at the end
    device: str = "auto"  # the policy's device: auto | cpu | cuda | cuda:N (the engine's: engine.device)
    compile: bool = False  # torch.compile the policy network (the engine's: engine.compile)
    progress: bool = True  # tqdm progress bar on the console
    threads: Optional[int] = None  # torch threads (null = torch's default; 1 is often fastest on a small CPU)
    max_agents_per_step: Optional[int] = None  # caps env.copies (agents.ppo.run_setup.cap_copies); null: as given


@dataclass
class EvalConfig(EvalEpisodes):
    """Periodic evaluation of the current policy (deterministic actions) on held-out demand:
    the episodes evaluate.py runs (`EvalEpisodes`); the baselines run once on the same demands."""

    baselines: List[str] = field(default_factory=lambda: ["fixed_time", "max_pressure"])  # baseline_params


# the perturbation node: `Perturbation`'s fields and defaults (envs/incidents/perturbation_specs.py)
PerturbationConfig = schema_of(Perturbation)


@dataclass
class TorchRLTrainerConfig:
    """Knobs of the TorchRL trainer that ``agent`` / ``train`` do not have (the ``torchrl`` node)."""

    # None: centralised iff agent.name == "mappo"; true / false forces it
    centralised_critic: Optional[bool] = None  # noqa: UP045 (OmegaConf schema)
    log_every_rollouts: int = 1  # device-side stats are read back (one host copy) every N rollouts
    # True: evaluation episodes sample actions instead of taking the argmax
    eval_stochastic: bool = False
    # "own": the clipped PPO loss written in torchrl_update.py (no host reads); "clip_ppo":
    # torchrl.objectives.ClipPPOLoss with ProbabilisticActor + MaskedCategorical (reads
    # isfinite().all() back to the host at every minibatch)
    loss: str = "own"


LOSSES = ("own", "clip_ppo")

TRAINERS = ("sb3", "torchrl")


@dataclass
class TrainAppConfig:
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baseline_params: Dict[str, Any] = field(default_factory=dict)
    # training under perturbations (configs/perturbation/, envs/incidents/perturbations.py checks it)
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    # sb3: MaskablePPO over the SB3 VecEnv (agents/ppo/sb3_trainer.py); torchrl: the on-device
    # multi-agent PPO over the TorchRL env (agents/ppo/torchrl_trainer.py), also for agent=mappo
    trainer: str = "sb3"
    torchrl: TorchRLTrainerConfig = field(default_factory=TorchRLTrainerConfig)
    seed: int = 0  # torch / numpy seed; training demand samples start at index seed * 1e6
    resume: Optional[str] = None  # a checkpoint (.zip for sb3, .pt for torchrl) to continue from


@dataclass
class EvaluateAppConfig:
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    controller_params: Dict[str, Any] = field(default_factory=dict)  # controller@controller_params.NAME
    # incident | capacity_drop | surge | mixed: also run perturbed, report degradation
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    # signals | incident_detection (incident classifiers on held-out incident seeds; see detection)
    task: str = "signals"
    controllers: List[str] = field(
        default_factory=lambda: ["fixed_time", "fixed_time_webster", "max_pressure", "sotl", "efficient_mp",
                                 "advanced_mp"])
    checkpoint: Any = None  # a train.py checkpoint (or a list): the trained policy joins the table
    checkpoint_max_green_s: Optional[float] = None  # give checkpoint policies the deployment max-green rule too
    deployed: Any = None  # an export.py .onnx (or a list): run by the deployment runtime (agents/deploy/)
    eval: EvaluationConfig = field(default_factory=EvaluationConfig)
    render: bool = False  # true: write episode.gif of the first controller on seed 0
    render_every_s: int = 10  # one frame per this many simulated seconds
    render_fps: int = 8
    detection: DetectionConfig = field(default_factory=DetectionConfig)


# the dataclass each config group is checked against (tests/test_configs.py composes them all)
GROUP_SCHEMAS = {
    "scenario": ScenarioConfig, "engine": EngineConfig, "env": EnvConfig, "agent": AgentConfig,
    "train": TrainConfig, "eval": EvalConfig, "perturbation": PerturbationConfig,
}


def structured(schema) -> DictConfig:
    """`schema` as a typed config node that Hydra can merge presets and overrides into.

    The engine, env and demand dataclasses are frozen (they are the simulator's and the env's
    own arguments); OmegaConf makes such nodes read-only, which would refuse every override, so
    the flag is cleared (the types still hold)."""
    node = OmegaConf.structured(schema)
    _writable(node)
    return node


def _writable(node) -> None:
    OmegaConf.set_readonly(node, None)
    keys = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in keys:
        if OmegaConf.is_missing(node, key):
            continue
        child = node[key]
        if isinstance(child, (DictConfig, ListConfig)):
            _writable(child)


def register_configs() -> None:
    node = structured(TrainAppConfig)
    # Hydra makes the whole config struct (no new keys); the reward is a {term: weight} mapping
    # that an override such as env.reward={queue:1.0,delay:0.1} extends (weights still typed).
    OmegaConf.set_struct(node.env.reward, False)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=node)
    store.store(name="evaluate_schema", node=structured(EvaluateAppConfig))
    for name, controller in CONTROLLERS.items():  # the classes' own parameters and defaults
        store.store(group="controller", name=name, node=schema_of(controller))


register_configs()


# ---- value checks -------------------------------------------------------------------------------


def demand_spec(cfg_demand, path: str) -> DemandSpec:
    """A `DemandSpec` from a config node; its errors name the config path (``eval.demand.mode``)."""
    try:
        return DemandSpec(
            mode=cfg_demand.mode, scale=float(cfg_demand.scale), jitter_s=float(cfg_demand.jitter_s)
        )
    except ConfigError as error:
        raise ConfigError(SOURCE, f"{path}.{error.field}", error.value, error.reason) from None


def engine_params(cfg) -> EngineParams:
    """The simulator's `EngineParams` from ``cfg.engine`` (its timing fields), checked."""
    params = EngineParams(**{f.name: cfg.engine[f.name] for f in fields(EngineParams)})
    try:
        params.validate()
    except ConfigError as error:
        raise ConfigError(SOURCE, f"engine.{error.field}", error.value, error.reason) from None
    return params


def observation_names(cfg) -> list[str]:
    """The features the policy sees: ``env.observations``, plus ``intersection_id`` last when the
    agent asks for it (the independent policy reads each row's intersection from it)."""
    names = list(cfg.env.observations)
    return names + [ID_FEATURE] if cfg.agent.intersection_id else names


def perturbation_config(cfg) -> dict | None:
    """The training perturbation as a plain mapping, checked (errors name the field)."""
    if cfg.get("perturbation") is None:
        return None
    plain = OmegaConf.to_container(cfg.perturbation, resolve=True)
    parts = perturbation_from_config(plain, SOURCE)
    # the detection task's default incident draws from the seed; nothing else does without a part
    no_part = parts.incidents is parts.surge is parts.detectors is None
    if parts.seed and no_part and cfg.get("task") != "incident_detection":
        fail("perturbation.seed", parts.seed, "no part of the perturbation draws from it: choose "
             "perturbation=incident | capacity_drop | surge | detector_faults | mixed")
    nothing = parts.draws_nothing()
    if nothing and cfg.get("task") != "incident_detection":  # ran the clean case only, silently
        fail(f"perturbation.{nothing[0]}", nothing[1], "the perturbation draws nothing: use perturbation=clean")
    return plain


def check_scenario(cfg) -> None:
    """``scenario.horizon``, checked here: the flow file would otherwise be blamed for it; and
    ``scenario.seed``, which only a generated preset reads (a dataset ignored it silently), and
    ``scenario.data_dir`` set for a preset or a path (not from $GRIDLIGHT_DATA_DIR: that one is for
    datasets). A scenario given by path is made absolute here, so a checkpoint records where its files
    are wherever evaluate.py or export.py run from."""
    name, seed, raw = cfg.scenario.name, cfg.scenario.seed, OmegaConf.to_container(cfg.scenario)["data_dir"]
    by_path, no_dataset = given_by_path(name), reads_no_dataset(name)
    unread = unread_seed_of_known(name, seed)  # None for an unknown name: refused below
    if unread:
        fail("scenario.seed", seed, f"{unread} (each episode's demand: env.demand, eval.demand)")
    if cfg.scenario.data_dir is not None and raw != ScenarioConfig.data_dir and no_dataset:  # else ignored
        fail("scenario.data_dir", cfg.scenario.data_dir, f"{name!r} is {no_dataset} and reads no dataset")
    if by_path:
        cfg.scenario.name = str(Path(name).expanduser().resolve())
    horizon = cfg.scenario.horizon
    if horizon is None:
        return
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        fail("scenario.horizon", horizon,
             "must be an integer >= 1 (seconds), or null for the whole flow file")


def check_evaluate_config(cfg) -> None:
    """evaluate.py's value checks, before any work (a GIF or a detection run fails at its end)."""
    check_keys(cfg, EvaluateAppConfig)  # +eval.seed=5 (Hydra's own hint for a typo) ran with the default
    check_task_options(cfg, OmegaConf.structured(EvaluateAppConfig))
    check_device(cfg.engine.device, SOURCE, "engine.device")
    check_scenario(cfg)
    perturbation_config(cfg)
    check_param_names(OmegaConf.to_container(cfg.controller_params, resolve=True), "controller_params",
                      [cfg.detection.controller] if cfg.task == "incident_detection" else list(cfg.controllers))
    positive(cfg, "checkpoint_max_green_s", or_null=True)  # NaN silently switched the rule off
    if cfg.checkpoint_max_green_s is not None and not cfg.checkpoint:  # no policy would read it
        fail("checkpoint_max_green_s", cfg.checkpoint_max_green_s, "applies to the checkpoint= policies; none given")
    counts = ["eval.seeds", "eval.steps"]  # 0 steps would end in NaN metrics
    counts += ["render_every_s", "render_fps"] if cfg.render else []  # 0 fps divided by zero; 0 s wrote no frame
    if cfg.task == "incident_detection":
        counts += [f"detection.{key}" for key in ("train_copies", "copies", "interval_s", "learned.history",
                                                  "learned.hidden", "learned.epochs")]
        in_range(cfg, "detection.target_precision", 0.0, 1.0)
    for path in counts:
        at_least(cfg, path, 1)


def check_config(cfg) -> None:
    """Value checks a type cannot express; raises `ConfigError` naming the full field path."""
    check_keys(cfg, TrainAppConfig)
    check_scenario(cfg)
    for path in ("env.copies", "env.decision_interval_s", "env.episode_s", "agent.n_steps",
                 "agent.n_epochs", "train.total_agent_steps", "eval.seeds", "eval.steps"):
        at_least(cfg, path, 1)
    at_least(cfg, "agent.batch_size", 2)  # advantage normalisation needs two samples
    for path in ("train.eval_every", "train.checkpoint_every", "agent.ent_coef", "agent.vf_coef", "seed"):
        at_least(cfg, path, 0)
    if cfg.seed > 2**32 - 1:  # SB3 seeds numpy's legacy generator with it: a ValueError traceback, past the checks
        fail("seed", cfg.seed, f"must be <= {2**32 - 1} (numpy's seed range, which trainer=sb3 seeds)")
    if cfg.env.episode_s % cfg.env.decision_interval_s:
        fail("env.episode_s", cfg.env.episode_s,
             f"must be a multiple of env.decision_interval_s ({cfg.env.decision_interval_s})")
    names = list(cfg.env.observations)
    probes = probes_from_config(OmegaConf.to_container(cfg.env.probes, resolve=True), SOURCE, "env.probes")
    try:
        check_observation_names(names, SOURCE)
        check_probe_observations(names, probes.p, SOURCE)
        check_reward_weights(dict(cfg.env.reward), SOURCE)
        check_action_config(cfg.env.action_mode, list(cfg.env.green_durations_s), SOURCE)
        check_durations_read(cfg.env.action_mode, list(cfg.env.green_durations_s), SOURCE)
        check_demand_pool(cfg.env.demand_pool, cfg.env.demand.mode, SOURCE)
    except ConfigError as error:
        raise ConfigError(SOURCE, f"env.{error.field}", error.value, error.reason) from None
    if ID_FEATURE in names and cfg.agent.intersection_id:
        fail("env.observations", names,
             f"{ID_FEATURE!r} is appended by the agent (agent.intersection_id=true); remove it here")
    for group in ("env", "eval"):
        demand_spec(cfg[group].demand, f"{group}.demand")
    engine_params(cfg)
    check_device(cfg.engine.device, SOURCE, "engine.device")  # CUDA asked for, none here: say so
    perturbation_config(cfg)
    check_param_names(OmegaConf.to_container(cfg.baseline_params, resolve=True), "baseline_params",
                      list(cfg.eval.baselines))

    if cfg.trainer not in TRAINERS:
        fail("trainer", cfg.trainer, f"expected one of {list(TRAINERS)}")
    if cfg.agent.name == "mappo" and cfg.trainer != "torchrl":
        fail("trainer", cfg.trainer, "agent=mappo (a centralised critic) trains with trainer=torchrl")
    if cfg.trainer == "torchrl" and cfg.train.compile:  # it would be ignored
        fail("train.compile", True, "only trainer=sb3 compiles its policy (engine.compile: the engine, either)")
    if cfg.trainer != "torchrl":  # a torchrl.* option set for another trainer would be ignored
        defaults = asdict(TorchRLTrainerConfig())
        for key, value in cfg.torchrl.items():
            if value != defaults[key]:
                fail(f"torchrl.{key}", value, f"only trainer=torchrl reads it (this run: trainer={cfg.trainer})")
    agent = cfg.agent
    if agent.policy not in POLICIES:
        fail("agent.policy", agent.policy, f"expected one of {list(POLICIES)}")
    if agent.policy == "independent" and not agent.intersection_id:
        fail("agent.intersection_id", agent.intersection_id,
             "the independent policy picks each row's weights from the intersection_id feature")
    if agent.activation not in ACTIVATIONS:
        fail("agent.activation", agent.activation, f"expected one of {list(ACTIVATIONS)}")
    for k, width in enumerate(agent.net_arch):
        if width < 1:
            fail(f"agent.net_arch[{k}]", width, "layer widths must be >= 1")
    in_range(cfg, "agent.gamma", 0.0, 1.0, low_open=True)
    in_range(cfg, "agent.gae_lambda", 0.0, 1.0)
    for path in ("agent.learning_rate", "agent.clip_range", "agent.max_grad_norm", "agent.reward_scale"):
        positive(cfg, path)
    positive(cfg, "agent.target_kl", or_null=True)

    device = cfg.train.device
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        fail("train.device", device, "expected auto, cpu, cuda or cuda:N")
    if device != "auto":
        check_device(device, SOURCE, "train.device")  # cuda asked for, none here: an error, never a CPU run
    for path in ("train.threads", "train.max_agents_per_step"):  # integers: > 0 is >= 1
        positive(cfg, path, or_null=True)

    baselines = list(cfg.eval.baselines)
    for k, name in enumerate(baselines):
        if name not in CONTROLLERS:
            fail(f"eval.baselines[{k}]", name, f"unknown controller; known: {sorted(CONTROLLERS)}")
        if name in baselines[:k]:  # ran twice, one result kept (evaluate.py refuses a repeated controller too)
            fail(f"eval.baselines[{k}]", name, "listed twice: need distinct baselines")


__all__ = ["AgentConfig", "EngineConfig", "EvalConfig", "EvaluateAppConfig", "GROUP_SCHEMAS", "PerturbationConfig",
           "ScenarioConfig", "TrainAppConfig", "TrainConfig", "check_config", "check_evaluate_config", "check_scenario",
           "demand_spec", "engine_params", "observation_names", "structured"]
