"""Self-organising traffic lights (SOTL; Gershenson 2005, rules as in Cools, Gershenson and
D'Hooghe 2008), batched over copies and intersections, extended to multi-phase plans.

Vehicles are counted per movement: a vehicle on a lane belongs to the movement it takes next
(its route's next turn), so a lane shared by a left and a through movement is split correctly.
A vehicle *approaches* a movement when its front is within ``distance_m`` of the stop line
(moving or waiting). The current phase's movements are *green*, the others *red*; movements
green in every signal phase (the datasets' right turns) are neither: switching does not change
them.

Every step, for every intersection:

- ``kappa += vehicles approaching red`` (vehicle-seconds); kappa restarts at 0 whenever the
  phase changes.
- **Rule 1 (threshold)**: switch when ``kappa >= theta``...
- **Rule 3 (platoon)**: ...unless a few vehicles (more than 0, at most ``mu``) are within
  ``omega_m`` of a green stop line: a short platoon about to cross is not cut.
- **Rule 4 (empty green)**: switch when no vehicle approaches green within ``distance_m`` and at
  least one approaches red (regardless of kappa and of rule 3).
- **Rule 2 (minimum green)**: no switch before the current phase has shown ``min_green_s`` of
  green (`green_elapsed`, intergreen excluded; the engine's own minimum applies as well).
- **Max green** (optional, not in Gershenson's rules): with ``max_green_s`` set, switch after that
  much green whenever a vehicle approaches red, platoon or not.

Cools et al.'s rules 5-6 (downstream blockage) are not implemented: the engine's spillback rule
already stops vehicles from entering a full lane.

Which phase comes next: ``switch_to="demand"`` (default) the signal phase whose green would
serve the most vehicles now approaching red, ties going to the phase next in the cyclic order;
``switch_to="cyclic"`` the next signal phase in index order (Gershenson's two-phase alternation
generalised; wasteful on 8-phase plans where several phases serve the same movements).
Transition phases (right turns only, each green in a signal phase too) are never commanded.

SOTL runs on approach detectors. With ``detectors`` set each lane's count of approaching
vehicles (within ``distance_m``, and within ``omega_m``) is what a faulty detector reports, with a
fixed-time fail-safe where they are all dead (`agents.classical.detector_readings`). A lane's reported
count is split over the movements of the vehicles on it in their true shares (on the datasets'
single-movement lanes: all to its one movement); phantom vehicles on an empty lane go evenly to
the movements the lane serves.

Defaults: ``distance_m = 80`` (Cools et al. count within 50-100 m), ``omega_m = 25`` (about 3
queued vehicles), ``mu = 3``, ``theta = 40`` vehicle-seconds (e.g. 4 vehicles waiting 10 s),
``min_green_s = 10``, ``max_green_s = None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from agents.classical.detector_readings import FaultyReadings
from envs.engine.simulator import Simulator
from envs.engine.signals import green_elapsed
from envs.errors import CommandError, ConfigError
from envs.engine.intersections import always_green

SOURCE = "<controller:sotl>"
CYCLIC_TIE_BREAK = 1e-3  # prefers the cyclically next phase among equal counts (counts are whole)


@dataclass
class SOTL:
    theta: float = 40.0  # vehicle-seconds on red that trigger a switch
    distance_m: float = 80.0  # approach distance counted (rules 1 and 4)
    omega_m: float = 25.0  # platoon distance (rule 3)
    mu: int = 3  # at most this many vehicles within omega_m of green are not cut (rule 3)
    min_green_s: float = 10.0
    max_green_s: float | None = None
    switch_to: str = "demand"  # "demand" | "cyclic"
    # faulty approach detectors (envs.incidents.perturbations.DetectorFaults); None reads the true counts
    detectors: object | None = field(default=None, repr=False, compare=False)
    _readings = None  # FaultyReadings over `detectors`, built by reset

    def __post_init__(self) -> None:
        self._validate()  # at construction, not only when a run starts

    def _validate(self) -> None:
        def number(name, minimum, strict):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < minimum or (strict and value == minimum):
                relation = ">" if strict else ">="
                raise ConfigError(SOURCE, name, value, f"must be a finite number {relation} {minimum}")

        number("theta", 0, True)
        number("distance_m", 0, True)
        number("omega_m", 0, False)
        number("min_green_s", 0, False)
        if isinstance(self.mu, bool) or not isinstance(self.mu, int) or self.mu < 0:
            raise ConfigError(SOURCE, "mu", self.mu, "must be an integer >= 0")
        if self.max_green_s is not None:
            number("max_green_s", 0, True)
            if self.max_green_s < self.min_green_s:
                raise ConfigError(
                    SOURCE, "max_green_s", self.max_green_s,
                    f"must be >= min_green_s ({self.min_green_s})",
                )
        if self.switch_to not in ("demand", "cyclic"):
            raise ConfigError(SOURCE, "switch_to", self.switch_to, "expected 'demand' or 'cyclic'")

    def reset(self, sim: Simulator) -> None:
        self._validate()
        net = sim.network
        num_inter, num_phases = net.num_intersections, int(net.phase_green.shape[1])
        signal = net.signal_phase  # [I, P]
        valid = net.movement_valid.reshape(num_inter, -1)  # [I, K]
        self._switchable = valid & ~always_green(net)  # [I, K] movements a switch can turn red or green
        self._phase_green = net.phase_green  # [I, P, K]
        self._signal = signal
        # cyclic rank of each phase among its intersection's signal phases; next phase in that order
        rank = torch.cumsum(signal.to(torch.int64), 1) - 1  # [I, P], valid where signal
        count = signal.sum(1, keepdim=True).clamp(min=1)
        # distance from phase p (current) to phase q in the cycle, 1..n-1 (0 for q == p)
        self._cyclic_distance = torch.remainder(
            rank.unsqueeze(1) - rank.unsqueeze(2), count.unsqueeze(-1)
        )
        nxt = torch.empty(num_inter, num_phases, dtype=torch.int64, device=net.device)
        for i in range(num_inter):  # static structure, once
            cycle = torch.nonzero(signal[i]).flatten().tolist()
            for p in range(num_phases):
                later = [q for q in cycle if q > p]
                nxt[i, p] = later[0] if later else (cycle[0] if cycle else 0)
        self._next_cyclic = nxt
        self._has_choice = signal.sum(1) >= 1  # [I]
        batch = sim.batch_size
        self.kappa = torch.zeros(batch, num_inter, dtype=torch.float32, device=net.device)
        self._last_phase = sim.state.phase.clone()
        self._min_green = max(float(self.min_green_s), float(sim.params.min_green_s))
        self._readings = None
        if self.detectors is not None:
            self._readings = FaultyReadings(self.detectors, sim)

    def approaching(self, sim: Simulator, distance: float) -> torch.Tensor:
        """Vehicles within `distance` metres of the stop line, by next movement ``[B, I, K]``
        (as the approach detectors report them)."""
        net, state = sim.network, sim.state
        slots = state.veh_lane.shape[1] - 1
        lane = state.veh_lane[:, :slots]
        active = lane >= 0
        lane_c = torch.where(active, lane, 0)
        to_stop = net.lane_length[lane_c] - state.veh_pos[:, :slots]
        move = state.veh_move[:, :slots]  # the engine's cache of each vehicle's next movement
        near = active & (to_stop <= distance) & (move >= 0)
        moves, batch = net.num_movements, lane.shape[0]
        if self._readings is not None:  # the platoon detector has its own noise stream
            main = distance == self.distance_m
            seen, _ = self._readings.by_movement("approach" if main else "approach_platoon", state, lane, near, main,
                                                 zone=distance)
            return seen.reshape(batch, net.num_intersections, -1)
        index = torch.where(near, move, moves)
        out = torch.zeros(batch, moves + 1, dtype=torch.float32, device=lane.device)
        out.scatter_add_(1, index, near.to(torch.float32))
        return out[:, :moves].reshape(batch, net.num_intersections, -1)

    def act(self, sim: Simulator) -> torch.Tensor:
        if not hasattr(self, "_phase_green"):  # an AttributeError before
            raise CommandError("<controller>", "act", "SOTL", "call reset(sim) before act(sim)")
        state = sim.state
        phase = state.phase  # [B, I]
        inter = torch.arange(sim.network.num_intersections, device=phase.device)
        current = self._phase_green[inter, phase]  # [B, I, K]
        switchable = self._switchable.unsqueeze(0)
        green = current & switchable
        red = ~current & switchable

        near_d = self.approaching(sim, self.distance_m)
        near_w = self.approaching(sim, self.omega_m) if self.omega_m != self.distance_m else near_d
        on_red = (near_d * red).sum(-1)  # [B, I]
        on_green = (near_d * green).sum(-1)
        platoon_count = (near_w * green).sum(-1)

        changed = phase != self._last_phase
        self.kappa = torch.where(changed, 0.0, self.kappa) + on_red
        self._last_phase = phase.clone()

        elapsed = green_elapsed(sim.network, sim.params, state).to(torch.float32)
        ready = elapsed >= self._min_green
        platoon = (platoon_count > 0) & (platoon_count <= self.mu)
        switch = ready & (((self.kappa >= self.theta) & ~platoon) | ((on_green == 0) & (on_red > 0)))
        if self.max_green_s is not None:
            switch = switch | ((elapsed >= self.max_green_s) & (on_red > 0))

        if self.switch_to == "cyclic":
            target = self._next_cyclic[inter, phase]
        else:
            # vehicles now on red that each signal phase would serve  [B, I, P]
            serves = torch.einsum("bik,ipk->bip", near_d * red, self._phase_green.to(torch.float32))
            distance = self._cyclic_distance[inter, phase].to(torch.float32)  # [B, I, P]
            score = serves - CYCLIC_TIE_BREAK * distance
            candidate = self._signal.unsqueeze(0) & (
                torch.arange(score.shape[-1], device=phase.device) != phase.unsqueeze(-1)
            )
            score = torch.where(candidate, score, -torch.inf)
            target = score.argmax(-1)
            switch = switch & candidate.any(-1)
        switch = switch & self._has_choice.unsqueeze(0) & (target != phase)
        command = torch.where(switch, target, -1)
        return command if self._readings is None else self._readings.fail_safe(sim, command)
