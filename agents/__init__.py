"""Controllers: classical baselines now; PPO policies, export and deployment later."""

from agents.fixed_time import FixedTime
from agents.max_pressure import MaxPressure
from agents.sotl import SOTL
from agents.webster import FixedTimeWebster

CONTROLLERS = {
    "fixed_time": FixedTime,
    "max_pressure": MaxPressure,
    "fixed_time_webster": FixedTimeWebster,
    "sotl": SOTL,
}

__all__ = ["CONTROLLERS", "FixedTime", "FixedTimeWebster", "MaxPressure", "SOTL"]
