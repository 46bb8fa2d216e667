"""Several controllers on one batched simulator, each owning a subset of the copies.

evaluate.py runs every controller on the same evaluation demands in one batched run: copy
``c * seeds + s`` is controller c on demand seed s. Every controller computes its commands for
the whole batch (so its internal state stays batch-shaped) and the mix keeps each copy's row
from its owner; the engine step is shared. A controller with an ``own_copies(mask)`` method is
told which copies are its own (the deployment controller then decides for those only: the
others' signals follow other controllers, which its cross-check would rightly call faults).
"""

from __future__ import annotations

import torch

from envs.engine.simulator import Controller, Simulator


class ControllerMix:
    def __init__(self, controllers: list[Controller], owner: torch.Tensor) -> None:
        if owner.dim() != 1 or int(owner.min()) < 0 or int(owner.max()) >= len(controllers):
            raise ValueError(f"owner must map each copy to a controller in [0, {len(controllers)})")
        self.controllers = controllers
        self.owner = owner

    def reset(self, sim: Simulator) -> None:
        if self.owner.shape[0] != sim.batch_size:
            raise ValueError(f"owner has {self.owner.shape[0]} copies, the simulator {sim.batch_size}")
        self.owner = self.owner.to(sim.device)
        for c, controller in enumerate(self.controllers):
            controller.reset(sim)
            if hasattr(controller, "own_copies"):  # controllers with per-copy state skip the others
                controller.own_copies(self.owner == c)

    def act(self, sim: Simulator) -> torch.Tensor:
        command = sim.keep_command()
        for c, controller in enumerate(self.controllers):
            mine = (self.owner == c).unsqueeze(1)
            command = torch.where(mine, controller.act(sim).to(command.dtype), command)
        return command
