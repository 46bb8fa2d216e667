"""The TorchRL trainer's policy: networks, checkpoints (``.pt``) and a controller.

Networks are `torchrl.modules.MultiAgentMLP`s over the ``[..., I, F]`` observations of
`envs.rl.torchrl_env` (one row per intersection; `DirectMultiAgentMLP`: the same networks, with a
faster forward for shared parameters):

- ``ppo_shared`` (``agent.policy=shared``): one actor and one critic for every intersection
  (``share_params=True``, ``centralized=False``);
- ``ppo_independent`` (``agent.policy=independent``): separate parameters per intersection
  (``share_params=False``: the agents' weights stacked and run with ``vmap``);
- ``mappo``: the shared actor with a centralised critic, see
  `TorchRLTrainerConfig.centralised_critic`: MAPPO's agent-specific global state (Yu et al. 2022),
  each intersection's value reads every intersection's observation, then its own and (shared
  parameters) its one-hot index (`AgentStateCritic`). TorchRL's ``centralized=True`` with shared
  parameters gives every agent one value, though each intersection's reward is its own queue.

Hidden layers: ``agent.net_arch`` / ``agent.activation``; with ``agent.ortho_init`` the weights
get SB3's orthogonal init (gain sqrt(2) hidden, 0.01 policy head, 1 value head; zero biases).

A checkpoint is one ``torch.save`` file (written atomically): ``actor`` / ``critic`` /
``optimizer`` state dicts, ``num_timesteps`` and ``meta``, the same dict the SB3 path stores in
``gridlight.json`` (config, env ``describe()``, progress, ``train_demand``) plus
``networks`` (what `build_networks` needs). `TorchRLPolicyController(path)` is
`agents.ppo.policy.PolicyController` (same features, decision timing, max-green rule) with this
actor behind it; `agents.ppo.policy.controller_for_checkpoint` picks the controller by the file's suffix.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F
from torchrl.modules import MultiAgentMLP

from agents.ppo.atomic_files import atomic_path, rng_state
from agents.ppo.policy import PolicyController, check_env_meta
from envs.errors import CheckpointError, ConfigError

CHECKPOINT_FORMAT = 1
CRITIC_INPUT = "every_projected_own_index"  # `AgentStateCritic`'s layout (in a centralised critic's spec)
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
SOURCE = "<controller:torchrl>"


def resolve_centralised(agent_name: str, setting: bool | None) -> bool:
    return agent_name == "mappo" if setting is None else bool(setting)


def network_spec(cfg_agent, n_agents: int, obs_size: int, n_actions: int, centralised: bool) -> dict:
    """What `build_networks` needs, JSON-able (stored in the checkpoint's meta)."""
    return {
        "n_agents": int(n_agents), "obs_size": int(obs_size), "n_actions": int(n_actions),
        "share_params": cfg_agent.policy != "independent", "centralised_critic": bool(centralised),
        "net_arch": [int(w) for w in cfg_agent.net_arch], "activation": str(cfg_agent.activation),
        "ortho_init": bool(cfg_agent.ortho_init),
        **({"critic_input": CRITIC_INPUT} if centralised else {}),
    }


# the config key each `network_spec` entry comes from, for a resume's error message
SPEC_FIELDS = {
    "n_agents": "env.intersections", "obs_size": "env.observation_size", "n_actions": "env.actions",
    "share_params": "agent.policy", "centralised_critic": "torchrl.centralised_critic",
    "net_arch": "agent.net_arch", "activation": "agent.activation", "ortho_init": "agent.ortho_init",
    "critic_input": "torchrl.centralised_critic",  # absent in a centralised critic from before AgentStateCritic
}


def check_network_spec(path: str, saved: dict, spec: dict) -> None:
    """CheckpointError unless the checkpoint's networks (`saved`) are this run's (`spec`), naming
    the config key of the first entry that differs (agent=mappo, or torchrl.centralised_critic=true,
    gives a centralised critic)."""
    if saved.get("centralised_critic") and spec.get("centralised_critic") and "critic_input" not in saved:
        raise CheckpointError(path, "torchrl.centralised_critic", True, "the checkpoint's centralised critic reads "
                              "every intersection's observation alone (written before each intersection's critic "
                              "input, 2026-12-06): this version builds no such critic and cannot continue training "
                              "it; evaluate.py and export.py run its policy (the actor) as trained; train anew, or "
                              "resume it with the gridlight version that wrote it")
    for key, field in SPEC_FIELDS.items():
        if saved.get(key) != spec.get(key):
            raise CheckpointError(path, field, spec.get(key), f"the checkpoint's networks have "
                                  f"{key}={saved.get(key)!r}; resume needs the same")


class DirectMultiAgentMLP(MultiAgentMLP):
    """`MultiAgentMLP` whose shared-parameter, per-agent forward calls its layers on the parameters
    themselves: the same operations on the same tensors, so the same bits, without MultiAgentMLP's
    swap of the parameters into an empty module on every call (~0.15 ms, ~4% of the PPO update on a
    CPU core). Without autograd, many rows on a CPU run in chunks of `CHUNK_ROWS`: a CPU matrix
    product computes each row from that row alone, and chunks keep the activations in cache (GAE's
    value pass over a 64 x 64 x 16 rollout: ~30 -> ~18 ms; a GPU takes them whole). Centralised or
    per-agent networks take MultiAgentMLP's forward."""

    CHUNK_ROWS = 4096

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._layers = None  # the MLP's Sequential: ((weight key, bias key) | activation module, ...)
        if self.share_params and not self.centralized:
            layers = []
            for index, module in enumerate(self._empty_net):
                if isinstance(module, nn.Linear):
                    layers.append(((str(index), "weight"), (str(index), "bias")))
                elif type(module) in ACTIVATIONS.values():
                    layers.append(module)
                else:
                    return  # anything else (norms, dropout): MultiAgentMLP's forward
            self._layers = layers

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self._layers is None or len(inputs) != 1:
            return super().forward(*inputs)
        x = inputs[0]
        if x.shape[-2] != self.n_agents:  # MultiAgentMLP's check
            raise ValueError(f"Multi-agent network expected input with shape[-2]={self.n_agents},"
                             f" but got {x.shape}")
        many_cpu_rows = x.device.type == "cpu" and x.numel() // x.shape[-1] > self.CHUNK_ROWS
        if torch.is_grad_enabled() or not many_cpu_rows:
            return self._layers_on(x)
        rows = x.reshape(-1, *x.shape[-2:])  # [samples, I, F]
        chunks = rows.split(max(1, self.CHUNK_ROWS // self.n_agents))
        return torch.cat([self._layers_on(chunk) for chunk in chunks]).reshape(*x.shape[:-1], -1)

    def _layers_on(self, x: torch.Tensor) -> torch.Tensor:
        params = self.params  # read per call: loading a state dict or .to() may replace them
        for layer in self._layers:
            x = layer(x) if isinstance(layer, nn.Module) else F.linear(x, params[layer[0]], params[layer[1]])
        return x


def _mlp(spec: dict, outputs: int, device) -> MultiAgentMLP:
    arch = spec["net_arch"]
    return DirectMultiAgentMLP(
        n_agent_inputs=spec["obs_size"], n_agent_outputs=outputs, n_agents=spec["n_agents"],
        centralized=False, share_params=spec["share_params"], device=device,
        depth=len(arch), num_cells=list(arch), activation_class=ACTIVATIONS[spec["activation"]],
    )


class AgentStateCritic(nn.Module):
    """A centralised critic with one value per agent, MAPPO's agent-specific global state: agent
    ``i``'s first layer reads every agent's observation, its own and its index. It is computed as
    the sum of three terms, the same layer as one over their concatenation without building ``I``
    copies of the global state (``I``-squared memory: 40 GB a value pass on manhattan_28x7): the
    global state's projection `every`, once per step ``[.., H]``; the own observation's `own`
    ``[.., I, H]``; the index's column, a bias per agent. Shared parameters: one `own`; per agent:
    an `own` each, the global projection still shared (per-agent ones would take ``I² F H``
    weights: 625 M on Manhattan). The layers after the first are `rest`, a `DirectMultiAgentMLP`."""

    def __init__(self, spec: dict, device) -> None:
        super().__init__()
        agents, size, arch = spec["n_agents"], spec["obs_size"], list(spec["net_arch"])
        width = arch[0] if arch else 1  # no hidden layer: the first layer is the value head
        owners = 1 if spec["share_params"] else agents
        bound = (agents * size + size + agents) ** -0.5  # nn.Linear's default over the concatenated input
        self.every = nn.Parameter(torch.empty(agents * size, width, device=device).uniform_(-bound, bound))
        self.own = nn.Parameter(torch.empty(owners, size, width, device=device).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(agents, width, device=device).uniform_(-bound, bound))
        self.activation = ACTIVATIONS[spec["activation"]]() if arch else None
        self.rest = _mlp({**spec, "obs_size": width, "net_arch": arch[1:]}, 1, device) if arch else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        first = (obs.flatten(-2) @ self.every).unsqueeze(-2) + self.bias  # [.., I, H]
        own = obs @ self.own[0] if self.own.shape[0] == 1 else torch.einsum("...if,ifh->...ih", obs, self.own)
        first = first + own
        return first if self.rest is None else self.rest(self.activation(first))

    def orthogonal_init(self, head_gain: float) -> None:
        """SB3's init: orthogonal first-layer weights over the concatenated input (per agent when
        not shared), the index's columns included (the bias per agent), then the rest's."""
        agents, width = self.bias.shape
        gain = 2 ** 0.5 if self.rest is not None else head_gain
        with torch.no_grad():
            whole = torch.empty(width, self.every.shape[0] + self.own.shape[1] + agents, device=self.bias.device)
            nn.init.orthogonal_(whole, gain=gain)
            every, own, index = whole.T.split([self.every.shape[0], self.own.shape[1], agents])
            self.every.copy_(every)
            self.own[0].copy_(own)
            self.bias.copy_(index)  # one-hot index i through the layer: its column i
            for k in range(1, self.own.shape[0]):  # the other agents' own projections, each its own QR
                self.own[k].copy_(nn.init.orthogonal_(torch.empty_like(own.T), gain=gain).T)
        if self.rest is not None:
            orthogonal_init(self.rest, head_gain)


def orthogonal_init(net: MultiAgentMLP, head_gain: float) -> None:
    """SB3's init on a MultiAgentMLP: orthogonal weights (per agent when not shared), zero biases."""
    weights = [(k, v) for k, v in net.params.flatten_keys(".").items() if k.endswith("weight")]
    last = max(int(k.split(".")[-2]) for k, _ in weights)  # the MLP's Sequential index of the head
    with torch.no_grad():
        for key, value in net.params.flatten_keys(".").items():
            if key.endswith("bias"):
                value.zero_()
                continue
            gain = head_gain if int(key.split(".")[-2]) == last else 2 ** 0.5
            rows = value.reshape(-1, *value.shape[-2:])  # [agents or 1, out, in]
            for w in rows:
                nn.init.orthogonal_(w, gain=gain)


def build_networks(spec: dict, device="cpu") -> tuple[MultiAgentMLP, nn.Module]:
    """``(policy_net [.., I, F] -> [.., I, A] logits, value_net [.., I, F] -> [.., I, 1])``."""
    policy_net = _mlp(spec, spec["n_actions"], device)
    value_net = AgentStateCritic(spec, device) if spec["centralised_critic"] else _mlp(spec, 1, device)
    if spec["ortho_init"]:
        orthogonal_init(policy_net, 0.01)
        if isinstance(value_net, AgentStateCritic):
            value_net.orthogonal_init(1.0)
        else:
            orthogonal_init(value_net, 1.0)
    return policy_net, value_net


def masked_logits(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~mask, torch.finfo(logits.dtype).min)


# a float vector's lanes in torch's CPU kernels (Vectorized<float>::size()) per CPU capability
_FLOAT_LANES = {"AVX512": 16, "AVX2": 8}.get(torch.backends.cpu.get_cpu_capability())


def log_softmax_actions(logits: torch.Tensor) -> torch.Tensor:
    """``logits.log_softmax(-1)``, the same bits forward and backward, ~8x faster over 8 actions on a
    CPU core. torch's CPU kernel for the last dim spends most of its time on per-row overhead when
    rows are short; its kernel for an outer dim does the same arithmetic in the same order (max;
    sum of exp(x - max) added one action after the other; Sleef exp and log; x - max - log-sum; the
    backward likewise) provided the actions are fewer than a vector's lanes (the last-dim kernel
    then adds them one by one instead of as a vector) and the rows fill whole vectors (the outer-dim
    kernel takes a scalar std::exp for a remainder). Otherwise, the last-dim kernel."""
    actions, rows = logits.shape[-1], logits.numel() // max(logits.shape[-1], 1)
    if (_FLOAT_LANES is None or logits.device.type != "cpu" or logits.dtype != torch.float32
            or actions >= _FLOAT_LANES or rows % _FLOAT_LANES):
        return logits.log_softmax(-1)
    return logits.movedim(-1, 0).log_softmax(0).movedim(0, -1).contiguous()


class GreedyPolicy(nn.Module):
    """The actor network as the controller sees it: masked action per intersection."""

    def __init__(self, policy_net: nn.Module) -> None:
        super().__init__()
        self.net = policy_net

    @property
    def device(self) -> torch.device:
        return next(iter(self.net.parameters())).device

    def set_training_mode(self, mode: bool) -> None:  # PolicyController.reset calls it
        self.train(mode)

    def forward(self, obs: torch.Tensor, mask: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        logits = masked_logits(self.net(obs), mask)
        if deterministic:
            return logits.argmax(-1)
        return torch.distributions.Categorical(logits=logits).sample()


# ---- checkpoints ---------------------------------------------------------------------------------


def save_torchrl_checkpoint(path: str | Path, *, actor: nn.Module, critic: nn.Module,
                            optimizer: torch.optim.Optimizer | None, num_timesteps: int, meta: dict) -> Path:
    """Write the checkpoint atomically (a crash mid-save leaves the previous one intact)."""
    path = Path(path)
    with atomic_path(path) as partial:
        torch.save({
            "format": CHECKPOINT_FORMAT, "trainer": "torchrl", "num_timesteps": int(num_timesteps),
            "actor": actor.state_dict(), "critic": critic.state_dict(),
            "optimizer": None if optimizer is None else optimizer.state_dict(), "meta": meta,
            "rng": rng_state(),  # resume continues with the same random state
        }, partial)
    return path


def read_torchrl_checkpoint(path: str | Path, device="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(str(path), "checkpoint", str(path), "no such checkpoint file")
    try:
        data = torch.load(path, map_location=device, weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same error to the user
        raise CheckpointError(str(path), "checkpoint", str(path), "not a readable torch checkpoint: truncated or "
                              f"corrupted ({type(error).__name__}: {str(error)[:120]})") from None
    if not isinstance(data, dict) or data.get("trainer") != "torchrl":
        raise CheckpointError(str(path), "trainer", None,
                              "not a gridlight TorchRL checkpoint (train.py, trainer=torchrl)")
    if data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(str(path), "format", data.get("format"), f"expected {CHECKPOINT_FORMAT}")
    check_env_meta(data.get("meta"), str(path))
    return data


def read_torchrl_meta(path: str | Path) -> dict:
    return read_torchrl_checkpoint(path)["meta"]


def load_torchrl_policy(path: str | Path, device="cpu") -> tuple[GreedyPolicy, dict]:
    data = read_torchrl_checkpoint(path, device)
    meta = data["meta"]
    policy_net, _ = build_networks(meta["networks"], device=device)
    policy_net.load_state_dict(data["actor"])
    return GreedyPolicy(policy_net), meta


# ---- the controller ------------------------------------------------------------------------------


class TorchRLPolicyController(PolicyController):
    """`PolicyController` (features, decision timing, max-green rule) driving a TorchRL actor."""

    def __init__(self, checkpoint: str | Path | None = None, *, policy: GreedyPolicy | None = None,
                 meta: dict | None = None, deterministic: bool = True, device: str = "cpu",
                 max_green_s: float | None = None) -> None:
        if policy is None:
            if checkpoint is None:
                raise ConfigError(SOURCE, "checkpoint", None, "need a checkpoint path or a policy")
            policy, meta = load_torchrl_policy(checkpoint, device=device)
        super().__init__(None if checkpoint is None else str(checkpoint), model=SimpleNamespace(policy=policy),
                         meta=meta, deterministic=deterministic, device=device, max_green_s=max_green_s)
        if checkpoint is None:
            self.source = SOURCE

    def actions(self, sim) -> torch.Tensor:
        obs = self.observe(sim)
        dev = self.policy.device
        mask = self.decoder.mask(sim.state).to(dev)
        with torch.no_grad():
            chosen = self.policy(obs.to(dev), mask, self.deterministic)
        return chosen.to(device=sim.device, dtype=torch.int64)


__all__ = [
    "AgentStateCritic", "GreedyPolicy", "TorchRLPolicyController", "build_networks", "check_network_spec",
    "load_torchrl_policy", "network_spec", "read_torchrl_checkpoint", "read_torchrl_meta", "save_torchrl_checkpoint",
]
