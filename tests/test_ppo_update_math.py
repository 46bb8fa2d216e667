"""The TorchRL trainer's PPO update (agents/ppo/torchrl_update.py) beyond the loss itself: a
hand-worked batch (with and without advantage normalisation, and its approximate KL), TorchRL's
``ClipPPOLoss`` option against the same reference, the optimiser step (fresh gradients clipped to
``max_grad_norm`` every minibatch), the minibatches (a fresh shuffle of every row each epoch, the
columns of a row kept together) and the ``train/*`` statistics (means over minibatches and
rollouts, reset once read). Helpers come from tests/test_torchrl_loss.py."""

from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

from agents.ppo.torchrl_update import ACTION, ADVANTAGE, LOGP, MASK, OBS, TARGET, TRAIN_STATS, PPOUpdate
from envs.rl.torchrl_env import GROUP
from tests.test_torchrl_loss import A, F, I, N, _agent, _batch, _reference, _update

LN2 = math.log(2.0)


def _zero_update(agent, intersections: int = 1) -> PPOUpdate:
    """Networks that answer every observation with logits 0 and value 0."""
    policy_net, value_net = torch.nn.Linear(F, 3), torch.nn.Linear(F, 1)
    for net in (policy_net, value_net):
        torch.nn.init.zeros_(net.weight), torch.nn.init.zeros_(net.bias)
    params = [*policy_net.parameters(), *value_net.parameters()]
    return PPOUpdate(agent, policy_net, value_net, torch.optim.SGD(params, lr=0.1), params, intersections,
                     torch.device("cpu"), "own")


@pytest.mark.parametrize("normalize, pg", [(False, 0.2), (True, -0.2 / math.sqrt(2.0))])
def test_a_hand_worked_batch(normalize, pg):
    """Two rows, one agent, three actions of which the third is masked: logits 0 give each legal
    action probability 1/2 (entropy ln 2). Row 0 took action 0 with behaviour probability 1/4
    (ratio 2), row 1 action 1 with behaviour probability 1 (ratio 1/2); advantages +1 and -2,
    clip 0.2: raw surrogates min(2, 1.2) = 1.2 and min(-1, -1.6) = -1.6, so pg = 0.2. Normalised
    (mean -0.5, std 1.5 * sqrt 2) they are +-1/sqrt 2: min(sqrt 2, 1.2 / sqrt 2) and
    min(-0.5 / sqrt 2, -0.8 / sqrt 2), so pg = -0.2 / sqrt 2. Values 0 against targets 3 and -1:
    value loss 5. Approximate KL ((r - 1) - ln r): (1 - ln 2 + (-0.5 + ln 2)) / 2 = 0.25."""
    agent = _agent(normalize_advantage=normalize, clip_range=0.2, ent_coef=0.1, vf_coef=0.5)
    update = _zero_update(agent)
    batch = {OBS: torch.randn(2, 1, F), MASK: torch.tensor([[[True, True, False]]] * 2),
             ACTION: torch.tensor([[0], [1]]), LOGP: torch.log(torch.tensor([[0.25], [1.0]])),
             ADVANTAGE: torch.tensor([[[1.0]], [[-2.0]]]), TARGET: torch.tensor([[[3.0]], [[-1.0]]])}
    loss, stats = update._own_loss(batch)
    got = dict(zip(TRAIN_STATS, stats.tolist()))
    expected = {"policy_gradient_loss": pg, "value_loss": 5.0, "entropy_loss": -LN2, "approx_kl": 0.25,
                "clip_fraction": 1.0, "loss": pg - 0.1 * LN2 + 0.5 * 5.0}
    assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert loss.item() == pytest.approx(expected["loss"], rel=1e-5)


@pytest.mark.filterwarnings("ignore:You requested advantage normalization")
@pytest.mark.parametrize("normalize", [True, False])
def test_torchrls_clip_ppo_loss_is_the_same_loss(normalize):
    """``torchrl.loss=clip_ppo`` computes SB3's clipped loss too: the same loss, policy, value and
    entropy terms and clip fraction as the reference (its KL estimate is TorchRL's own)."""
    agent = _agent(normalize_advantage=normalize)
    torch.manual_seed(0)
    policy_net, value_net = torch.nn.Linear(F, A), torch.nn.Linear(F, 1)
    params = [*policy_net.parameters(), *value_net.parameters()]
    update = PPOUpdate(agent, policy_net, value_net, torch.optim.Adam(params), params, I, torch.device("cpu"),
                       "clip_ppo")
    assert update.clip_loss is not None
    batch = _batch(update)
    if not normalize:  # the reference normalises: hand it advantages that already are
        adv = batch[ADVANTAGE]
        batch[ADVANTAGE] = (adv - adv.mean()) / (adv.std() + 1e-8)
    loss, stats = update._torchrl_loss(TensorDict(batch, batch_size=[N]))
    reference = _reference(update, batch, agent)
    got = dict(zip(TRAIN_STATS, stats.tolist()))
    for name, value in reference.items():
        assert got[name] == pytest.approx(value.item(), rel=1e-5, abs=1e-6), name
    assert loss.item() == pytest.approx(reference["loss"].item(), rel=1e-5)


def test_each_step_descends_fresh_gradients_clipped_to_max_grad_norm():
    """One minibatch per epoch, two epochs, plain SGD (Adam's first step would hide a gradient's
    scale): each step moves the parameters by -lr times that step's own gradient of the loss,
    rescaled to norm max_grad_norm (as clip_grad_norm_), none left over from the step before."""
    agent = _agent(batch_size=N * I, n_epochs=2, max_grad_norm=0.3)
    lr = 0.5
    update, twin = _update(agent), _update(agent)
    for ppo in (update, twin):
        ppo.optimizer = torch.optim.SGD(ppo.params, lr=lr)
    batch = _batch(update)
    update.update(TensorDict(batch, batch_size=[N]))
    norms = []
    for _ in range(agent.n_epochs):
        grads = torch.autograd.grad(_reference(twin, batch, agent)["loss"], twin.params)
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads))
        norms.append(float(norm))
        with torch.no_grad():
            for parameter, grad in zip(twin.params, grads):
                parameter -= lr * grad * (agent.max_grad_norm / (norm + 1e-6))
    assert min(norms) > 2 * agent.max_grad_norm  # the clip binds
    for got, want in zip(update.params, twin.params):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def _row_id_batch() -> dict:
    """`_batch` whose rows carry their index in every column (observation feature 0, advantage,
    target, behaviour log-probability), so a minibatch shows which rows it took."""
    batch = _batch(_update(_agent()))
    rows = torch.arange(N, dtype=torch.float32)
    batch[OBS][:, :, 0] = rows.view(N, 1)
    batch[ADVANTAGE] = rows.view(N, 1, 1).expand(N, I, 1).clone()
    batch[TARGET] = -rows.view(N, 1, 1).expand(N, I, 1).clone()
    batch[LOGP] = -1.0 - rows.view(N, 1).expand(N, I) / N
    return batch


def test_every_epoch_reshuffles_all_rows_into_minibatches_that_keep_each_rows_columns():
    agent = _agent(batch_size=I * 16, n_epochs=3)  # 16 rows a minibatch: 4 of them an epoch
    update = _update(agent)
    batch = _row_id_batch()
    seen = []
    own = update._own_loss

    def recording(minibatch):
        seen.append(minibatch)
        return own(minibatch)

    update._own_loss = recording
    torch.manual_seed(5)
    update.update(TensorDict(batch, batch_size=[N]))
    assert len(seen) == agent.n_epochs * 4
    orders = []
    for epoch in range(agent.n_epochs):
        minibatches = seen[4 * epoch:4 * epoch + 4]
        ids = [mb[OBS][:, 0, 0].long() for mb in minibatches]
        assert [len(index) for index in ids] == [16] * 4
        order = torch.cat(ids)
        assert sorted(order.tolist()) == list(range(N)), epoch  # every row once an epoch
        orders.append(order.tolist())
        for index, mb in zip(ids, minibatches):
            for key in (OBS, MASK, ACTION, LOGP, ADVANTAGE, TARGET):
                assert torch.equal(mb[key], batch[key][index]), (epoch, key)
    assert orders[0] != list(range(N))  # shuffled ...
    assert len({tuple(order) for order in orders}) == agent.n_epochs  # ... afresh each epoch


def _rollout(seed: int, T: int = 5) -> TensorDict:
    gen = torch.Generator().manual_seed(seed)
    done = torch.zeros(1, T, I, 1, dtype=torch.bool)
    done[0, 2] = True
    obs, next_obs = torch.randn(1, T, I, F, generator=gen), torch.randn(1, T, I, F, generator=gen)
    return TensorDict({OBS: obs, ("next", *OBS): next_obs, ("next", GROUP, "reward"): torch.randn(1, T, I, 1) * 4,
                       ("next", GROUP, "done"): done, ("next", GROUP, "terminated"): done.clone()}, batch_size=[1, T])


def test_statistics_average_minibatches_and_rollouts_and_start_afresh_once_read():
    agent = _agent(batch_size=I * 16, n_epochs=2)
    update = _update(agent)
    explained = []
    for seed in (7, 8):  # two rollouts' advantages
        data = _rollout(seed)
        update.advantages(data)
        target, value = data.get(TARGET), data.get((GROUP, "state_value"))
        explained.append(1 - float((target - value).var() / target.var()))
    assert explained[0] != pytest.approx(explained[1])
    recorded = []
    own = update._own_loss

    def recording(minibatch):
        loss, stats = own(minibatch)
        recorded.append(stats)
        return loss, stats

    update._own_loss = recording
    update.update(TensorDict(_batch(update), batch_size=[N]))
    assert len(recorded) == 8
    means = torch.stack(recorded).mean(0).tolist()
    got = update.statistics(iterations=2)
    assert [got[f"train/{name}"] for name in TRAIN_STATS] == pytest.approx(means, rel=1e-5, abs=1e-7)
    assert got["train/explained_variance"] == pytest.approx(sum(explained) / 2, rel=1e-5)
    assert got["train/n_updates"] == agent.n_epochs
    again = update.statistics(iterations=1)  # nothing since: zeros, the epoch count runs on
    assert [again[f"train/{name}"] for name in (*TRAIN_STATS, "explained_variance")] == [0.0] * 7
    assert again["train/n_updates"] == agent.n_epochs
