"""evaluate.py's options that one of its tasks reads and the other ignores, refused when given
(not left at their defaults) to the task that would ignore them: ``detection.*`` with
``task=signals`` (and the GIF's options without ``render=true``); the table's controllers, the
GIF and ``eval.seeds`` with ``task=incident_detection``, which runs ``detection.controller`` on
``detection.copies`` copies. A bad value there (``detection.copies=0`` for the signals task)
passed silently too, and so did a render_fps over 50, faster than a GIF can play."""

from __future__ import annotations

from omegaconf import OmegaConf

from agents.ppo.value_checks import plain
from envs.errors import ConfigError
from envs.rl.render import MAX_GIF_FPS

# task=signals' own keys (checkpoint= and deployed= are refused by the detection task itself)
SIGNALS_ONLY = ("controllers", "checkpoint_max_green_s", "render", "render_every_s", "render_fps", "eval.seeds")


def _first_difference(given, default, path: str):
    """The first leaf (``path``, value) where `given` differs from `default`, or None."""
    if isinstance(given, dict) and isinstance(default, dict):
        for key in given:
            found = _first_difference(given[key], default.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    return None if given == default else (path, given)


def check_task_options(cfg, defaults) -> None:
    """ConfigError naming the first option `cfg.task` does not read that differs from `defaults`
    (the schema's, an ``EvaluateAppConfig``)."""
    def plain_at(node, key):
        return plain(OmegaConf.select(node, key))

    if cfg.task == "signals":
        found = _first_difference(plain_at(cfg, "detection"), plain_at(defaults, "detection"), "detection")
        if found:
            raise ConfigError("<config>", found[0], found[1], "only task=incident_detection reads it")
        for key in () if cfg.render else ("render_every_s", "render_fps"):  # no GIF: nothing reads them
            if plain_at(cfg, key) != plain_at(defaults, key):
                raise ConfigError("<config>", key, plain_at(cfg, key), "only render=true reads it")
        if cfg.render and plain_at(cfg, "render_fps") > MAX_GIF_FPS:  # it was written, and played at 10 fps
            raise ConfigError("<config>", "render_fps", plain_at(cfg, "render_fps"), f"must be <= {MAX_GIF_FPS}: "
                              "a GIF's frame delays are whole hundredths of a second, and viewers show one under "
                              "0.02 s as 0.1 s")
    elif cfg.task == "incident_detection":
        for key in SIGNALS_ONLY:
            if plain_at(cfg, key) != plain_at(defaults, key):
                raise ConfigError("<config>", key, plain_at(cfg, key), "task=incident_detection does not read it: "
                                  "it runs detection.controller on detection.copies copies; task=signals does")
