"""Classical signal controllers: fixed time, Webster, max pressure, SOTL, by config name.

Each follows the engine's ``Controller`` protocol (``reset(sim)`` / ``act(sim) -> [B, I]``).
May import envs (scenario, engine, rl features); nothing from agents.ppo or agents.deploy.
Names load on first use (PEP 562), so importing the package costs nothing.
"""

from importlib import import_module

_LAZY = {
    "FixedTime": "agents.classical.fixed_time",
    "FixedTimeWebster": "agents.classical.webster",
    "MaxPressure": "agents.classical.max_pressure",
    "SOTL": "agents.classical.sotl",
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
    raise AttributeError(f"module 'agents.classical' has no attribute {name!r}")


__all__ = ["CONTROLLERS", "FixedTime", "FixedTimeWebster", "MaxPressure", "SOTL"]
