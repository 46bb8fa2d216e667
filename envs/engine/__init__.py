"""The batched traffic engine: state, pure step, simulator wrapper."""

from envs.engine.simulator import Controller, Simulator
from envs.engine.state import EngineParams, SimState
from envs.engine.step import signal_state, step

__all__ = ["Controller", "EngineParams", "SimState", "Simulator", "signal_state", "step"]
