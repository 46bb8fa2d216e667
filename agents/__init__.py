"""Controllers behind one interface, ``reset(sim)`` / ``act(sim) -> [B, I]`` phase commands.

The classical ones are listed in CONTROLLERS (by config name); a trained PPO checkpoint runs as
``agents.ppo.PolicyController(path)`` (imported on demand: it loads SB3). The deployment
controller, ``agents.controller``, runs an exported policy with numpy and onnxruntime only, so
this package imports nothing at import time: the names below load on first use (PEP 562).
"""

from importlib import import_module

_LAZY = {
    "FixedTime": "agents.fixed_time",
    "FixedTimeWebster": "agents.webster",
    "MaxPressure": "agents.max_pressure",
    "SOTL": "agents.sotl",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name == "CONTROLLERS":
        return {
            "fixed_time": __getattr__("FixedTime"),
            "max_pressure": __getattr__("MaxPressure"),
            "fixed_time_webster": __getattr__("FixedTimeWebster"),
            "sotl": __getattr__("SOTL"),
        }
    raise AttributeError(f"module 'agents' has no attribute {name!r}")


__all__ = ["CONTROLLERS", "FixedTime", "FixedTimeWebster", "MaxPressure", "SOTL"]
