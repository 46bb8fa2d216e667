"""The batched traffic engine: its state, the pure step, the Simulator around it, and what a
lane detector reads from a state (`readings`) and an intersection's layout (`intersections`).

May import envs.scenario and envs.errors only: it knows nothing of RL, evaluation or agents.
"""

from envs.engine.simulator import Controller, Simulator
from envs.engine.state import EngineParams, SimState
from envs.engine.signals import signal_state
from envs.engine.step import step

__all__ = ["Controller", "EngineParams", "SimState", "Simulator", "signal_state", "step"]
