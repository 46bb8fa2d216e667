"""gridlight environments. Subpackages in import order, each importing only those before it:
scenario/ → engine/ → incidents/ → evaluation/ → rl/. Importing `envs` registers
``gridlight/TrafficSignal-v0`` with Gymnasium; `parallel_env`, `sb3_vec_env` and `torchrl_env`
build the PettingZoo, SB3 and TorchRL adapters, imported only when asked for."""

from __future__ import annotations

ENV_ID = "gridlight/TrafficSignal-v0"

try:
    import gymnasium
except ImportError:  # a signal cabinet runs only agents/deploy/runtime.py (numpy + onnxruntime)
    gymnasium = None  # and imports envs.errors: there is no Gymnasium there to register with

if gymnasium is not None and ENV_ID not in gymnasium.registry:
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


def torchrl_env(**kwargs):
    """The TorchRL EnvBase: batch size [B] (``copies``), one agent group ``"intersections"``;
    ``compile_engine=True`` compiles the engine step."""
    from envs.rl.torchrl_env import TrafficSignalTorchRLEnv

    return TrafficSignalTorchRLEnv(**kwargs)


__all__ = ["ENV_ID", "parallel_env", "sb3_vec_env", "torchrl_env"]
