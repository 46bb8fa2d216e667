"""PPO training of signal controllers (train.py's body): env, model, logging, checkpoints.

MaskablePPO (sb3-contrib) learns through `envs.rl.sb3_env.IntersectionVecEnv`, whose
sub-environments are the (copy, intersection) pairs, narrowed to the intersections that decide
(`learning_env`, `agents.ppo.deciding`), so SB3's ``num_timesteps`` counts agent-steps (one
decision of an intersection with two or more signal phases). ``agent.policy=shared`` is SB3's MLP policy, one set
of parameters for every intersection; ``independent`` is `agents.ppo.indexed_policy`. What happens
around the rollouts and updates (logging, evaluation, checkpoints) is `agents.ppo.sb3_callback`'s;
what this trainer shares with the TorchRL one (scenarios, resume checks, the run's books) is
`agents.ppo.run_setup`'s.

TensorBoard (``RUN/tb/``; the same scalars in ``RUN/progress.csv``), by prefix:

- ``rollout/<metric>``: the metrics hub's figures (``travel_time/mean``, ``travel_time/p95``,
  ``throughput``, ``queue/halting``, ... see `envs.evaluation.metrics`) of the training episodes that ended
  during the rollout (train-split demand, stochastic actions), mean over those episodes;
  ``rollout/ep_rew_mean`` is the episode return per intersection that decides (unscaled reward),
  ``rollout/episodes`` how many ended.
- ``eval/<metric>``: the current policy, deterministic, on the held-out eval-split demands
  (mean over ``eval.seeds``); ``eval/reduction_vs_<baseline>``: travel-time reduction in % vs
  each baseline, paired per seed; ``eval/best_travel_time``: the best so far.
- ``baseline/<name>/<metric>``: the baselines on the same demands (run once, re-logged at
  every evaluation so that they draw as reference lines).
- ``train/*`` (PPO losses, entropy, approx_kl, clip_fraction, explained_variance, ...) and
  ``time/fps``: SB3's own. ``time/agent_steps_per_s``: agent-steps per second of training
  (rollouts + updates, evaluation and checkpointing excluded) since the run (or resume)
  started; ``time/rollout_agent_steps_per_s``: the last rollout's collection alone.

Checkpoints (``RUN/checkpoints/``, see `agents.ppo.policy`): ``last.zip`` every
``train.checkpoint_every`` agent-steps, at the end and on Ctrl-C / SIGTERM, ``best.zip`` at each
evaluation that lowers the eval mean travel time.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import VecEnvWrapper
from torch import nn

from agents.ppo.deciding import DecidingRows, check_deciding, deciding_intersections
from agents.ppo.indexed_policy import IndexedActorCriticPolicy
from agents.ppo.atomic_files import set_rng_state
from agents.ppo.policy import load_policy, read_meta, read_rng
from agents.ppo.config import check_config, demand_spec, engine_params, observation_names, perturbation_config
from agents.ppo.interrupts import saved_on_interrupt
from agents.ppo.periodic_eval import PRIMARY, Evaluator
from agents.ppo.run_record import rewrite_run_config
from agents.ppo.run_messages import say_baselines, say_compiling, say_single_action_agents, whole_rollouts
from agents.ppo.run_setup import (
    RunRecord, carry_best_checkpoint, check_architecture, check_evaluation, check_layout, check_minibatches,
    load_scenarios, say_resumed, start_demand,
)
from agents.ppo.sb3_callback import TrainingCallback
from agents.ppo.sb3_logging import run_logger
from envs.scenario import Scenario
from envs.rl.sb3_env import IntersectionVecEnv
from envs.rl.signal_env import to_numpy as _numpy

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
PPO_KEYS = ("learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range",
            "ent_coef", "vf_coef", "max_grad_norm", "target_kl", "normalize_advantage")


class ScaledReward(VecEnvWrapper):
    """Multiplies rewards by ``agent.reward_scale`` for learning: queue rewards of tens of vehicles
    would make value targets of hundreds, whose gradients dominate the clipped total gradient."""

    def __init__(self, venv, scale: float) -> None:
        super().__init__(venv)
        self.scale = scale

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        return obs, rewards * self.scale, dones, infos


# ---- building blocks ------------------------------------------------------------------------------


def build_env(cfg: DictConfig, scenario: Scenario) -> IntersectionVecEnv:
    return IntersectionVecEnv(
        copies=cfg.env.copies, scenario=scenario, decision_interval_s=cfg.env.decision_interval_s,
        action_mode=cfg.env.action_mode, green_durations_s=tuple(cfg.env.green_durations_s),
        episode_s=cfg.env.episode_s, observations=observation_names(cfg),
        reward=dict(cfg.env.reward), normalise=cfg.env.normalise,
        demand=demand_spec(cfg.env.demand, "env.demand"), demand_pool=cfg.env.demand_pool, split="train",
        engine=engine_params(cfg), compile=cfg.engine.compile, perturbation=perturbation_config(cfg),
        probes=dict(cfg.env.probes),
    )


def learning_env(cfg: DictConfig, venv: IntersectionVecEnv) -> tuple[VecEnvWrapper, int]:
    """What MaskablePPO learns through, and how many intersections decide: the (copy, intersection) pairs
    of the intersections that decide (agents.ppo.deciding; every pair where all do), rewards scaled.
    SB3 counts, and learns from, those pairs alone."""
    layout = venv.core.layout
    deciding = check_deciding(layout.action_phase, str(cfg.scenario.name))
    rows = venv if deciding == venv.num_intersections else DecidingRows(
        venv, _numpy(deciding_intersections(layout.action_phase)))
    return ScaledReward(rows, cfg.agent.reward_scale), deciding


def ppo_hyperparameters(cfg: DictConfig) -> dict:
    return {key: cfg.agent[key] for key in PPO_KEYS}


def build_model(cfg: DictConfig, venv) -> MaskablePPO:
    agent = cfg.agent
    policy_kwargs = {
        "net_arch": list(agent.net_arch), "activation_fn": ACTIVATIONS[agent.activation],
        "ortho_init": agent.ortho_init,
    }
    if agent.policy == "independent":
        policy = IndexedActorCriticPolicy
        policy_kwargs["num_intersections"] = venv.get_attr("num_intersections")[0]
    else:
        policy = "MlpPolicy"
    return MaskablePPO(policy, venv, policy_kwargs=policy_kwargs, seed=cfg.seed, device=cfg.train.device,
                       verbose=0, **ppo_hyperparameters(cfg))


def resume_model(cfg: DictConfig, venv, core) -> tuple[MaskablePPO, dict]:
    """The checkpoint's model, on `venv`, with this config's PPO hyperparameters; the policy's
    architecture and observation layout must be the checkpoint's."""
    path = str(cfg.resume)
    meta = read_meta(path)
    check_architecture(path, meta, cfg.agent)
    check_layout(path, meta, core.describe(), cfg)
    check_evaluation(path, meta, cfg)
    # the env's observation space in place of the saved one: check_layout above held the observations'
    # names and sizes to the checkpoint's; their declared bounds (a Box's low/high, which the policy
    # never reads) may have been revised since it was written, and SB3 refused a different Box
    model, _ = load_policy(path, env=venv, device=cfg.train.device, seed=cfg.seed,
                           custom_objects={"observation_space": venv.observation_space}, **ppo_hyperparameters(cfg))
    meta = {**meta, "rng": read_rng(path)}  # restored just before learning continues (train())
    # SB3's own rollout state (SB3's convention, not ours): the saved observation belongs to
    # the old env, so learn() must reset the env first
    model._last_obs = None
    return model, meta


def _compile_policy(model: MaskablePPO) -> None:
    """torch.compile the networks in place (state-dict keys, hence checkpoints, unchanged)."""
    extractor = model.policy.mlp_extractor
    for module in (extractor.policy_net, extractor.value_net, model.policy.action_net, model.policy.value_net):
        module.compile()


# ---- the run --------------------------------------------------------------------------------------


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Train per `cfg` (the composed train.yaml), writing into `run_dir`. Returns a summary."""
    check_config(cfg)
    run_dir = Path(run_dir)
    if cfg.train.threads is not None:
        torch.set_num_threads(cfg.train.threads)
    train_scenario, eval_scenario = load_scenarios(cfg)
    rewrite_run_config(run_dir, cfg)  # env.copies as train.max_agents_per_step left it
    venv = build_env(cfg, train_scenario)
    core = venv.core
    env, deciding = learning_env(cfg, venv)
    if cfg.resume is not None:
        model, meta = resume_model(cfg, env, core)
        say_resumed(str(cfg.resume), model.num_timesteps, meta, cfg)
    else:
        model, meta = build_model(cfg, env), None
    check_minibatches(cfg.agent, cfg.env.copies, deciding, "sb3", core.num_intersections)  # after a resume's checks
    start_steps = int(model.num_timesteps)
    remaining = int(cfg.train.total_agent_steps) - start_steps
    # a checkpoint at the total that owes its final evaluation ends here: learn() trains no rollout, and the
    # callback evaluates (its start, or its end's final evaluation) and saves last.zip
    end = whole_rollouts(int(cfg.train.total_agent_steps), start_steps, model.n_steps * env.num_envs,
                         owed=meta is not None and RunRecord(meta).final_evaluation_owed(start_steps))
    say_single_action_agents(core.layout.action_phase, model.n_steps * env.num_envs)
    say_compiling(cfg.engine.compile)  # every check passed: the baselines' and training's steps come next
    start_demand(core, env.seed, cfg.seed, meta, cfg.resume)  # the next reset draws training demand from here on
    if cfg.train.compile:
        _compile_policy(model)
    evaluator = Evaluator(eval_scenario, demand_spec(cfg.eval.demand, "eval.demand"), cfg.eval.seeds,
                          cfg.eval.steps, engine_params(cfg), compile=cfg.engine.compile)
    evaluator.run_baselines(list(cfg.eval.baselines), OmegaConf.to_container(cfg.baseline_params, resolve=True))
    say_baselines(evaluator.baselines, PRIMARY, cfg.eval.seeds)
    # RUN/tb/ only now, as the TorchRL trainer: a run stopped during the baselines leaves no tb/ that would
    # make the folder an earlier run's to the next train.py
    model.set_logger(run_logger(run_dir, start_steps if cfg.resume is not None else None))

    callback = TrainingCallback(cfg, run_dir, core, evaluator, meta)
    callback.total = end  # the progress bar's
    if meta is not None:  # here, once nothing can refuse the run: a copied best.zip makes the folder a run's
        carry_best_checkpoint(str(cfg.resume), run_dir, meta)
    if meta is not None and meta.get("rng") is not None:
        set_rng_state(meta["rng"])  # the random state at the save: the run goes on as it would have
    # leaving update_interrupts also ends a deferral that learn() raised out of (no save then)
    with callback.update_interrupts, saved_on_interrupt(callback.interrupted):
        model.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=False)
    return {
        "model": model,
        "start_timesteps": start_steps,
        "num_timesteps": int(model.num_timesteps),
        "best_eval_travel_time": callback.record.best,
        "eval_history": callback.record.history,
        "baselines": {name: float(values[PRIMARY].mean()) for name, values in evaluator.baselines.items()},
        "agent_steps_per_s": callback.agent_steps_per_s(),
        "checkpoints": run_dir / "checkpoints",
    }


__all__ = ["ScaledReward", "build_env", "build_model", "learning_env", "train"]
