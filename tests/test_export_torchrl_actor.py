"""`agents.deploy.torchrl_graph.TorchRLActor`, the TorchRL actor as plain ops, on its own: each
row's logits are the MultiAgentMLP's for that row's intersection (shared or per-intersection
weights), and a layer with weights of its own besides the Linear ones is refused rather than
rebuilt with default weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchrl.modules import MultiAgentMLP

from agents.deploy.torchrl_graph import TorchRLActor


def _actor_mlp(share_params: bool, activation=nn.Tanh, **kwargs) -> MultiAgentMLP:
    torch.manual_seed(0)
    return MultiAgentMLP(n_agent_inputs=5, n_agent_outputs=3, n_agents=3, centralised=False,
                         share_params=share_params, depth=2, num_cells=8, activation_class=activation, **kwargs)


@pytest.mark.parametrize("share_params", [True, False])
@pytest.mark.parametrize("activation", [nn.Tanh, nn.ReLU])
def test_each_rows_logits_are_the_mlps_for_its_intersection(share_params, activation):
    net = _actor_mlp(share_params, activation)
    obs = torch.randn(4, 3, 5)  # [batch, intersections, features]
    with torch.no_grad():
        expected = net(obs)
        rows = torch.tensor([2, 0, 1, 1, 0, 2])  # rows in any order, an intersection twice
        batch = torch.tensor([0, 1, 2, 3, 3, 1])
        got = TorchRLActor(net)(obs[batch, rows], rows)
    torch.testing.assert_close(got, expected[batch, rows])


@pytest.mark.parametrize("activation, extra", [
    (nn.PReLU, {}),  # was rebuilt as nn.PReLU() with its default slope, the trained one dropped
    (nn.Tanh, {"norm_class": nn.LayerNorm, "norm_kwargs": {"normalized_shape": 8}}),
])
@pytest.mark.parametrize("share_params", [True, False])
def test_a_layer_with_weights_of_its_own_is_refused(activation, extra, share_params):
    net = _actor_mlp(share_params, activation, **extra)
    with pytest.raises(TypeError, match=r"cannot export actor layer 1: (PReLU|LayerNorm)"):
        TorchRLActor(net)
