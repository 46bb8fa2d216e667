"""What `BatchedSignalEnv` reads from the engine state at each decision, as one function.

The observations and the reward terms evaluated once per decision (``per_step=False``) are a few
dozen small tensor operations (gathers over the lane layout, one-hots, sums): run eagerly they
took ~1.7 ms per decision of ``hangzhou_4x4`` at B = 64 on the 2-core CPU, more than one engine
step. With ``compile=True`` (the env compiles its engine) they are compiled into one graph
(~0.6 ms), with the engine's CPU options.

The compiled readout only reads the network, the layout, the engine parameters and the state it
is given, so it gives what the eager functions give (the tests compare them). A feature or
reward that reads anything that changes outside the state — the probe sensor's reports, faulty
detectors' per-episode draws — would be frozen into the graph or recompile at every change, so
with those the readout stays eager.
"""

from __future__ import annotations

from typing import Callable

import torch

from envs.engine.simulator import CPU_COMPILE_OPTIONS, COMPILED_SHAPES
from envs.engine.state import SimState
from envs.rl.features import FeatureContext, Observation, RewardTerm, observe

# (state) -> (observations [B, I, F] float32, each decision-time reward term times its weight [B, I])
Readout = Callable[[SimState], tuple[torch.Tensor, list[torch.Tensor]]]


def decision_readout(features: list[Observation], terms: dict[str, RewardTerm], weights: dict[str, float],
                     normalise: bool, base: FeatureContext, *, compile: bool, stateful: bool) -> Readout:
    """The observations and the weighted decision-time reward terms of a state; `base` is the
    static feature context. ``compile`` compiles it unless ``stateful`` (a feature or term reads
    state kept outside the engine's: see the module docstring)."""
    at_decision = [(weights[name], term) for name, term in terms.items() if not term.per_step]

    def read(state: SimState) -> tuple[torch.Tensor, list[torch.Tensor]]:
        ctx = base.at(state)
        return observe(features, ctx, normalise), [weight * term.compute(ctx) for weight, term in at_decision]

    if not compile or stateful:
        return read
    dynamo_config = torch._dynamo.config  # one graph per state shape (slot pool growth), as the engine's
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, COMPILED_SHAPES)
    options = CPU_COMPILE_OPTIONS if base.network.device.type == "cpu" else None
    return torch.compile(read, dynamic=False, options=options)


__all__ = ["Readout", "decision_readout"]
