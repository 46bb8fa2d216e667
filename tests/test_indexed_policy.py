"""The independent per-intersection SB3 policy (agents/ppo/indexed_policy.py) against its
definition: row n's logits and value are intersection i's own MLP over the observation without its
trailing one-hot, in the batched path SB3 trains and the per-row path export.py exports; SB3's
init per intersection; its refusals and its own save / load."""

from __future__ import annotations

import math

import pytest
import torch
from sb3_contrib import MaskablePPO

from agents.ppo.indexed_policy import IndexedActorCriticPolicy, IndexedMlpExtractor
from envs.rl.sb3_env import IntersectionVecEnv
from tests.deploy_fixtures import OBSERVATIONS
from tests.scenarios import uneven_grid

INTERSECTIONS = 4  # the uneven grid's


def _policy(net_arch=None, ortho_init: bool = True, copies: int = 3):
    """``(observation rows [copies * 4, F], policy)`` on the uneven grid (rows n = b * 4 + i)."""
    venv = IntersectionVecEnv(copies=copies, scenario=uneven_grid(), episode_s=100, observations=OBSERVATIONS)
    model = MaskablePPO(IndexedActorCriticPolicy, venv, n_steps=8, batch_size=8, seed=0, device="cpu",
                        policy_kwargs={"num_intersections": INTERSECTIONS, "net_arch": net_arch or [16, 16],
                                       "ortho_init": ortho_init})
    return torch.as_tensor(venv.reset()), model.policy


def _reference(mlp, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Each row through its intersection's layers, one row at a time (tanh between layers)."""
    rows = []
    for row, i in zip(x, index.tolist()):
        for k, layer in enumerate(mlp.layers):
            row = row @ layer.weight[i] + layer.bias[i]
            if k < len(mlp.layers) - 1:
                row = torch.tanh(row)
        rows.append(row)
    return torch.stack(rows)


def test_each_rows_logits_and_value_are_its_intersections_own_mlp():
    """Different actor and critic widths, nonzero biases (as after training), rows shuffled as in
    SB3's minibatches: the batched forward, the value and export's per-row path all give row n
    its intersection's MLP of the features before the one-hot."""
    obs, policy = _policy(net_arch={"pi": [16, 8], "vf": [12]})
    extractor = policy.mlp_extractor
    inputs = obs.shape[1] - INTERSECTIONS
    assert [layer.weight.shape[1:] for layer in extractor.policy_net.layers] == [(inputs, 16), (16, 8), (8, 4)]
    assert [layer.weight.shape[1:] for layer in extractor.value_net.layers] == [(inputs, 12), (12, 1)]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for net in (extractor.policy_net, extractor.value_net):
            for layer in net.layers:
                layer.weight.mul_(20.0)  # outputs well past tanh's range: a squashed head shows
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
    obs = obs[torch.randperm(obs.shape[0], generator=generator)]
    index = obs[:, -INTERSECTIONS:].argmax(-1)
    features = obs[:, :-INTERSECTIONS]
    with torch.no_grad():
        logits = policy.get_distribution(obs).distribution.logits
        values = policy.predict_values(obs)
        expected_logits = _reference(extractor.policy_net, features, index)
        expected_values = _reference(extractor.value_net, features, index)
        exported = extractor.policy_net.forward_rows(features, index)
    assert float(expected_values.abs().max()) > 1.5
    torch.testing.assert_close(logits, expected_logits.log_softmax(-1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(values, expected_values, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(exported, expected_logits, atol=1e-4, rtol=1e-5)


def _assert_orthogonal(weight: torch.Tensor, gain: float) -> None:
    gram = weight @ weight.T if weight.shape[0] <= weight.shape[1] else weight.T @ weight
    assert torch.allclose(gram / gain ** 2, torch.eye(gram.shape[0]), atol=1e-4), (weight.shape, gain)


def test_each_intersections_layers_get_sb3s_orthogonal_init_and_gains():
    """sqrt(2) hidden, 0.01 for the action head, 1 for the value head, zero biases: each
    intersection's layer initialised as SB3 initialises one nn.Linear."""
    _, policy = _policy(net_arch={"pi": [16, 8], "vf": [12]})
    for net, head_gain in ((policy.mlp_extractor.policy_net, 0.01), (policy.mlp_extractor.value_net, 1.0)):
        for k, layer in enumerate(net.layers):
            assert not layer.bias.any()
            for weight in layer.weight.detach():
                _assert_orthogonal(weight, head_gain if k == len(net.layers) - 1 else math.sqrt(2))


def test_without_orthogonal_init_each_layer_gets_pytorchs_default_uniform_weights():
    _, policy = _policy(net_arch=[64], ortho_init=False)
    for net in (policy.mlp_extractor.policy_net, policy.mlp_extractor.value_net):
        for layer in net.layers:
            weight = layer.weight.detach()  # [I, in, out]
            bound = 1.0 / math.sqrt(weight.shape[1])  # nn.Linear's: 1 / sqrt(fan_in)
            assert float(weight.abs().max()) <= bound and float(weight.abs().max()) > 0.9 * bound
            if min(weight.shape[1:]) > 1:  # a one-column head is orthogonal whatever its draw
                gram = weight[0] @ weight[0].T if weight.shape[1] <= weight.shape[2] else weight[0].T @ weight[0]
                assert not torch.allclose(gram / gram[0, 0], torch.eye(gram.shape[0]), atol=0.05)


def test_an_observation_of_nothing_but_the_one_hot_is_refused():
    with pytest.raises(ValueError, match="intersection_id one-hot"):
        IndexedMlpExtractor(4, 4, 4, [16], torch.nn.Tanh)
    IndexedMlpExtractor(5, 4, 4, [16], torch.nn.Tanh)  # one feature besides it is enough


def test_the_policys_own_save_and_load_keep_its_intersections(tmp_path):
    obs, policy = _policy()
    policy.save(tmp_path / "policy.pt")
    loaded = IndexedActorCriticPolicy.load(tmp_path / "policy.pt", device="cpu")
    assert loaded.num_intersections == INTERSECTIONS
    with torch.no_grad():
        assert torch.equal(loaded.predict_values(obs), policy.predict_values(obs))
