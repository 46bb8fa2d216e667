"""Max-pressure control (Varaiya 2013), batched over copies and intersections.

Pressure of a movement = vehicles on its incoming lanes - vehicles on its outgoing lanes (each
distinct lane counted once); pressure of a phase = the sum over the movements it makes green.
Once the current phase has shown ``min_green_s`` of green, each intersection switches to the
signal phase of highest pressure (lowest index on a tie). ``use_halting`` counts only halting
vehicles on the incoming lanes instead of all vehicles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from envs.engine.simulator import Simulator
from envs.engine.step import green_elapsed
from envs.errors import ScenarioError
from envs.metrics import lane_halting


@dataclass
class MaxPressure:
    min_green_s: int = 10
    use_halting: bool = False

    def reset(self, sim: Simulator) -> None:
        if self.min_green_s < 0:
            raise ScenarioError("<controller:max_pressure>", "min_green_s", self.min_green_s, "must be >= 0")

    def phase_pressure(self, sim: Simulator) -> torch.Tensor:
        """Pressure of every phase ``[B, I, P]`` (-inf for phases that are not signal phases)."""
        net, state = sim.network, sim.state
        lanes = net.num_lanes
        counts = state.lane_count[:, :lanes].to(torch.float32)
        upstream = lane_halting(state, lanes).to(torch.float32) if self.use_halting else counts
        pad = torch.zeros(counts.shape[0], 1, device=counts.device)
        upstream = torch.cat([upstream, pad], 1)
        downstream = torch.cat([counts, pad], 1)
        in_lanes = torch.where(net.movement_in_lanes >= 0, net.movement_in_lanes, lanes)  # [M, E]
        out_lanes = torch.where(net.movement_out_lanes >= 0, net.movement_out_lanes, lanes)
        batch = counts.shape[0]
        inflow = upstream[:, in_lanes.reshape(-1)].reshape(batch, *in_lanes.shape).sum(-1)
        outflow = downstream[:, out_lanes.reshape(-1)].reshape(batch, *out_lanes.shape).sum(-1)
        movement = (inflow - outflow) * net.movement_valid  # [B, M]
        movement = movement.reshape(batch, net.num_intersections, -1)  # [B, I, K]
        phase = torch.einsum("bik,ipk->bip", movement, net.phase_green.to(torch.float32))
        return torch.where(net.signal_phase.unsqueeze(0), phase, -torch.inf)

    def act(self, sim: Simulator) -> torch.Tensor:
        pressure = self.phase_pressure(sim)
        best = pressure.argmax(dim=-1)  # first maximum: lowest phase index on a tie
        ready = green_elapsed(sim.network, sim.params, sim.state) >= self.min_green_s
        return torch.where(ready, best, -1)
