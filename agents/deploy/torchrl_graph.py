"""The TorchRL trainer's actor (`agents.ppo.torchrl_policy`) as plain, ONNX-exportable torch ops,
for `agents.deploy.export.DeployablePolicy`.

The actor is a `torchrl.modules.MultiAgentMLP` over ``[..., I, F]``: one MLP applied to every
intersection's row (``share_params``: ppo_shared, mappo) or one MLP per intersection, its weights
stacked ``[I, out, in]`` and run with ``vmap`` (ppo_independent). The deployed graph sees rows
``[N, F]`` with each row's ``intersection`` index instead, so here the row's logits are that MLP
on that row: the shared weights for every row, or each row's own weights gathered by its
intersection index (a batched matrix product). The observation is the one the training env
built, ``intersection_id`` one-hot included where the agent asked for it: the MLP reads every
feature, as in training.
"""

from __future__ import annotations

import torch
from torch import nn


class TorchRLActor(nn.Module):
    """Rows ``[N, F]`` and their intersections ``[N]`` -> the actor's logits ``[N, A]``."""

    def __init__(self, policy: nn.Module) -> None:
        """`policy`: a `GreedyPolicy` (``load_torchrl_policy``) or its actor `MultiAgentMLP`."""
        super().__init__()
        net = getattr(policy, "net", policy)
        self.shared = bool(net.share_params)
        params = {key: value.detach().cpu().clone() for key, value in net.params.flatten_keys(".").items()}
        self.layers = nn.ModuleList()
        self.kinds: list[str] = []
        for index, module in enumerate(net._empty_net):  # the MLP's Sequential: Linear, activation, ...
            if isinstance(module, nn.Linear):
                holder = nn.Module()
                holder.register_buffer("weight", params[f"{index}.weight"])  # [out, in] or [I, out, in]
                holder.register_buffer("bias", params[f"{index}.bias"])  # [out] or [I, out]
                self.layers.append(holder)
                self.kinds.append("linear")
            elif not any(key.startswith(f"{index}.") for key in params):
                # a stateless activation (Tanh, ReLU); the MultiAgentMLP keeps every layer's weights
                # in `params`, none in `_empty_net`, so a layer with state (PReLU, LayerNorm) shows there
                self.layers.append(type(module)())
                self.kinds.append("activation")
            else:
                raise TypeError(f"cannot export actor layer {index}: {module!r}")

    def forward(self, obs: torch.Tensor, intersection: torch.Tensor) -> torch.Tensor:
        x = obs
        for kind, layer in zip(self.kinds, self.layers):
            if kind == "activation":
                x = layer(x)
            elif self.shared:
                x = nn.functional.linear(x, layer.weight, layer.bias)
            else:  # each row through its intersection's weights
                weight = layer.weight[intersection]  # [N, out, in]
                x = torch.bmm(weight, x.unsqueeze(2)).squeeze(2) + layer.bias[intersection]
        return x


__all__ = ["TorchRLActor"]
