"""The TorchRL trainer's learning step is the PPO that training.md names, each part checked
against a plain reference written here: SB3's clipped loss (l2 value loss, per-minibatch
advantage normalisation, entropy bonus over the legal actions) on a batch whose ratios reach past
the clip range, GAE with ``agent.gamma`` / ``agent.gae_lambda`` across a termination and a
truncation, and SB3's early stop at 1.5 x ``target_kl``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict

from agents.ppo.torchrl_update import ACTION, ADVANTAGE, LOGP, MASK, OBS, TARGET, TRAIN_STATS, PPOUpdate
from envs.rl.torchrl_env import GROUP

N, I, F, A = 64, 3, 5, 4  # rows, agents, features, actions


def _agent(**changes):
    base = dict(gamma=0.9, gae_lambda=0.8, reward_scale=0.5, normalize_advantage=True, clip_range=0.2, vf_coef=0.7,
                ent_coef=0.03, batch_size=I * 16, n_epochs=2, target_kl=None, max_grad_norm=0.5, learning_rate=1e-3)
    return SimpleNamespace(**{**base, **changes})


def _update(agent, value_net=None) -> PPOUpdate:
    torch.manual_seed(0)
    policy_net, value_net = torch.nn.Linear(F, A), value_net or torch.nn.Linear(F, 1)
    params = [*policy_net.parameters(), *value_net.parameters()]
    optimizer = torch.optim.Adam(params, lr=agent.learning_rate)
    return PPOUpdate(agent, policy_net, value_net, optimizer, params, I, torch.device("cpu"), "own")


def _batch(update: PPOUpdate) -> dict:
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(N, I, F, generator=gen)
    mask = torch.rand(N, I, A, generator=gen) > 0.3
    mask[..., 0] = True  # at least one legal action
    logits = update.policy_net(obs).detach().masked_fill(~mask, float("-inf"))
    action = torch.distributions.Categorical(logits=logits).sample()
    logp_now = logits.log_softmax(-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
    # the behaviour policy's log-probabilities: ratios spread well past 1 +- clip_range
    old = logp_now + torch.randn(N, I, generator=gen) * 0.5
    return {OBS: obs, MASK: mask, ACTION: action, LOGP: old, ADVANTAGE: torch.randn(N, I, 1, generator=gen) * 3 + 1,
            TARGET: torch.randn(N, I, 1, generator=gen)}


def _reference(update: PPOUpdate, batch: dict, agent) -> dict:
    """SB3's PPO loss, written out."""
    logp_all = update.policy_net(batch[OBS]).masked_fill(~batch[MASK], torch.finfo(torch.float32).min).log_softmax(-1)
    logp = logp_all.gather(-1, batch[ACTION].unsqueeze(-1)).squeeze(-1)
    adv = batch[ADVANTAGE].squeeze(-1)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = torch.exp(logp - batch[LOGP])
    surrogate = torch.minimum(adv * ratio, adv * torch.clamp(ratio, 1 - agent.clip_range, 1 + agent.clip_range))
    value_loss = ((batch[TARGET] - update.value_net(batch[OBS])) ** 2).mean()
    p = logp_all.exp()
    entropy = -(torch.where(batch[MASK], p * logp_all, torch.zeros(()))).sum(-1).mean()
    pg = -surrogate.mean()
    return {"policy_gradient_loss": pg, "value_loss": value_loss, "entropy_loss": -entropy,
            "clip_fraction": ((ratio - 1).abs() > agent.clip_range).float().mean(),
            "loss": pg - agent.ent_coef * entropy + agent.vf_coef * value_loss}


def test_the_own_loss_is_sb3s_clipped_ppo_loss():
    agent = _agent()
    update = _update(agent)
    batch = _batch(update)
    loss, stats = update._own_loss(batch)
    reference = _reference(update, batch, agent)
    got = dict(zip(TRAIN_STATS, stats.tolist()))
    assert 0.2 < got["clip_fraction"] < 0.9  # the clip is exercised on both sides of the batch
    for name, value in reference.items():
        assert got[name] == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name
    assert loss.item() == pytest.approx(reference["loss"].item(), rel=1e-5)
    # the entropy term is a bonus: descending it alone raises the policy's entropy
    update.policy_net.zero_grad()
    (-agent.ent_coef * -reference["entropy_loss"]).backward()
    with torch.no_grad():
        for parameter in update.policy_net.parameters():
            parameter -= 10.0 * parameter.grad
    assert -_reference(update, batch, agent)["entropy_loss"].item() > -reference["entropy_loss"].item()


def test_advantages_are_gae_with_the_agents_gamma_and_lambda():
    agent = _agent()
    value_net = torch.nn.Linear(F, 1)
    with torch.no_grad():  # V(s) = the first feature
        value_net.weight.zero_(), value_net.bias.zero_(), value_net.weight[0, 0].fill_(1.0)
    update = _update(agent, value_net)
    T = 6
    gen = torch.Generator().manual_seed(2)
    obs, next_obs = torch.randn(1, T, I, F, generator=gen), torch.randn(1, T, I, F, generator=gen)
    reward = torch.randn(1, T, I, 1, generator=gen)
    done, terminated = torch.zeros(1, T, I, 1, dtype=torch.bool), torch.zeros(1, T, I, 1, dtype=torch.bool)
    done[0, 2], terminated[0, 2] = True, True  # an episode ends at t = 2: no bootstrap
    done[0, 4] = True  # truncated at t = 4: bootstrapped, but the GAE sum stops there
    data = TensorDict({OBS: obs, ("next", *OBS): next_obs, ("next", GROUP, "reward"): reward,
                       ("next", GROUP, "done"): done, ("next", GROUP, "terminated"): terminated}, batch_size=[1, T])
    update.advantages(data)
    v, v_next = obs[..., 0], next_obs[..., 0]
    r, d, term = reward[..., 0] * agent.reward_scale, done[..., 0].float(), terminated[..., 0].float()
    expected, running = torch.zeros(1, T, I), torch.zeros(1, I)
    for t in reversed(range(T)):
        delta = r[:, t] + agent.gamma * v_next[:, t] * (1 - term[:, t]) - v[:, t]
        running = delta + agent.gamma * agent.gae_lambda * (1 - d[:, t]) * running
        expected[:, t] = running
    torch.testing.assert_close(data.get(ADVANTAGE)[..., 0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(data.get(TARGET)[..., 0], expected + v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kl_factor, stops", [(1.2, False), (1.6, True)])
def test_target_kl_stops_at_one_and_a_half_times_it_before_the_step(kl_factor, stops, monkeypatch):
    agent = _agent(target_kl=0.01)
    update = _update(agent)
    batch = _batch(update)
    own = update._own_loss

    def reporting(minibatch):  # the real loss, reporting the KL this case asks for
        loss, stats = own(minibatch)
        return loss, torch.cat([stats[:3], torch.tensor([kl_factor * agent.target_kl]), stats[4:]])

    monkeypatch.setattr(update, "_own_loss", reporting)
    before = [p.detach().clone() for p in update.params]
    update.update(TensorDict(batch, batch_size=[N]))
    minibatches = agent.n_epochs * N * I // agent.batch_size
    moved = any(not torch.equal(a, b) for a, b in zip(before, update.params))
    assert (int(update.train_count), update.n_updates, moved) == ((1, 1, False) if stops else (minibatches, 2, True))


class FixedLogits(torch.nn.Module):
    """A policy network that answers every observation with the same logits."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, obs):
        return self.logits.expand(*obs.shape[:-1], self.logits.numel())


def test_the_rollout_samples_the_masked_softmax_and_records_its_log_probability(tmp_path):
    """collect()'s Gumbel-max draw is a categorical draw from softmax(logits) (a chi-square test
    over 40,000 draws), and the behaviour log-probability it stores is that distribution's."""
    from agents.ppo.torchrl_trainer import TorchRLTrainer
    from tests.test_torchrl_trainer import SMALL, torchrl_config

    trainer = TorchRLTrainer(torchrl_config(SMALL, env__copies=50, agent__n_steps=50, agent__batch_size=16),
                             tmp_path)
    fixed = torch.tensor([1.0, 0.0, -0.5, 0.3])
    trainer.policy_net = FixedLogits(fixed)
    torch.manual_seed(3)
    data = trainer.collect()
    action, logp = data.get(ACTION), data.get(LOGP)
    assert action.numel() == 50 * 50 * 16 and bool(data.get(MASK).all())  # every phase of grid_4x4 is legal
    expected = fixed.softmax(-1) * action.numel()
    observed = torch.bincount(action.flatten(), minlength=4).float()
    chi_square = float(((observed - expected) ** 2 / expected).sum())
    assert chi_square < 16.27  # 3 degrees of freedom, p = 0.001
    torch.testing.assert_close(logp, fixed.log_softmax(-1)[action])


def test_the_rollout_never_draws_a_masked_action_and_records_the_masked_log_probability(tmp_path, monkeypatch):
    """On a grid whose first intersection has 3 phases (its 4th action masked), the rollout never
    draws the masked action, and the behaviour log-probability it stores is the masked softmax's,
    the one the update recomputes (from the unmasked logits it would be off by the masked mass)."""
    from agents.ppo.torchrl_trainer import TorchRLTrainer
    from envs.scenario.presets import PRESETS
    from tests.scenarios import uneven_grid_dicts
    from tests.test_torchrl_trainer import SMALL, torchrl_config

    monkeypatch.setitem(PRESETS, "uneven_grid", lambda seed=0: uneven_grid_dicts(horizon=3600, seed=seed))
    trainer = TorchRLTrainer(torchrl_config(SMALL, scenario__name="uneven_grid", env__copies=20, agent__n_steps=20,
                                            agent__batch_size=16), tmp_path)
    fixed = torch.tensor([-1.0, 0.0, -0.5, 2.0])  # the masked action is the likeliest by far
    trainer.policy_net = FixedLogits(fixed)
    torch.manual_seed(4)
    data = trainer.collect()
    action, logp, mask = data.get(ACTION), data.get(LOGP), data.get(MASK)
    assert action.shape[-1] == 4 and not bool(mask[..., 0, 3].any()) and bool(mask[..., 1:, :].all())
    assert not bool((action[..., 0] == 3).any())
    assert int((action[..., 1:] == 3).sum()) > 0  # the other intersections do draw it
    masked_logp = fixed.masked_fill(torch.tensor([False, False, False, True]), float("-inf")).log_softmax(-1)
    torch.testing.assert_close(logp[..., 0], masked_logp[action[..., 0]])
    torch.testing.assert_close(logp[..., 1:], fixed.log_softmax(-1)[action[..., 1:]])
