"""The TorchRL trainer's networks and checkpoints (agents/ppo/torchrl_policy.py) beyond their fast
forwards (tests/test_torchrl_policy_forward.py): SB3's orthogonal init, the per-agent centralised
critic, masking whatever the logits, the network spec a resume compares, and the checkpoint checks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from agents.ppo.torchrl_policy import (
    CRITIC_INPUT,
    GreedyPolicy,
    build_networks,
    check_network_spec,
    masked_logits,
    network_spec,
    read_torchrl_checkpoint,
)
from envs.errors import CheckpointError
from tests.minimal_scenario import assert_names_everything
from tests.test_torchrl_loss import FixedLogits

SPEC = {"n_agents": 4, "obs_size": 10, "n_actions": 3, "share_params": True, "centralised_critic": False,
        "net_arch": [16, 8], "activation": "tanh", "ortho_init": True}
HIDDEN = 2 ** 0.5  # SB3's gains: sqrt(2) hidden, 0.01 policy head, 1 value head


def assert_orthogonal(weight: torch.Tensor, gain: float) -> None:
    """`weight` ``[out, in]`` is `gain` times a matrix with orthonormal rows (or columns, if fewer)."""
    gram = weight @ weight.T if weight.shape[0] <= weight.shape[1] else weight.T @ weight
    eye = torch.eye(gram.shape[0])
    assert torch.allclose(gram / gain ** 2, eye, atol=1e-4), (weight.shape, gain, gram.diagonal())


def _layers(net) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(weight, bias)`` of each linear layer of a MultiAgentMLP, in order, weights ``[agents, out, in]``."""
    params = net.params.flatten_keys(".")
    indices = sorted({int(key.split(".")[-2]) for key in params.keys()})
    return [(params[f"{k}.weight"].detach().reshape(-1, *params[f"{k}.weight"].shape[-2:]),
             params[f"{k}.bias"].detach()) for k in indices]


@pytest.mark.parametrize("share_params", [True, False])
def test_orthogonal_init_gives_each_layer_sb3s_gain_and_zero_biases(share_params):
    torch.manual_seed(0)
    actor, critic = build_networks({**SPEC, "share_params": share_params})
    for net, head_gain in ((actor, 0.01), (critic, 1.0)):
        layers = _layers(net)
        assert len(layers) == 3
        for k, (weights, bias) in enumerate(layers):
            assert weights.shape[0] == (1 if share_params else 4)
            assert not bias.any()
            for weight in weights:  # each agent's own draw
                assert_orthogonal(weight, head_gain if k == len(layers) - 1 else HIDDEN)


@pytest.mark.parametrize("share_params", [True, False])
@pytest.mark.parametrize("net_arch", [[16, 8], []])
def test_the_centralised_critics_first_layer_is_orthogonal_over_its_concatenated_input(share_params, net_arch):
    """MAPPO's first layer reads [every observation, own observation, one-hot index]: SB3's init of
    that one layer (sqrt(2) before a hidden layer; the value head's 1 without one), each further
    agent's own projection drawn orthogonal on its own, then the rest's layers as any MLP's."""
    torch.manual_seed(1)
    _, critic = build_networks({**SPEC, "share_params": share_params, "centralised_critic": True,
                                "net_arch": net_arch})
    gain = HIDDEN if net_arch else 1.0
    with torch.no_grad():
        assert_orthogonal(torch.cat([critic.every, critic.own[0], critic.bias]).T, gain)
        assert critic.own.shape[0] == (1 if share_params else 4)
        for own in critic.own[1:]:
            assert_orthogonal(own.T, gain)
    if net_arch:
        (hidden, hidden_bias), (head, head_bias) = _layers(critic.rest)
        assert_orthogonal(hidden[0], HIDDEN)
        assert_orthogonal(head[0], 1.0)
        assert not hidden_bias.any() and not head_bias.any()


def test_a_per_agent_centralised_critic_reads_each_agents_own_observation_through_its_own_weights():
    torch.manual_seed(2)
    _, critic = build_networks({**SPEC, "share_params": False, "centralised_critic": True})
    x = torch.randn(5, 4, 10)
    with torch.no_grad():
        before = critic(x)
        critic.own[2] += 0.5
        after = critic(x)
    changed = (after - before).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [False, False, True, False]


@pytest.mark.parametrize("deterministic", [True, False])
def test_a_masked_action_is_never_chosen_whatever_the_logits_offset(deterministic):
    """Softmax is shift-invariant: logits thousands below zero are as good as any, and masking
    must still rule out the masked actions (a fixed fill such as -1000 would then win)."""
    logits = torch.tensor([0.0, -5000.0, -5001.0, 3.0])
    mask = torch.tensor([False, True, True, False]).expand(64, 4, 4)
    torch.manual_seed(3)
    chosen = GreedyPolicy(FixedLogits(logits))(torch.zeros(64, 4, 10), mask, deterministic)
    assert bool(mask.gather(-1, chosen.unsqueeze(-1)).all())
    if deterministic:
        assert bool((chosen == 1).all())
    probabilities = masked_logits(logits, mask[0, 0]).softmax(-1)
    assert float(probabilities[~mask[0, 0]].sum()) == 0.0


# ---- the spec a resume compares --------------------------------------------------------------------------


def _agent(policy: str = "shared", **changes):
    return SimpleNamespace(policy=policy, **{"net_arch": [16, 8], "activation": "tanh", "ortho_init": True,
                                             **changes})


def test_only_a_centralised_critics_spec_names_its_input_layout():
    """A non-centralised spec is what checkpoints from before `AgentStateCritic` stored: they resume."""
    plain = network_spec(_agent(), 4, 10, 3, False)
    assert "critic_input" not in plain and plain["share_params"] is True
    stored = {key: value for key, value in plain.items() if key != "critic_input"}  # as older checkpoints hold it
    check_network_spec("last.pt", stored, network_spec(_agent(), 4, 10, 3, False))
    assert network_spec(_agent(), 4, 10, 3, True)["critic_input"] == CRITIC_INPUT


@pytest.mark.parametrize("saved, field", [
    (network_spec(_agent("independent"), 4, 10, 3, False), "agent.policy"),
    (network_spec(_agent(), 4, 10, 5, False), "env.actions"),
    (network_spec(_agent(net_arch=[32]), 4, 10, 3, False), "agent.net_arch"),
    (network_spec(_agent(activation="relu"), 4, 10, 3, False), "agent.activation"),
])
def test_a_resume_of_other_networks_is_refused_naming_the_config_key(saved, field):
    with pytest.raises(CheckpointError) as refused:
        check_network_spec("last.pt", saved, network_spec(_agent(), 4, 10, 3, False))
    assert (refused.value.source, refused.value.field) == ("last.pt", field)


# ---- checkpoint files -------------------------------------------------------------------------------------

META = {"env": {"observations": {"lane_count": {"size": 8}}, "normalise": True, "intersections": ["a"],
                "decision_interval_s": 5}}


@pytest.mark.parametrize("data, field, value", [
    ({"format": 1, "meta": META}, "trainer", None),  # a torch file another program wrote
    ({"trainer": "torchrl", "format": 2, "meta": META}, "format", 2),
])
def test_a_torch_file_the_trainer_did_not_write_is_refused_naming_the_key(tmp_path, data, field, value):
    path = tmp_path / "last.pt"
    torch.save({"trainer": "torchrl", "format": 1, "meta": META}, path)
    assert read_torchrl_checkpoint(path)["meta"] == META
    torch.save(data, path)
    with pytest.raises(CheckpointError) as refused:
        read_torchrl_checkpoint(path)
    assert_names_everything(refused.value, str(path), field, value)
