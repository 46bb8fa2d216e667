"""The learning half of the TorchRL trainer's iteration (`agents.ppo.torchrl_trainer`): GAE
advantages of a rollout, then ``agent.n_epochs`` epochs of clipped PPO on its minibatches, with
the losses and statistics summed on the device (read back once per log interval).

The loss is either written here (``torchrl.loss=own``: SB3's clipped loss, l2 value loss,
per-minibatch advantage normalisation, no host reads) or TorchRL's `ClipPPOLoss` on the same
networks (``torchrl.loss=clip_ppo``). The TensorDict keys of a rollout are defined here too.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torchrl.objectives.value.functional import vec_generalized_advantage_estimate

from agents.ppo.torchrl_policy import log_softmax_actions, masked_logits
from envs.rl.torchrl_env import GROUP

OBS, MASK = (GROUP, "observation"), (GROUP, "action_mask")
ACTION, LOGP = (GROUP, "action"), (GROUP, "action_log_prob")
ADVANTAGE, TARGET = (GROUP, "advantage"), (GROUP, "value_target")
LOSS_KEYS = (OBS, MASK, ACTION, LOGP, ADVANTAGE, TARGET)  # what the own loss reads of a minibatch
TRAIN_STATS = ("policy_gradient_loss", "value_loss", "entropy_loss", "approx_kl", "clip_fraction", "loss")


class PPOUpdate:
    """Advantages and PPO epochs for the networks `policy_net` / `value_net` of `intersections`
    agents, stepping `optimizer` over `params`; `loss` is ``torchrl.loss`` (``own`` or ``clip_ppo``)."""

    def __init__(self, agent: DictConfig, policy_net, value_net, optimizer: torch.optim.Optimizer, params: list,
                 intersections: int, device: torch.device, loss: str, deciding: torch.Tensor | None = None) -> None:
        self.agent, self.policy_net, self.value_net = agent, policy_net, value_net
        self.optimizer, self.params, self.I, self.device = optimizer, params, intersections, device
        # `deciding` ([I] bool, agents.ppo.deciding): where some intersections have nothing to decide, the own
        # loss averages (and normalises advantages) over the deciding ones' rows alone, as does
        # train/explained_variance, and a minibatch of agent.batch_size agent-steps is that many decisions;
        # None (every one decides): the plain means. Their indices found here: no host read per rollout
        self.rows = None if deciding is None or bool(deciding.all()) else torch.nonzero(deciding).squeeze(1).to(device)
        self.D = intersections if self.rows is None else int(self.rows.numel())
        self.clip_loss = self._clip_ppo_loss() if loss == "clip_ppo" else None
        self.train_sums = torch.zeros(len(TRAIN_STATS), device=device)
        self.train_count = torch.zeros((), device=device)
        self.explained = torch.zeros((), device=device)
        self.n_updates = 0

    def advantages(self, data) -> None:
        agent = self.agent
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
            if self.rows is not None:  # as SB3's: of the deciding rows, whose values the loss fits
                target, value = target.index_select(-2, self.rows), value.index_select(-2, self.rows)
            self.explained += 1 - (target - value).var() / target.var().clamp(min=1e-12)

    def _counted(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, I, ...]`` the rows that count: every row, or the deciding intersections' alone."""
        return x if self.rows is None else x.index_select(1, self.rows)

    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        return self._counted(x).mean()

    def _normalised(self, adv: torch.Tensor) -> torch.Tensor:
        counted = self._counted(adv)
        return (adv - counted.mean()) / (counted.std() + 1e-8)

    def _own_loss(self, batch):
        agent = self.agent
        logits = masked_logits(self.policy_net(batch.get(OBS)), batch.get(MASK))
        logp_all = log_softmax_actions(logits)
        logp = logp_all.gather(-1, batch.get(ACTION).unsqueeze(-1)).squeeze(-1)  # [N, I], as LOGP
        adv = batch.get(ADVANTAGE).squeeze(-1)
        if agent.normalize_advantage and adv.shape[0] * self.D > 1:
            adv = self._normalised(adv)
        log_ratio = logp - batch.get(LOGP)
        ratio = log_ratio.exp()
        clip = agent.clip_range
        mean = self._mean
        pg = -mean(torch.min(adv * ratio, adv * ratio.clamp(1 - clip, 1 + clip)))
        value_loss = mean((batch.get(TARGET) - self.value_net(batch.get(OBS))).pow(2).squeeze(-1))
        entropy = -mean(torch.where(batch.get(MASK), logp_all.exp() * logp_all, 0.0).sum(-1))
        loss = pg - agent.ent_coef * entropy + agent.vf_coef * value_loss
        with torch.no_grad():
            kl = mean((ratio - 1) - log_ratio)
            clipped = mean(((ratio - 1).abs() > clip).float())
        return loss, torch.stack([pg, value_loss, -entropy, kl, clipped, loss]).detach()

    def _clip_ppo_loss(self):
        """TorchRL's ClipPPOLoss on the same networks (``torchrl.loss=clip_ppo``)."""
        from tensordict.nn import TensorDictModule
        from torchrl.modules import MaskedCategorical, ProbabilisticActor, ValueOperator
        from torchrl.objectives import ClipPPOLoss

        agent = self.agent
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
        value_loss = out["loss_critic"].detach() / self.agent.vf_coef
        return loss, torch.stack([out["loss_objective"].detach(), value_loss, -out["entropy"],
                                  out["kl_approx"], out["clip_fraction"], loss.detach()]).detach()

    def update(self, data) -> None:
        agent = self.agent
        flat = data.reshape(-1)
        rows, size = flat.shape[0], max(1, agent.batch_size // self.D)  # whole samples of agent.batch_size decisions
        if self.clip_loss is None:
            # the own loss reads six entries: take them as plain tensors (indexing the TensorDict visits
            # all ~20 of its entries), by index_select (on a CPU ~2x faster than value[index])
            loss_of, columns = self._own_loss, {key: flat.get(key) for key in LOSS_KEYS}

            def minibatch(index):
                return {key: value.index_select(0, index) for key, value in columns.items()}
        else:
            loss_of, minibatch = self._torchrl_loss, flat.__getitem__
        stop = False
        for _ in range(agent.n_epochs):
            for index in torch.randperm(rows, device=self.device).split(size):
                loss, stats = loss_of(minibatch(index))
                self.train_sums += stats
                self.train_count += 1
                # SB3's early stop: a minibatch whose KL passes 1.5 x target_kl ends the update before
                # its step; a host read per minibatch, only when target_kl is set (null by default)
                if agent.target_kl is not None and float(stats[3]) > 1.5 * agent.target_kl:
                    stop = True
                    break
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.params, agent.max_grad_norm, foreach=True)  # as Adam's
                self.optimizer.step()
            self.n_updates += 1  # epochs, as SB3 counts its n_updates (it counted minibatch steps)
            if stop:
                break

    def statistics(self, iterations: int) -> dict[str, float]:
        """The ``train/*`` tags since the last call, over `iterations` rollouts (one host copy); resets the sums."""
        count = self.train_count.clamp(min=1)
        values = torch.cat([self.train_sums / count, (self.explained / max(iterations, 1)).view(1)])
        values = values.tolist()  # the one host copy of the interval's statistics
        self.train_sums.zero_(), self.train_count.zero_(), self.explained.zero_()
        return {**{f"train/{name}": value for name, value in zip(TRAIN_STATS, values)},
                "train/explained_variance": values[-1], "train/n_updates": self.n_updates,
                "train/learning_rate": float(self.agent.learning_rate),
                "train/clip_range": float(self.agent.clip_range)}


__all__ = ["ACTION", "LOGP", "MASK", "OBS", "PPOUpdate", "TRAIN_STATS"]
