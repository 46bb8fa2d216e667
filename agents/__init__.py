"""Controllers: classical baselines now; PPO policies, export and deployment later."""

from agents.fixed_time import FixedTime
from agents.max_pressure import MaxPressure

CONTROLLERS = {"fixed_time": FixedTime, "max_pressure": MaxPressure}

__all__ = ["CONTROLLERS", "FixedTime", "MaxPressure"]
