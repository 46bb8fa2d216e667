"""The TorchRL networks' faster paths (agents/ppo/torchrl_policy.py) compute the same bits as the
paths they replace: `DirectMultiAgentMLP`'s forward against `MultiAgentMLP`'s (outputs and gradients, the
no-autograd chunks, a loaded state dict), `log_softmax_actions` against ``log_softmax(-1)``."""

from __future__ import annotations

import pytest
import torch
from torchrl.modules import MultiAgentMLP

from agents.ppo.torchrl_policy import DirectMultiAgentMLP, build_networks, log_softmax_actions, masked_logits

SPEC = {"n_agents": 16, "obs_size": 73, "n_actions": 8, "share_params": True, "centralised_critic": False,
        "net_arch": [64, 64], "activation": "tanh", "ortho_init": True}


def reference(net: MultiAgentMLP, x: torch.Tensor) -> torch.Tensor:
    return MultiAgentMLP.forward(net, x)  # TorchRL's own forward: parameters swapped into its empty MLP


def gradients(net: MultiAgentMLP, forward, x: torch.Tensor) -> list[torch.Tensor]:
    net.zero_grad(set_to_none=True)
    (forward(net, x) * torch.linspace(-1, 1, net.n_agent_outputs, device=x.device)).sum().backward()
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_the_shared_forward_gives_torchrls_bits_and_gradients(activation, device):
    torch.manual_seed(0)
    for net in build_networks({**SPEC, "activation": activation}, device=device):  # actor and critic
        assert isinstance(net, DirectMultiAgentMLP) and net._layers is not None
        x = torch.randn(256, 16, 73, device=device)  # a 4096-row minibatch
        assert torch.equal(net(x), reference(net, x))
        ours, torchrls = gradients(net, type(net).forward, x), gradients(net, reference, x)
        assert all(torch.equal(a, b) for a, b in zip(ours, torchrls))


def test_without_autograd_many_rows_run_in_chunks_with_the_same_bits():
    torch.manual_seed(1)
    _, critic = build_networks(SPEC)
    with torch.no_grad():
        # GAE's rollout, a ragged last chunk, one chunk, no batch dims
        for shape in [(64, 64, 16, 73), (1000, 16, 73), (5, 16, 73), (16, 73)]:
            x = torch.randn(*shape)
            out = critic(x)
            assert out.shape == (*shape[:-1], 1) and torch.equal(out, reference(critic, x))
    assert 64 * 64 * 16 > DirectMultiAgentMLP.CHUNK_ROWS  # the rollout above did run in chunks


def test_rows_off_the_cpu_are_not_chunked():
    # a GPU's matrix product may pick another algorithm for fewer rows; the meta device stands in
    _, critic = build_networks({**SPEC, "ortho_init": False}, device="meta")
    passes, layers_on = [], critic._layers_on
    critic._layers_on = lambda x: passes.append(tuple(x.shape)) or layers_on(x)
    with torch.no_grad():
        out = critic(torch.empty(64, 64, 16, 73, device="meta"))
    assert out.shape == (64, 64, 16, 1) and passes == [(64, 64, 16, 73)]


def test_a_loaded_state_dict_is_what_the_shared_forward_reads():
    torch.manual_seed(2)
    actor, _ = build_networks(SPEC)
    other, _ = build_networks({**SPEC, "ortho_init": False})
    actor.load_state_dict(other.state_dict())
    x = torch.randn(4, 16, 73)
    assert torch.equal(actor(x), reference(other, x))


def test_centralised_and_per_agent_networks_keep_torchrls_forward():
    torch.manual_seed(3)
    independent = build_networks({**SPEC, "share_params": False})
    actor, central = build_networks({**SPEC, "centralised_critic": True})
    assert independent[0]._layers is None and actor._layers is not None and central.rest._layers is not None
    x = torch.randn(8, 16, 73)
    for net in independent:
        assert torch.equal(net(x), reference(net, x))


@pytest.mark.parametrize("shared", [True, False])
def test_the_centralised_critic_gives_each_agent_its_own_value_from_every_observation(shared):
    """MAPPO's agent-specific global state: agent i's first layer reads every observation, its own
    and its index (TorchRL's centralized shared MLP gave all 16 agents one value); computed without
    building I copies of the global state, it is the layer over their concatenation."""
    torch.manual_seed(4)
    _, critic = build_networks({**SPEC, "centralised_critic": True, "share_params": shared})
    x = torch.ones(3, 16, 73)  # identical observations: only the index (or the weights) tells agents apart
    assert float(critic(x).detach().std(-2).min()) > 0
    x = torch.randn(3, 16, 73)
    moved = x.clone()
    moved[:, 5] += 1.0  # another agent's observation changes agent 0's value
    assert not torch.allclose(critic(x)[:, 0], critic(moved)[:, 0])
    # the reference: one linear layer over [every observation, own observation, one-hot index]
    own = critic.own.expand(16, -1, -1)
    whole = [torch.cat([critic.every, own[i], torch.eye(16)[i].unsqueeze(1) * critic.bias[i]]) for i in range(16)]
    inputs = torch.cat([x.flatten(-2).unsqueeze(-2).expand(3, 16, -1), x, torch.eye(16).expand(3, 16, 16)], -1)
    first = torch.stack([inputs[:, i] @ whole[i] for i in range(16)], 1)
    assert torch.allclose(critic(x), critic.rest(critic.activation(first)), atol=1e-5)


def test_the_centralised_critic_scales_with_the_agents_not_their_square():
    """196 intersections (manhattan_28x7) with per-agent weights: the global state is projected
    once per step (the concatenated input took 40 GB a value pass; per-agent global projections
    625 M weights)."""
    spec = {**SPEC, "n_agents": 196, "obs_size": 253, "share_params": False, "centralised_critic": True}
    _, critic = build_networks(spec)
    assert sum(p.numel() for p in critic.parameters()) < 10_000_000
    with torch.no_grad():
        assert critic(torch.randn(4, 196, 253)).shape == (4, 196, 1)


def test_a_centralised_critic_from_before_agent_state_inputs_is_refused_on_resume():
    from agents.ppo.torchrl_policy import check_network_spec
    from envs.errors import CheckpointError

    spec = {**SPEC, "centralised_critic": True, "critic_input": "every_projected_own_index"}
    old = {key: value for key, value in spec.items() if key != "critic_input"}
    with pytest.raises(CheckpointError) as error:
        check_network_spec("last.pt", old, spec)
    assert error.value.field == "torchrl.centralised_critic"
    # it said "= 'every_projected_own_index': ... critic_input=None; resume needs the same": a value that key
    # never takes, and a remedy no setting gives (this version builds no other critic)
    assert error.value.value is True
    assert "cannot continue training it" in error.value.reason
    assert "evaluate.py and export.py run its policy" in error.value.reason
    check_network_spec("last.pt", SPEC, dict(SPEC))  # non-centralised specs carry no critic_input


def test_the_shared_forward_refuses_the_wrong_number_of_agents_as_torchrl_does():
    actor, _ = build_networks(SPEC)
    with pytest.raises(ValueError, match=r"shape\[-2\]=16"):
        actor(torch.zeros(4, 15, 73))


# (4, 16, 16): as many actions as an AVX-512 vector's lanes, the first count the outer-dim kernel gets wrong
@pytest.mark.parametrize("shape", [(256, 16, 8), (64, 16, 8), (4096, 4), (32, 3), (7, 16, 8), (3, 5, 7), (2, 16, 17),
                                   (4, 16, 16)])
@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_log_softmax_actions_gives_log_softmaxs_bits_forward_and_backward(shape, scale):
    # the training shapes (a 256 x 16 minibatch, a 64-copy decision, 8 actions) take the outer-dim
    # kernel where the CPU allows; the others (ragged rows, more actions than lanes) the last-dim one
    generator = torch.Generator().manual_seed(hash((shape, scale)) % 2**31)
    logits = torch.randn(*shape, generator=generator) * scale
    mask = torch.rand(*shape, generator=generator) < 0.7
    mask[..., 0] = True
    logits = masked_logits(logits, mask)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    expected, got = a.log_softmax(-1), log_softmax_actions(b)
    assert got.is_contiguous() and torch.equal(got, expected)
    upstream = torch.randn(*shape, generator=generator)
    (expected * upstream).sum().backward()
    (got * upstream).sum().backward()
    assert torch.equal(b.grad, a.grad)
