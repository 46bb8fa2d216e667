"""Controllers behind one interface, ``reset(sim)`` / ``act(sim) -> [B, I]`` phase commands.

The classical ones are listed in CONTROLLERS (by config name); a trained PPO checkpoint runs as
``agents.ppo.PolicyController(path)`` (imported on demand: it loads SB3).
"""

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
