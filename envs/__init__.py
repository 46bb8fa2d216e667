"""gridlight environments: scenarios, the batched engine, and what is built on them.

Subpackages, in import order (each may import only those before it): scenario/ → engine/ →
incidents/ → evaluation/ → rl/. agents/ and the entry points build on all of them.

Importing `envs` registers ``gridlight/TrafficSignal-v0`` with Gymnasium (single env and
vector entry point). ``envs.parallel_env(scenario=...)`` builds the PettingZoo ParallelEnv and
``envs.sb3_vec_env(scenario=..., copies=B)`` the SB3 VecEnv. The adapters are imported lazily,
so the engine alone does not load PettingZoo or SB3 (Gymnasium itself is imported to register
the id).
"""

from __future__ import annotations

import gymnasium

ENV_ID = "gridlight/TrafficSignal-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="envs.rl.gym_env:TrafficSignalEnv",
        vector_entry_point="envs.rl.gym_env:TrafficSignalVectorEnv",
    )


def parallel_env(**kwargs):
    """The PettingZoo ParallelEnv: one agent per signalised intersection (its roadnet id)."""
    from envs.rl.pettingzoo_env import TrafficSignalParallelEnv

    return TrafficSignalParallelEnv(**kwargs)


def sb3_vec_env(**kwargs):
    """The SB3 VecEnv whose sub-environments are the (copy, intersection) pairs."""
    from envs.rl.sb3_env import IntersectionVecEnv

    return IntersectionVecEnv(**kwargs)


__all__ = ["ENV_ID", "parallel_env", "sb3_vec_env"]
