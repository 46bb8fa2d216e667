"""The controller interface shared by classical controllers (and later, learned policies)."""

from __future__ import annotations

from envs.engine.simulator import Controller

__all__ = ["Controller"]
