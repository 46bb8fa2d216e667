"""Classical signal controllers by config name (``CONTROLLERS``): fixed time, Webster, max
pressure, SOTL, Efficient-MP and Advanced-MP, each with the engine's ``reset(sim)`` / ``act(sim) -> [B, I]`` protocol.
May import envs; nothing from agents.ppo or agents.deploy. Names load on first use (PEP 562)
and are then kept, so importing the package costs nothing and ``CONTROLLERS`` is built once."""

from importlib import import_module

_MODULES = {
    "FixedTime": "agents.classical.fixed_time",
    "FixedTimeWebster": "agents.classical.webster",
    "MaxPressure": "agents.classical.max_pressure",
    "SOTL": "agents.classical.sotl",
    "EfficientMaxPressure": "agents.classical.efficient_pressure",
    "AdvancedMaxPressure": "agents.classical.efficient_pressure",
}
_CONFIG_NAMES = {
    "fixed_time": "FixedTime",
    "max_pressure": "MaxPressure",
    "fixed_time_webster": "FixedTimeWebster",
    "sotl": "SOTL",
    "efficient_mp": "EfficientMaxPressure",
    "advanced_mp": "AdvancedMaxPressure",
}


def __getattr__(name: str):
    if name in _MODULES:
        value = getattr(import_module(_MODULES[name]), name)
    elif name == "CONTROLLERS":
        value = {config: __getattr__(cls) for config, cls in _CONFIG_NAMES.items()}
    else:
        raise AttributeError(f"module 'agents.classical' has no attribute {name!r}")
    globals()[name] = value  # found directly from now on: __getattr__ is not called again
    return value


__all__ = ["CONTROLLERS", "AdvancedMaxPressure", "EfficientMaxPressure", "FixedTime", "FixedTimeWebster",
           "MaxPressure", "SOTL"]
