"""Independent per-intersection policies trained as ONE SB3 policy (``agent=ppo_independent``).

Every layer holds weights ``[I, in, out]``: intersection i has its own policy network, action
head, value network and value head, and no parameter is shared. A batch of observation rows
(any mix of intersections, in any order: SB3 shuffles minibatches) is evaluated as one batched
matmul per layer: rows are grouped by intersection into a padded ``[I, R, in]`` block
(R = the most rows any intersection has), multiplied with ``torch.baddbmm`` and scattered back.
Each row's intersection is read from the ``intersection_id`` one-hot, the last I entries of the
observation (train.py appends that feature last); those entries are not fed to the layers.

The networks end in the logits ``[N, A]`` and the value ``[N, 1]``, so SB3's ``action_net`` and
``value_net`` are identities; everything else (masking, PPO losses, saving) is sb3-contrib's
`MaskableActorCriticPolicy`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn


@dataclass(frozen=True)
class RowGroups:
    """Where each row goes in the padded per-intersection block ``[I, rows, ...]``."""

    index: torch.Tensor  # [N] the row's intersection
    slot: torch.Tensor  # [N] the row's position inside its intersection's block
    rows: int  # R: the largest block

    @staticmethod
    def of(index: torch.Tensor, num_groups: int) -> "RowGroups":
        order = torch.argsort(index, stable=True)
        counts = torch.bincount(index, minlength=num_groups)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.empty_like(index)
        slot[order] = torch.arange(index.shape[0], device=index.device) - starts[index[order]]
        rows = int(counts.max()) if index.numel() else 0
        return RowGroups(index, slot, rows)


class IndexedLinear(nn.Module):
    """``I`` independent linear layers; row n uses layer ``groups.index[n]``."""

    def __init__(self, num: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(num, out_features))
        self.reset_parameters(math.sqrt(2), orthogonal=True)

    def reset_parameters(self, gain: float, orthogonal: bool) -> None:
        """Each intersection's layer initialised on its own, as SB3 initialises one nn.Linear:
        orthogonal with `gain` (or PyTorch's default uniform), zero bias."""
        with torch.no_grad():
            for w in self.weight:
                if orthogonal:
                    nn.init.orthogonal_(w.T, gain=gain)  # w.T is [out, in] like nn.Linear's
                else:
                    bound = 1.0 / math.sqrt(w.shape[0])
                    nn.init.uniform_(w, -bound, bound)
            self.bias.zero_()

    def forward(self, x: torch.Tensor, groups: RowGroups) -> torch.Tensor:
        num, _, out_features = self.weight.shape
        block = x.new_zeros(num, groups.rows, x.shape[1])
        block = block.index_put((groups.index, groups.slot), x)
        out = torch.baddbmm(self.bias.unsqueeze(1), block, self.weight)  # [I, R, out]
        return out[groups.index, groups.slot]

    def forward_rows(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The same layer row by row: each row's own weights gathered, one ``[N]``-batched
        matmul. No data-dependent shapes, so it exports to ONNX (agents/deploy/export.py)."""
        return torch.bmm(x.unsqueeze(1), self.weight[index]).squeeze(1) + self.bias[index]


class IndexedMlp(nn.Module):
    """Per-intersection MLP: IndexedLinear layers with an activation between them."""

    def __init__(self, num: int, sizes: list[int], activation_fn: type[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(IndexedLinear(num, a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = activation_fn()

    def init_weights(self, hidden_gain: float, out_gain: float, orthogonal: bool) -> None:
        for k, layer in enumerate(self.layers):
            layer.reset_parameters(out_gain if k == len(self.layers) - 1 else hidden_gain, orthogonal)

    def forward(self, x: torch.Tensor, groups: RowGroups) -> torch.Tensor:
        for k, layer in enumerate(self.layers):
            x = layer(x, groups)
            if k < len(self.layers) - 1:
                x = self.activation(x)
        return x

    def forward_rows(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """`forward` with each row's intersection given as ``index [N]`` (see IndexedLinear)."""
        for k, layer in enumerate(self.layers):
            x = layer.forward_rows(x, index)
            if k < len(self.layers) - 1:
                x = self.activation(x)
        return x


class IndexedMlpExtractor(nn.Module):
    """SB3's mlp_extractor interface; its latents are already the logits and the value."""

    def __init__(self, features_dim: int, num_intersections: int, num_actions: int,
                 net_arch: list[int] | dict, activation_fn: type[nn.Module]) -> None:
        super().__init__()
        if features_dim <= num_intersections:
            raise ValueError(
                f"observation of {features_dim} features cannot end in a {num_intersections}-wide "
                "intersection_id one-hot and hold anything else"
            )
        pi_arch = list(net_arch.get("pi", [])) if isinstance(net_arch, dict) else list(net_arch)
        vf_arch = list(net_arch.get("vf", [])) if isinstance(net_arch, dict) else list(net_arch)
        inputs = features_dim - num_intersections
        self.num_intersections = num_intersections
        self.policy_net = IndexedMlp(num_intersections, [inputs, *pi_arch, num_actions], activation_fn)
        self.value_net = IndexedMlp(num_intersections, [inputs, *vf_arch, 1], activation_fn)
        self.latent_dim_pi = num_actions
        self.latent_dim_vf = 1

    def split(self, features: torch.Tensor) -> tuple[torch.Tensor, RowGroups]:
        """The features the layers see and each row's intersection (from the trailing one-hot)."""
        count = self.num_intersections
        index = features[:, -count:].argmax(-1)
        return features[:, :-count], RowGroups.of(index, count)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, groups = self.split(features)
        return self.policy_net(x, groups), self.value_net(x, groups)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(*self.split(features))

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(*self.split(features))


class IndexedActorCriticPolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy with separate parameters per intersection (see the module doc)."""

    def __init__(self, observation_space, action_space, lr_schedule, num_intersections: int = 1,
                 **kwargs) -> None:
        self.num_intersections = int(num_intersections)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule) -> None:
        self.mlp_extractor = IndexedMlpExtractor(
            self.features_dim, self.num_intersections, int(self.action_space.n), self.net_arch,
            self.activation_fn,
        )
        # the extractor ends in the heads (they need the row's intersection too)
        self.action_net = nn.Identity()
        self.value_net = nn.Identity()
        # SB3's gains: sqrt(2) for hidden layers, 0.01 for the action head, 1 for the value head
        extractor = self.mlp_extractor
        extractor.policy_net.init_weights(math.sqrt(2), 0.01, self.ortho_init)
        extractor.value_net.init_weights(math.sqrt(2), 1.0, self.ortho_init)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict:
        data = super()._get_constructor_parameters()
        data["num_intersections"] = self.num_intersections
        return data


__all__ = ["IndexedActorCriticPolicy", "IndexedLinear", "IndexedMlp", "IndexedMlpExtractor", "RowGroups"]
