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
the clipped loss is written here (SB3's: l2 value loss, per-minibatch advantage normalisation),
because TorchRL's `MaskedCategorical` sampling and `ClipPPOLoss`' entropy each read a
``isfinite().all()`` back to the host per call (and the `GAE` module a NaN check per rollout).
``torchrl.loss=clip_ppo`` runs TorchRL's `ClipPPOLoss` (+ `ProbabilisticActor` /
`MaskedCategorical`) on the same data instead. Losses, training-episode metrics (the metrics hub's,
via the core's ``info["episode"]``) and returns are summed on the device and read back in one
copy every ``torchrl.log_every_rollouts`` iterations. What remains in the loop is the env's own:
its action check, the core's ``done.any()`` and `step_and_maybe_reset`'s ``any_done``.

Logging (TensorBoard ``RUN/tb``, ``RUN/progress.csv``, tqdm on stderr), periodic evaluation
(`agents.ppo.periodic_eval.Evaluator`), checkpoints (``checkpoints/{last,best}.pt``) and resume
follow `agents.ppo.sb3_trainer` and use its tag names.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate
from tqdm import tqdm

from agents.ppo.atomic_files import set_rng_state
from agents.ppo.config import (
    LOSSES, SOURCE, TorchRLTrainerConfig, check_config, demand_spec, engine_params, observation_names,
    perturbation_config,
)
from agents.ppo.interrupts import interrupts_deferred, saved_on_interrupt
from agents.ppo.periodic_eval import PRIMARY, Evaluator
from agents.ppo.run_messages import eval_line, say, say_baselines, say_interrupted, whole_rollouts
from agents.ppo.sb3_trainer import ARCH_KEYS, SAMPLES_PER_SEED, check_layout, load_scenarios
from agents.ppo.torchrl_logging import EpisodeStats, RunLog
from agents.ppo.torchrl_policy import (
    GreedyPolicy, TorchRLPolicyController, build_networks, log_softmax_actions, masked_logits,
    network_spec, read_torchrl_checkpoint, resolve_centralised, save_torchrl_checkpoint,
)
from envs.errors import CheckpointError, ConfigError
from envs.evaluation.metrics import METRIC_NAMES
from envs.rl.torchrl_env import GROUP, TrafficSignalTorchRLEnv

OBS, MASK, ACTION, LOGP = (GROUP, "observation"), (GROUP, "action_mask"), (GROUP, "action"), (GROUP, "action_log_prob")
ADVANTAGE, TARGET = (GROUP, "advantage"), (GROUP, "value_target")
LOSS_KEYS = (OBS, MASK, ACTION, LOGP, ADVANTAGE, TARGET)  # what the own loss reads of a minibatch
TRAIN_STATS = ("policy_gradient_loss", "value_loss", "entropy_loss", "approx_kl", "clip_fraction", "loss")


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
        self.episodes = EpisodeStats(core, cfg.env.decision_interval_s)
        self.I = core.num_intersections
        self.spec = network_spec(agent, self.I, core.obs_size, core.max_actions,
                                 resolve_centralised(agent.name, opts.centralised_critic))
        self.policy_net, self.value_net = build_networks(self.spec, self.device)
        self.params = params = [*self.policy_net.parameters(), *self.value_net.parameters()]
        # SB3's Adam. foreach: one multi-tensor kernel per update rule instead of a Python loop over
        # the 12 tensors (torch picks it on CUDA only; on the CPU it gives the same bits, faster)
        self.optimizer = torch.optim.Adam(params, lr=agent.learning_rate, eps=1e-5, foreach=True)
        self.clip_loss = self._clip_ppo_loss() if opts.loss == "clip_ppo" else None
        self.meta_in = self.rng_in = None
        self.num_timesteps, first_sample = 0, cfg.seed * SAMPLES_PER_SEED
        if cfg.resume is not None:
            first_sample = self._resume(str(cfg.resume))
            say(f"resumed from {cfg.resume} at {self.num_timesteps:,} agent-steps")
        self.start_steps, self.started, self.bar = self.num_timesteps, time.perf_counter(), None
        self.end = whole_rollouts(int(cfg.train.total_agent_steps), self.num_timesteps,
                                  agent.n_steps * core.copies * self.I)
        env.set_seed(first_sample)  # the next reset draws training demand samples from here on
        self.td = env.reset()
        self.evaluator = Evaluator(eval_scenario, demand_spec(cfg.eval.demand, "eval.demand"), cfg.eval.seeds,
                                   cfg.eval.steps, engine_params(cfg), compile=cfg.engine.compile)
        meta = self.meta_in or {}
        self.best = meta.get("best_eval_travel_time", math.inf)
        self.history: list[dict] = list(meta.get("eval_history", []))
        self.wall_before = meta.get("wall_s", 0.0)  # checkpoints older than this key restart at 0
        self.train_sums, self.train_count = torch.zeros(len(TRAIN_STATS), device=self.device), torch.zeros((), device=self.device)
        self.explained = torch.zeros((), device=self.device)
        self.iterations = self.n_updates = self.iterations_since_log = 0
        self.rollout_rate = 0.0

    # ---- resume / checkpoints -------------------------------------------------------------------
    def _resume(self, path: str) -> int:
        data = read_torchrl_checkpoint(path, self.device)
        meta, agent = data["meta"], OmegaConf.to_container(self.cfg.agent, resolve=True)
        for key in ARCH_KEYS:
            if meta["config"]["agent"][key] != agent[key]:
                raise CheckpointError(path, f"agent.{key}", agent[key], f"the checkpoint was trained with "
                                      f"{meta['config']['agent'][key]!r}; resume needs the same")
        if meta["networks"] != self.spec:
            raise CheckpointError(path, "networks", self.spec, f"differs from the checkpoint's {meta['networks']}")
        check_layout(path, meta["env"], self.core.describe())
        self.policy_net.load_state_dict(data["actor"])
        self.value_net.load_state_dict(data["critic"])
        if data["optimizer"] is not None:
            self.optimizer.load_state_dict(data["optimizer"])
            for group in self.optimizer.param_groups:  # this config's learning rate (and foreach, as built)
                group["lr"], group["foreach"] = self.cfg.agent.learning_rate, True
        self.num_timesteps, self.meta_in = int(data["num_timesteps"]), meta
        self.rng_in = data.get("rng")  # restored just before the training loop (run())
        return int(meta["train_next_sample"])

    def meta(self) -> dict:
        return {
            "config": OmegaConf.to_container(self.cfg, resolve=True), "trainer": "torchrl",
            "torchrl": asdict(self.opts), "networks": self.spec, "env": self.core.describe(),
            "num_timesteps": self.num_timesteps, "train_next_sample": self.core.next_sample,
            "best_eval_travel_time": self.best, "eval_history": self.history, "wall_s": self.wall_s(),
            "baselines": {name: {k: float(v.mean()) for k, v in values.items()}
                          for name, values in self.evaluator.baselines.items()},
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def checkpoint(self, name: str) -> Path:
        return save_torchrl_checkpoint(self.run_dir / "checkpoints" / name, actor=self.policy_net,
                                       critic=self.value_net, optimizer=self.optimizer,
                                       num_timesteps=self.num_timesteps, meta=self.meta())

    def interrupted(self) -> None:
        """Ctrl-C or SIGTERM: save last.pt (a rollout cut short is not counted) and say how to resume."""
        if self.bar is not None:
            self.bar.close()
        say_interrupted(self.num_timesteps, self.checkpoint("last.pt"))

    def wall_s(self) -> float:
        """Seconds of training since the first run began (resumes included)."""
        return self.wall_before + time.perf_counter() - self.started

    def controller(self) -> TorchRLPolicyController:
        return TorchRLPolicyController(policy=GreedyPolicy(self.policy_net),
                                       meta={"env": self.core.describe(), "networks": self.spec},
                                       deterministic=not self.opts.eval_stochastic)

    # ---- the loop body: rollout, advantages, update (no host reads) --------------------------
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
                td.set(LOGP, log_softmax_actions(logits).gather(-1, action.unsqueeze(-1)).squeeze(-1).to(self.env.device))
                out, td = self.env.step_and_maybe_reset(td)
                self.episodes.observe(out.get(("next", GROUP, "reward")).squeeze(-1), self.env.last_info)
                frames.append(out)
        self.td = td
        return torch.stack(frames, 1).to(self.device)

    def advantages(self, data) -> None:
        agent = self.cfg.agent
        with torch.no_grad():
            value = self.value_net(data.get(OBS))  # [B, T, I, 1]
            next_value = self.value_net(data.get(("next", *OBS)))
            reward = data.get(("next", GROUP, "reward")) * agent.reward_scale
            done, terminated = data.get(("next", GROUP, "done")), data.get(("next", GROUP, "terminated"))
            adv, target = vec_generalized_advantage_estimate(agent.gamma, agent.gae_lambda, value, next_value,
                                                             reward, done, terminated, time_dim=1)
            data.set((GROUP, "state_value"), value)
            data.set(ADVANTAGE, adv)
            data.set(TARGET, target)
            self.explained += 1 - (target - value).var() / target.var().clamp(min=1e-12)

    def _own_loss(self, batch):
        agent = self.cfg.agent
        logits = masked_logits(self.policy_net(batch.get(OBS)), batch.get(MASK))
        logp_all = log_softmax_actions(logits)
        logp = logp_all.gather(-1, batch.get(ACTION).unsqueeze(-1)).squeeze(-1)  # [N, I], as LOGP
        adv = batch.get(ADVANTAGE).squeeze(-1)
        if agent.normalize_advantage and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        log_ratio = logp - batch.get(LOGP)
        ratio = log_ratio.exp()
        clip = agent.clip_range
        pg = -torch.min(adv * ratio, adv * ratio.clamp(1 - clip, 1 + clip)).mean()
        value_loss = (batch.get(TARGET) - self.value_net(batch.get(OBS))).pow(2).mean()
        entropy = -torch.where(batch.get(MASK), logp_all.exp() * logp_all, 0.0).sum(-1).mean()
        loss = pg - agent.ent_coef * entropy + agent.vf_coef * value_loss
        with torch.no_grad():
            kl = ((ratio - 1) - log_ratio).mean()
            clipped = ((ratio - 1).abs() > clip).float().mean()
        return loss, torch.stack([pg, value_loss, -entropy, kl, clipped, loss]).detach()

    def _clip_ppo_loss(self):
        """TorchRL's ClipPPOLoss on the same networks (``torchrl.loss=clip_ppo``)."""
        from tensordict.nn import TensorDictModule
        from torchrl.modules import MaskedCategorical, ProbabilisticActor, ValueOperator
        from torchrl.objectives import ClipPPOLoss

        agent = self.cfg.agent
        actor = ProbabilisticActor(TensorDictModule(self.policy_net, in_keys=[OBS], out_keys=[(GROUP, "logits")]),
                                   in_keys={"logits": (GROUP, "logits"), "mask": MASK}, out_keys=[ACTION],
                                   distribution_class=MaskedCategorical, return_log_prob=True)
        critic = ValueOperator(self.value_net, in_keys=[OBS], out_keys=[(GROUP, "state_value")])
        loss = ClipPPOLoss(actor, critic, clip_epsilon=agent.clip_range, entropy_coeff=agent.ent_coef,
                           critic_coeff=agent.vf_coef, loss_critic_type="l2",
                           normalize_advantage=agent.normalize_advantage)
        loss.set_keys(action=ACTION, sample_log_prob=LOGP, value=(GROUP, "state_value"),
                      advantage=ADVANTAGE, value_target=TARGET,
                      reward=(GROUP, "reward"), done=(GROUP, "done"), terminated=(GROUP, "terminated"))
        return loss

    def _torchrl_loss(self, batch):
        out = self.clip_loss(batch)
        loss = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
        value_loss = out["loss_critic"].detach() / self.cfg.agent.vf_coef
        return loss, torch.stack([out["loss_objective"].detach(), value_loss, -out["entropy"],
                                  out["kl_approx"], out["clip_fraction"], loss.detach()]).detach()

    def update(self, data) -> None:
        agent = self.cfg.agent
        flat = data.reshape(-1)
        rows, size = flat.shape[0], max(1, agent.batch_size // self.I)
        if self.clip_loss is None:
            # the own loss reads six entries: take them as plain tensors (indexing the TensorDict visits
            # all ~20 of its entries), by index_select (on a CPU ~2x faster than value[index])
            loss_of, columns = self._own_loss, {key: flat.get(key) for key in LOSS_KEYS}
            minibatch = lambda index: {key: value.index_select(0, index) for key, value in columns.items()}  # noqa: E731
        else:
            loss_of, minibatch = self._torchrl_loss, flat.__getitem__
        for _ in range(agent.n_epochs):
            epoch_kl = torch.zeros((), device=self.device)
            for index in torch.randperm(rows, device=self.device).split(size):
                loss, stats = loss_of(minibatch(index))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, agent.max_grad_norm, foreach=True)  # as Adam's
                self.optimizer.step()
                self.train_sums += stats
                self.train_count += 1
                epoch_kl = torch.maximum(epoch_kl, stats[3])
                self.n_updates += 1
            # SB3 stops the epochs once the KL passes 1.5 x target_kl: the one host read of the update,
            # and only when target_kl is set (null by default)
            if agent.target_kl is not None and float(epoch_kl) > 1.5 * agent.target_kl:
                break

    def iteration(self) -> None:
        """One rollout and its update, on the device (the loop body)."""
        started, rollout = time.perf_counter(), self.cfg.agent.n_steps * self.core.copies * self.I
        data = self.collect()
        self.rollout_rate = rollout / max(time.perf_counter() - started, 1e-9)
        # the rollout counts once learnt from, all epochs: an interrupt in the update waits for its end
        with interrupts_deferred():
            self.num_timesteps += rollout
            self.advantages(data)
            self.update(data)
        self.iterations += 1
        self.iterations_since_log += 1

    # ---- logging and evaluation (outside the loop body) --------------------------------------
    def log_training(self, log: RunLog, rates: dict) -> None:
        count = self.train_count.clamp(min=1)
        values = torch.cat([self.train_sums / count, (self.explained / max(self.iterations_since_log, 1)).view(1)])
        values = values.tolist()  # the one host copy of the interval's statistics
        self.train_sums.zero_(), self.train_count.zero_(), self.explained.zero_()
        for name, value in zip(TRAIN_STATS, values):
            log.record(f"train/{name}", value)
        log.record("train/explained_variance", values[-1])
        log.record("train/n_updates", self.n_updates)
        log.record("train/learning_rate", float(self.cfg.agent.learning_rate))
        log.record("train/clip_range", float(self.cfg.agent.clip_range))
        for key, value in {**self.episodes.read(), **rates}.items():
            log.record(key, value)

    def evaluate(self, log: RunLog, bar) -> dict:
        metrics = self.evaluator.evaluate(self.controller())
        reductions = self.evaluator.reductions(metrics)
        for name in METRIC_NAMES:
            log.record(f"eval/{name}", float(metrics[name].mean()))
        for base, values in self.evaluator.baselines.items():
            log.record(f"eval/reduction_vs_{base}", reductions[base])
            for name in METRIC_NAMES:
                log.record(f"baseline/{base}/{name}", float(values[name].mean()))
        travel = float(metrics[PRIMARY].mean())
        self.history.append({"agent_steps": self.num_timesteps, "wall_s": round(self.wall_s(), 1),
                             PRIMARY: travel, **{f"reduction_vs_{k}": v for k, v in reductions.items()}})
        improved = travel < self.best
        self.best = min(self.best, travel)
        log.record("eval/best_travel_time", self.best)
        if improved:
            self.checkpoint("best.pt")
        say(eval_line(self.num_timesteps, travel, reductions), bar)
        bar.set_postfix_str(f"eval tt {travel:.1f} s")
        return self.history[-1]

    def run(self) -> dict:
        cfg = self.cfg
        every, total = cfg.train, self.end  # the first whole rollout past train.total_agent_steps
        self.evaluator.run_baselines(list(cfg.eval.baselines), OmegaConf.to_container(cfg.baseline_params, resolve=True))
        say_baselines(self.evaluator.baselines, PRIMARY, cfg.eval.seeds)
        log = RunLog(self.run_dir)
        self.bar = bar = tqdm(total=total, initial=self.num_timesteps, unit="agent-step", unit_scale=True, file=sys.stderr,
                   disable=not cfg.train.progress, mininterval=1.0, desc=f"{self.core.scenario.name} {cfg.agent.name} (torchrl)")
        self.started, busy, last_eval = time.perf_counter(), 0.0, -1

        def crossed(before: int, step: int) -> bool:
            return bool(step) and self.num_timesteps // step > max(before, self.start_steps) // step

        if self.num_timesteps == 0:
            started = time.perf_counter()
            self.evaluate(log, bar)
            last_eval, busy = 0, busy + time.perf_counter() - started
            log.dump(0)
        last_ckpt = self.num_timesteps
        if self.rng_in is not None:
            set_rng_state(self.rng_in)  # the random state at the save: the run goes on as it would have
        while self.num_timesteps < total:
            self.iteration()
            bar.update(self.num_timesteps - bar.n)
            final = self.num_timesteps >= total
            if self.iterations % max(self.opts.log_every_rollouts, 1) == 0 or final:
                wall = time.perf_counter() - self.started
                self.log_training(log, {
                    "time/rollout_agent_steps_per_s": self.rollout_rate, "time/iterations": self.iterations,
                    "time/agent_steps_per_s": (self.num_timesteps - self.start_steps) / max(wall - busy, 1e-9),
                    "time/fps": (self.num_timesteps - self.start_steps) / max(wall, 1e-9),
                    "time/time_elapsed": wall})
                self.iterations_since_log = 0
                log.dump(self.num_timesteps)
            started = time.perf_counter()
            if final or crossed(last_eval, every.eval_every):
                self.evaluate(log, bar)
                last_eval = self.num_timesteps
                log.dump(self.num_timesteps)
            if final or crossed(last_ckpt, every.checkpoint_every):
                self.checkpoint("last.pt")
                last_ckpt = self.num_timesteps
            busy += time.perf_counter() - started
        bar.close()
        log.writer.close()
        wall = time.perf_counter() - self.started
        return {
            "policy": GreedyPolicy(self.policy_net), "start_timesteps": self.start_steps,
            "num_timesteps": self.num_timesteps, "best_eval_travel_time": self.best, "eval_history": self.history,
            "baselines": {name: float(values[PRIMARY].mean()) for name, values in self.evaluator.baselines.items()},
            "agent_steps_per_s": (self.num_timesteps - self.start_steps) / max(wall - busy, 1e-9),
            "checkpoints": self.run_dir / "checkpoints",
        }


def train_torchrl(cfg: DictConfig, run_dir: Path) -> dict:
    """Train per `cfg` (the composed train.yaml, plus an optional ``torchrl`` node) into `run_dir`."""
    trainer = TorchRLTrainer(cfg, Path(run_dir))
    with saved_on_interrupt(trainer.interrupted):
        return trainer.run()


__all__ = ["TorchRLTrainer", "train_torchrl", "trainer_options"]
