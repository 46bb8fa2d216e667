"""Multi-agent PPO on TorchRL's pieces, entirely on the env's device (train.py, ``trainer=torchrl``).

The env is `envs.rl.torchrl_env.TrafficSignalTorchRLEnv` (B copies, one agent group of I
intersections, autoreset inside the step); the networks are `torchrl.modules.MultiAgentMLP`s (see
`agents.ppo.torchrl_policy` for ``ppo_shared`` / ``ppo_independent`` / ``mappo``). One iteration:
``agent.n_steps`` decisions of every copy (``env.step_and_maybe_reset``), GAE
(`torchrl.objectives.value.functional.vec_generalized_advantage_estimate`; truncated episodes
bootstrap from the true last observation in ``"next"``), then ``agent.n_epochs`` epochs of clipped
PPO on minibatches of ``agent.batch_size`` agent-steps (rounded to whole (copy, step) samples of
all I intersections, as the centralised and per-intersection networks need them together).

No host reads in the loop: actions are sampled with the Gumbel-max trick from the masked logits and
the clipped loss is our own (SB3's: l2 value loss, per-minibatch advantage normalisation; it and
the update are in `agents.ppo.torchrl_update`), because TorchRL's `MaskedCategorical` sampling
and `ClipPPOLoss`' entropy each read a ``isfinite().all()`` back to the host per call (and the
`GAE` module a NaN check per rollout).
``torchrl.loss=clip_ppo`` runs TorchRL's `ClipPPOLoss` (+ `ProbabilisticActor` /
`MaskedCategorical`) on the same data instead. Losses, training-episode metrics (the metrics hub's,
via the core's ``info["episode"]``) and returns are summed on the device and read back in one
copy every ``torchrl.log_every_rollouts`` iterations. What remains in the loop is the env's own:
its action check, the core's ``done.any()`` and `step_and_maybe_reset`'s ``any_done``.

Logging (TensorBoard ``RUN/tb``, ``RUN/progress.csv``, tqdm on stderr), periodic evaluation
(`agents.ppo.periodic_eval.Evaluator`), checkpoints (``checkpoints/{last,best}.pt``) and resume
follow `agents.ppo.sb3_trainer` and use its tag names; what the two trainers share (scenarios,
resume checks, the run's books) is `agents.ppo.run_setup`'s.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from agents.ppo.atomic_files import set_rng_state
from agents.ppo.config import (
    LOSSES, SOURCE, TorchRLTrainerConfig, check_config, demand_spec, engine_params, observation_names,
    perturbation_config,
)
from agents.ppo.deciding import check_deciding, deciding_intersections
from agents.ppo.interrupts import interrupts_deferred, saved_on_interrupt
from agents.ppo.periodic_eval import PRIMARY, Evaluator
from agents.ppo.run_record import rewrite_run_config
from agents.ppo.run_messages import (
    eval_line, say, say_baselines, say_compiling, say_interrupted, say_single_action_agents, whole_rollouts,
)
from agents.ppo.run_setup import (
    RunRecord, carry_best_checkpoint, check_architecture, check_evaluation, check_layout, check_minibatches,
    load_scenarios, say_resumed, start_demand,
)
from agents.ppo.torchrl_logging import EpisodeStats, RunLog
from agents.ppo.torchrl_policy import (
    GreedyPolicy, TorchRLPolicyController, build_networks, check_network_spec, log_softmax_actions, masked_logits,
    network_spec, read_torchrl_checkpoint, resolve_centralised, save_torchrl_checkpoint,
)
from agents.ppo.torchrl_update import ACTION, LOGP, MASK, OBS, PPOUpdate
from envs.errors import ConfigError
from envs.rl.torchrl_env import GROUP, TrafficSignalTorchRLEnv


def trainer_options(cfg: DictConfig) -> TorchRLTrainerConfig:
    given = cfg.get("torchrl", None) or {}
    given = OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else dict(given)
    known = {f.name for f in fields(TorchRLTrainerConfig)}
    for key in given:
        if key not in known:
            raise ConfigError(SOURCE, f"torchrl.{key}", given[key], f"unknown key; known: {sorted(known)}")
    opts = TorchRLTrainerConfig(**given)
    if opts.loss not in LOSSES:
        raise ConfigError(SOURCE, "torchrl.loss", opts.loss, f"expected one of {list(LOSSES)}")
    if opts.log_every_rollouts < 1:
        raise ConfigError(SOURCE, "torchrl.log_every_rollouts", opts.log_every_rollouts, "must be >= 1")
    return opts


class TorchRLTrainer:
    def __init__(self, cfg: DictConfig, run_dir: Path) -> None:
        check_config(cfg)
        self.opts = opts = trainer_options(cfg)
        self.cfg, self.run_dir, agent = cfg, Path(run_dir), cfg.agent
        if cfg.train.threads is not None:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        train_scenario, eval_scenario = load_scenarios(cfg)
        rewrite_run_config(run_dir, cfg)  # env.copies as train.max_agents_per_step left it
        self.env = env = TrafficSignalTorchRLEnv(
            scenario=train_scenario, copies=cfg.env.copies, device=cfg.engine.device,
            decision_interval_s=cfg.env.decision_interval_s, episode_s=cfg.env.episode_s,
            action_mode=cfg.env.action_mode, green_durations_s=tuple(cfg.env.green_durations_s),
            observations=observation_names(cfg), reward=dict(cfg.env.reward), normalise=cfg.env.normalise,
            demand=demand_spec(cfg.env.demand, "env.demand"), demand_pool=cfg.env.demand_pool,
            engine=engine_params(cfg), compile_engine=cfg.engine.compile,
            perturbation=perturbation_config(cfg), probes=dict(cfg.env.probes))
        core = self.core = env.core
        self.device = env.device if cfg.train.device == "auto" else torch.device(cfg.train.device)
        self.I = core.num_intersections
        # agent-steps count the deciding intersections' decisions (agents.ppo.deciding): D of the I
        self.D = check_deciding(core.layout.action_phase, str(cfg.scenario.name))
        deciding = deciding_intersections(core.layout.action_phase)
        self.episodes = EpisodeStats(core, cfg.env.decision_interval_s, deciding)
        self.spec = network_spec(agent, self.I, core.obs_size, core.max_actions,
                                 resolve_centralised(agent.name, opts.centralised_critic))
        self.policy_net, self.value_net = build_networks(self.spec, self.device)
        self.params = params = [*self.policy_net.parameters(), *self.value_net.parameters()]
        # SB3's Adam. foreach: one multi-tensor kernel per update rule instead of a Python loop over
        # the 12 tensors (torch picks it on CUDA only; on the CPU it gives the same bits, faster)
        self.optimizer = torch.optim.Adam(params, lr=agent.learning_rate, eps=1e-5, foreach=True)
        self.ppo_update = PPOUpdate(agent, self.policy_net, self.value_net, self.optimizer, params, self.I,
                                    self.device, opts.loss, deciding)
        self.meta_in = self.rng_in = None
        self.num_timesteps = 0
        if cfg.resume is not None:
            self._resume(str(cfg.resume))
            say_resumed(str(cfg.resume), self.num_timesteps, self.meta_in, cfg)
        check_minibatches(agent, cfg.env.copies, self.D, "torchrl", self.I)  # after a resume's checks (name the key)
        self.start_steps, self.bar = self.num_timesteps, None
        self.end = whole_rollouts(int(cfg.train.total_agent_steps), self.num_timesteps,
                                  agent.n_steps * core.copies * self.D,
                                  owed=self.meta_in is not None and RunRecord(self.meta_in).final_evaluation_owed(
                                      self.num_timesteps))
        say_single_action_agents(core.layout.action_phase, agent.n_steps * core.copies * self.D)
        say_compiling(cfg.engine.compile)  # every check passed: the reset below steps the engine
        # the next reset draws training demand from here on
        start_demand(core, env.set_seed, cfg.seed, self.meta_in, None if cfg.resume is None else str(cfg.resume))
        self.td = env.reset()
        self.evaluator = Evaluator(eval_scenario, demand_spec(cfg.eval.demand, "eval.demand"), cfg.eval.seeds,
                                   cfg.eval.steps, engine_params(cfg), compile=cfg.engine.compile)
        self.record = RunRecord(self.meta_in)  # eval history, best travel time, wall clock (restarted by run())
        self.iterations = self.iterations_since_log = 0
        self.rollout_rate = 0.0
        # run()'s log, its evaluation and checkpoint seconds (left out of the throughput), the last step logged
        self.log: RunLog | None = None
        self.busy, self.logged_at = 0.0, self.num_timesteps

    # ---- resume / checkpoints -------------------------------------------------------------------
    def _resume(self, path: str) -> None:
        data = read_torchrl_checkpoint(path, self.device)
        meta = data["meta"]
        check_architecture(path, meta, self.cfg.agent)
        # the env layout first: a changed scenario or observation shows as the key the user changed
        check_layout(path, meta, self.core.describe(), self.cfg)
        check_evaluation(path, meta, self.cfg)
        check_network_spec(path, meta["networks"], self.spec)
        self.policy_net.load_state_dict(data["actor"])
        self.value_net.load_state_dict(data["critic"])
        if data["optimizer"] is not None:
            self.optimizer.load_state_dict(data["optimizer"])
            for group in self.optimizer.param_groups:  # this config's learning rate (and foreach, as built)
                group["lr"], group["foreach"] = self.cfg.agent.learning_rate, True
        self.num_timesteps, self.meta_in = int(data["num_timesteps"]), meta
        self.ppo_update.n_updates = int(meta.get("n_updates", 0))  # train/n_updates carries on, as SB3's
        self.rng_in = data.get("rng")  # restored just before the training loop (run())

    def meta(self) -> dict:
        return self.record.meta(self.cfg, self.core, self.num_timesteps, self.evaluator, trainer="torchrl",
                                torchrl=asdict(self.opts), networks=self.spec, n_updates=self.ppo_update.n_updates)

    def checkpoint(self, name: str) -> Path:
        return save_torchrl_checkpoint(self.run_dir / "checkpoints" / name, actor=self.policy_net,
                                       critic=self.value_net, optimizer=self.optimizer,
                                       num_timesteps=self.num_timesteps, meta=self.meta())

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM: save last.pt (a rollout cut short is not counted) and say how to resume.
        An update that ran to its end before the interrupt took effect is saved, and its row written
        where one was due (the evaluation due after it is the resumed run's first)."""
        if self.bar is not None:
            self.bar.close()
        if self.log is not None and self.num_timesteps > self.logged_at and self.log_due():
            self.log_rollout()
        say_interrupted(self.num_timesteps, self.checkpoint("last.pt"))

    def controller(self) -> TorchRLPolicyController:
        return TorchRLPolicyController(policy=GreedyPolicy(self.policy_net),
                                       meta={"env": self.core.describe(), "networks": self.spec},
                                       deterministic=not self.opts.eval_stochastic)

    # ---- the loop body: rollout, then advantages and update (torchrl_update; no host reads) -----
    def collect(self):
        """``agent.n_steps`` decisions of every copy: a TensorDict ``[B, T]``."""
        frames, td = [], self.td
        with torch.no_grad():
            for _ in range(self.cfg.agent.n_steps):
                obs, mask = td.get(OBS).to(self.device), td.get(MASK).to(self.device)
                logits = masked_logits(self.policy_net(obs), mask)
                gumbel = -torch.empty_like(logits).exponential_().log()  # Gumbel-max: a categorical draw
                action = (logits + gumbel).argmax(-1)
                td.set(ACTION, action.to(self.env.device))
                logp = log_softmax_actions(logits).gather(-1, action.unsqueeze(-1)).squeeze(-1)
                td.set(LOGP, logp.to(self.env.device))
                out, td = self.env.step_and_maybe_reset(td)
                self.episodes.observe(out.get(("next", GROUP, "reward")).squeeze(-1), self.env.last_info)
                frames.append(out)
        self.td = td
        return torch.stack(frames, 1).to(self.device)

    def iteration(self) -> None:
        """One rollout and its update, on the device (the loop body)."""
        started, rollout = time.perf_counter(), self.cfg.agent.n_steps * self.core.copies * self.D
        data = self.collect()
        self.rollout_rate = rollout / max(time.perf_counter() - started, 1e-9)
        # the rollout counts once learnt from, all epochs: an interrupt in the update waits for its end
        with interrupts_deferred():
            self.num_timesteps += rollout
            self.ppo_update.advantages(data)
            self.ppo_update.update(data)
            self.iterations += 1
            self.iterations_since_log += 1

    # ---- logging and evaluation (outside the loop body) --------------------------------------
    def log_due(self) -> bool:
        """Every N-th rollout of the run, counted from its start (a resumed run logs where the
        uninterrupted one would have), and the last."""
        rollouts = self.num_timesteps // (self.cfg.agent.n_steps * self.core.copies * self.D)
        return rollouts % self.opts.log_every_rollouts == 0 or self.num_timesteps >= self.end

    def log_rollout(self) -> None:
        wall = self.record.elapsed()
        self.log_training(self.log, {
            "time/rollout_agent_steps_per_s": self.rollout_rate, "time/iterations": self.iterations,
            "time/agent_steps_per_s": (self.num_timesteps - self.start_steps) / max(wall - self.busy, 1e-9),
            "time/fps": (self.num_timesteps - self.start_steps) / max(wall, 1e-9),
            "time/time_elapsed": wall})
        self.iterations_since_log = 0
        self.log.dump(self.num_timesteps)
        self.logged_at = self.num_timesteps

    def log_training(self, log: RunLog, rates: dict) -> None:
        statistics = self.ppo_update.statistics(self.iterations_since_log)
        for key, value in {**statistics, **self.episodes.read(), **rates}.items():
            log.record(key, value)

    def evaluate(self, log: RunLog, bar) -> dict:
        metrics = self.evaluator.evaluate(self.controller())
        entry, reductions, improved = self.record.evaluation(log.record, self.evaluator, metrics, self.num_timesteps)
        if improved:
            self.checkpoint("best.pt")
        travel = entry[PRIMARY]
        say(eval_line(self.num_timesteps, travel, reductions), bar)
        bar.set_postfix_str(f"eval tt {travel:.1f} s")
        return entry

    def run(self) -> dict:
        cfg = self.cfg
        every, total = cfg.train, self.end  # the first whole rollout past train.total_agent_steps
        self.evaluator.run_baselines(list(cfg.eval.baselines),
                                     OmegaConf.to_container(cfg.baseline_params, resolve=True))
        say_baselines(self.evaluator.baselines, PRIMARY, cfg.eval.seeds)
        self.log = log = RunLog(self.run_dir, self.start_steps if cfg.resume is not None else None)
        self.bar = bar = tqdm(total=total, initial=self.num_timesteps, unit="agent-step", unit_scale=True,
                              file=sys.stderr, disable=not cfg.train.progress, mininterval=1.0,
                              desc=f"{self.core.scenario.name} {cfg.agent.name} (torchrl)")
        self.busy, last_eval = 0.0, -1
        self.record.start_clock()

        def crossed(before: int, step: int) -> bool:
            return bool(step) and self.num_timesteps // step > max(before, self.start_steps) // step

        # not again on a resume at 0 (sb3_callback); a resume owes the evaluation due at its step when an
        # interrupt during that update saved the checkpoint before it, and one at its end (`whole_rollouts`
        # lets it start there only then) owes its final evaluation, its only work
        ends_here = self.num_timesteps >= total
        if (self.num_timesteps == 0 and not self.record.history) or ends_here or self.record.evaluation_due(
                self.num_timesteps, every.eval_every):
            started = time.perf_counter()
            self.evaluate(log, bar)
            last_eval, self.busy = self.num_timesteps, self.busy + time.perf_counter() - started
            log.dump(self.num_timesteps)
        self.logged_at = self.num_timesteps
        last_ckpt = self.num_timesteps
        if self.meta_in is not None:  # here, once nothing can refuse the run: a copied best.pt makes the folder a run's
            carry_best_checkpoint(str(cfg.resume), self.run_dir, self.meta_in)
        if self.rng_in is not None:
            set_rng_state(self.rng_in)  # the random state at the save: the run goes on as it would have
        if ends_here:  # its final evaluation ran above: last.pt holds it, as a run's last update's does
            self.checkpoint("last.pt")
        while self.num_timesteps < total:
            self.iteration()
            bar.update(self.num_timesteps - bar.n)
            final = self.num_timesteps >= total
            if self.log_due():
                self.log_rollout()
            started = time.perf_counter()
            if final or crossed(last_eval, every.eval_every):
                self.evaluate(log, bar)
                last_eval = self.num_timesteps
                log.dump(self.num_timesteps)
            if final or crossed(last_ckpt, every.checkpoint_every):
                self.checkpoint("last.pt")
                last_ckpt = self.num_timesteps
            self.busy += time.perf_counter() - started
        bar.close()
        log.writer.close()
        wall = self.record.elapsed()
        return {
            "policy": GreedyPolicy(self.policy_net), "start_timesteps": self.start_steps,
            "num_timesteps": self.num_timesteps, "best_eval_travel_time": self.record.best,
            "eval_history": self.record.history,
            "baselines": {name: float(values[PRIMARY].mean()) for name, values in self.evaluator.baselines.items()},
            "agent_steps_per_s": (self.num_timesteps - self.start_steps) / max(wall - self.busy, 1e-9),
            "checkpoints": self.run_dir / "checkpoints",
        }


def train_torchrl(cfg: DictConfig, run_dir: Path) -> dict:
    """Train per `cfg` (the composed train.yaml, plus an optional ``torchrl`` node) into `run_dir`."""
    trainer = TorchRLTrainer(cfg, Path(run_dir))
    with saved_on_interrupt(trainer.interrupted):
        return trainer.run()


__all__ = ["TorchRLTrainer", "train_torchrl", "trainer_options"]
