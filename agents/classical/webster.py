"""Fixed-time control with Webster's (1958) cycle length and green splits, from the demand.

Plan, per intersection (each intersection gets its own cycle; no offsets between them):

1. **Demand flows** (`demand_flows_vph`). For every movement, the trips of the simulator's
   demand that depart in the design window and whose route uses the movement, as veh/h, divided
   by the number of incoming lanes serving the movement (``movement_in_lanes``) -> veh/h per
   lane. The window is
   ``[0, H)``, H = one past the last departure of any copy (``window="horizon"``), or, per copy,
   the ``window_s`` seconds with the most departures in the network (``window="busiest"``; the
   whole of ``[0, H)`` when shorter). Trips are counted by their departure time, not by when
   they reach the intersection. The demand is ``design_demand`` where it is set, else the
   simulator's; with B copies the flows are the **mean over copies** (one plan for all copies:
   the plan of the expected demand, not of each copy's own realisation). evaluate.py's runner
   (and training's periodic evaluation) set ``design_demand`` to samples of the *train* split
   drawn like the evaluated demand (`envs.scenario.splits.design_samples`), as an engineer
   designs from past counts: the plan never sees the evaluated samples (a seed's row does not
   depend on which other seeds are evaluated), and under a surge it is the plan for the usual
   demand, the perturbed rows measuring how it copes. A lane shared by several movements is not
   pooled: each movement divides its own flow by its own lanes.
2. **Flow ratios.** ``y_k = flow_k / saturation_flow_vph`` per movement. Movements green in every
   signal phase (the datasets' permitted right turns) do not compete for green and are left out;
   per signal phase ``y_p = max`` over its green competing movements (0 when it has none).
3. **Phases in the cycle.** ``phase_set="all"``: every signal phase (transition phases such as
   CityFlow's right-turns-only phase 0 are never used; the engine inserts intergreen itself).
   ``phase_set="cover"`` (default): of the subsets of signal phases that give green to every
   competing movement, the one with the shortest Webster cycle (then the smallest ``Y``, then the
   fewest phases, then the lowest indices). On the generated grids every movement belongs to one
   phase, so both give the 4 phases; on the datasets' 8-phase plans "cover" picks e.g. the 4
   paired-through / paired-left phases instead of cycling through all 8 (which would count the
   same movements twice and waste 8 lost times). Brute force over subsets, so at most
   ``MAX_COVER_PHASES`` signal phases per intersection (more: every signal phase, with a warning).
4. **Webster.** Lost time per phase ``l = yellow_s + all_red_s + startup_lost_s`` (engine
   parameters; the start-up loss defaults to 0, HCM's ~2 s start-up loss being roughly given back
   by vehicles using the yellow), ``L = n l`` for the n phases used, ``Y = sum y_p``,
   ``C0 = (1.5 L + 5) / (1 - Y)``, clamped into ``[min_cycle_s, max_cycle_s]``. When ``Y >= 1``
   the intersection is oversaturated, no cycle is optimal: ``max_cycle_s`` is used and an
   `OversaturationWarning` names the intersections.
5. **Splits.** Effective green ``G = C - L`` shared in proportion to ``y_p`` (equally when
   ``Y = 0``), each phase at least ``g_min = max(min_green_s, engine min_green_s)``. A phase whose
   share falls below ``g_min`` is held at ``g_min`` and that time counts as lost for the others:
   the cycle is recomputed by Webster's formula with ``L' = L + (held phases) g_min`` and ``Y'``
   = the sum over the free phases (clamped again), and the free phases share ``C - L'`` in
   proportion to y; repeated until no free phase is short. (Simply raising short phases to the
   minimum inside the original cycle starves the critical phase at low demand: on hangzhou_4x4
   it gives one approach a degree of saturation of 1.5.) The cycle never drops below
   ``L + n g_min``, even above ``max_cycle_s``.
6. **Commanded durations** ``d_p = g_p + l`` rounded to whole seconds (never below
   ``min + intergreen``), run like `FixedTime`: the engine inserts the intergreen inside the
   commanded phase's time, so each phase shows about ``g_p + startup_lost_s`` of green and the
   cycle run is ``cycle_s = sum d_p`` (``C`` up to rounding).

After `reset` the plan is exposed as tensors (intersection ``i``, phase ``p``, movement slot
``k``): ``flow_vph [I, K]``, ``flow_ratio [I, P]`` (y of every signal phase, NaN otherwise),
``phases_used [I, P]``, ``critical_sum [I]`` (Y), ``lost_time_s [I]`` (L),
``optimal_cycle_s [I]`` (C0 before clamping, inf when oversaturated), ``design_cycle_s [I]``
(C after the minimum-green adjustment and clamping), ``green_s [I, P]`` (effective green
before rounding),
``durations [I, P]`` (commanded seconds, 0 for unused phases), ``cycle_s [I]`` (the cycle run)
and ``oversaturated [I]``; ``window_start`` (per copy of the design demand) and ``window_length_s``
give the design window.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from envs.engine.simulator import Simulator
from envs.errors import CommandError, ConfigError
from envs.engine.intersections import always_green
from envs.scenario.demand import NEVER, Demand
from envs.scenario.network import Network

SOURCE = "<controller:fixed_time_webster>"
MAX_COVER_PHASES = 16  # 2**16 subsets per intersection at most


class OversaturationWarning(UserWarning):
    """Webster's cycle is undefined (Y >= 1): the plan uses max_cycle_s."""


@dataclass
class FixedTimeWebster:
    saturation_flow_vph: float = 1800.0  # per lane
    startup_lost_s: float = 0.0  # added to yellow + all-red for the lost time per phase
    min_cycle_s: float = 40.0
    max_cycle_s: float = 180.0
    min_green_s: float = 10.0  # effective green per phase at least this (and the engine's)
    window: str = "horizon"  # "horizon" | "busiest"
    window_s: int = 3600  # busiest window only
    phase_set: str = "cover"  # "cover" | "all"
    offset_s: float = 0.0
    # the demand the plan is designed from (None: the simulator's); set by the evaluation runner
    design_demand: Demand | None = field(default=None, repr=False, compare=False)

    # ---------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self._validate()  # at construction, not only when a run starts

    def _validate(self) -> None:
        def positive(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value > 0
            ):
                raise ConfigError(SOURCE, name, value, "must be a finite number > 0")

        def non_negative(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value >= 0
            ):
                raise ConfigError(SOURCE, name, value, "must be a finite number >= 0")

        for name in ("saturation_flow_vph", "min_cycle_s", "max_cycle_s"):
            positive(name)
        for name in ("startup_lost_s", "min_green_s"):
            non_negative(name)
        if isinstance(self.offset_s, bool) or not isinstance(self.offset_s, (int, float)) or \
                not math.isfinite(self.offset_s):
            raise ConfigError(SOURCE, "offset_s", self.offset_s, "must be a finite number")
        if self.max_cycle_s < self.min_cycle_s:
            raise ConfigError(
                SOURCE, "max_cycle_s", self.max_cycle_s, f"must be >= min_cycle_s ({self.min_cycle_s})"
            )
        if self.window not in ("horizon", "busiest"):
            raise ConfigError(SOURCE, "window", self.window, "expected 'horizon' or 'busiest'")
        if isinstance(self.window_s, bool) or not isinstance(self.window_s, int) or self.window_s < 1:
            raise ConfigError(SOURCE, "window_s", self.window_s, "must be an integer >= 1 (seconds)")
        if self.window == "horizon" and self.window_s != type(self).window_s:  # it would be ignored
            raise ConfigError(SOURCE, "window_s", self.window_s, "only window=busiest reads it (window is "
                              "'horizon': the plan is designed over the whole demand)")
        if self.phase_set not in ("cover", "all"):
            raise ConfigError(SOURCE, "phase_set", self.phase_set, "expected 'cover' or 'all'")

    # ---------------------------------------------------------------------------------------
    def demand_flows_vph(self, network: Network, demand: Demand) -> torch.Tensor:
        """Demand flow per movement and incoming lane, veh/h ``[M]`` (mean over the demand's copies)."""
        batch, trips = demand.batch_size, demand.max_trips
        legs = demand.route_legs
        depart = demand.per_copy(demand.depart)[:, :trips]
        real = depart < NEVER
        # the last real departure, not demand.horizon: a demand stacked to a larger padded shape
        # has a longer horizon than its trips
        horizon = int(torch.where(real, depart, -1).max()) + 1 if bool(real.any()) else 1
        if self.window == "busiest" and self.window_s < horizon:
            width = self.window_s
            # departures in [t0, t0 + width) = departed_by[t0 + width - 1] - departed_by[t0 - 1]
            by = demand.per_copy(demand.departed_by)[:, :horizon].to(torch.float64)  # depart <= h, h < H
            before = torch.cat([torch.zeros(batch, 1, dtype=by.dtype, device=by.device), by], 1)
            counts = before[:, width:] - before[:, : horizon - width + 1]  # start t0 = 0..H-width
            start = counts.argmax(1)  # earliest busiest window
        else:
            width = horizon
            start = torch.zeros(batch, dtype=torch.int64, device=depart.device)
        self.window_start = start
        self.window_length_s = int(width)
        inside = (depart >= start.unsqueeze(1)) & (depart < (start + width).unsqueeze(1))
        route = demand.per_copy(demand.route_movement).to(torch.int64)  # stored narrow; an index here
        route = route.reshape(batch, trips + 1, legs)[:, :trips]
        moves = network.num_movements
        used = torch.where((route >= 0) & inside.unsqueeze(-1), route, moves)
        count = torch.zeros(batch, moves + 1, dtype=torch.float64, device=depart.device)
        ones = torch.ones(used.numel() // batch, dtype=torch.float64, device=depart.device)
        count.scatter_add_(1, used.reshape(batch, -1), ones.expand(batch, -1))
        per_hour = count[:, :moves].mean(0) * 3600.0 / width
        lanes = (network.movement_in_lanes >= 0).sum(1).clamp(min=1).to(torch.float64)
        return torch.where(network.movement_valid, per_hour / lanes, 0.0)

    # ---------------------------------------------------------------------------------------
    def reset(self, sim: Simulator) -> None:
        self._validate()
        net, params = sim.network, sim.params
        num_inter, num_phases = net.num_intersections, int(net.phase_green.shape[1])
        design = sim.demand if self.design_demand is None else self.design_demand
        flow = self.demand_flows_vph(net, design).reshape(num_inter, -1).cpu().numpy()
        signal = net.signal_phase.cpu().numpy()  # [I, P]
        green = net.phase_green.cpu().numpy() & signal[:, :, None]  # [I, P, K]
        valid = net.movement_valid.reshape(num_inter, -1).cpu().numpy()
        served = green.any(1)
        always = always_green(net).cpu().numpy()  # green in every signal phase
        compete = valid & served & ~always  # [I, K]
        y_move = flow / self.saturation_flow_vph
        y_phase = np.where(green & compete[:, None, :], y_move[:, None, :], 0.0).max(-1)  # [I, P]

        intergreen = float(params.yellow_s + params.all_red_s)
        lost = intergreen + float(self.startup_lost_s)
        g_min = max(float(self.min_green_s), float(params.min_green_s))

        used = np.zeros((num_inter, num_phases), dtype=bool)
        big = []
        for i in range(num_inter):
            candidates = np.flatnonzero(signal[i])  # never empty: every intersection has an action
            if self.phase_set == "all" or candidates.size > MAX_COVER_PHASES:
                if candidates.size > MAX_COVER_PHASES:
                    big.append(net.intersection_ids[i])
                used[i, candidates] = True
            else:
                best = self._best_cover(
                    green[i][candidates], compete[i], y_phase[i][candidates], lost
                )
                used[i, candidates[best]] = True
        if big:
            warnings.warn(
                f"{len(big)} intersections have more than {MAX_COVER_PHASES} signal phases; "
                f"their plans cycle through every signal phase: {big[:5]}",
                stacklevel=2,
            )

        n_used = used.sum(1)
        y_sum = np.where(used, y_phase, 0.0).sum(1)
        lost_time = n_used * lost
        with np.errstate(divide="ignore"):
            optimal = np.where(
                y_sum < 1.0, (1.5 * lost_time + 5.0) / np.maximum(1.0 - y_sum, 1e-300), np.inf
            )
        oversat = y_sum >= 1.0
        if oversat.any():
            names = [net.intersection_ids[i] for i in np.flatnonzero(oversat)]
            warnings.warn(
                f"Webster: {len(names)} of {num_inter} intersections are oversaturated "
                f"(sum of critical flow ratios Y >= 1; max Y = {y_sum.max():.3f} at saturation flow "
                f"{self.saturation_flow_vph:g} veh/h/lane): using max_cycle_s = {self.max_cycle_s:g} "
                f"there: {names[:8]}{' ...' if len(names) > 8 else ''}",
                OversaturationWarning,
                stacklevel=2,
            )

        green_s = np.zeros((num_inter, num_phases))
        design = np.zeros(num_inter)
        for i in range(num_inter):
            design[i], green_s[i, used[i]] = _plan(
                y_phase[i, used[i]], lost_time[i], g_min, self.min_cycle_s, self.max_cycle_s
            )
        min_duration = math.ceil(g_min + intergreen - 1e-9)
        durations = np.where(used, np.maximum(np.round(green_s + lost), min_duration), 0.0)

        dev = net.device
        t = lambda x, dtype=torch.float32: torch.as_tensor(x, dtype=dtype, device=dev)  # noqa: E731
        self.flow_vph = t(flow)
        self.flow_ratio = t(np.where(signal, y_phase, np.nan))
        self.phases_used = t(used, torch.bool)
        self.critical_sum = t(y_sum)
        self.lost_time_s = t(lost_time)
        self.optimal_cycle_s = t(optimal)
        self.design_cycle_s = t(design)
        self.green_s = t(green_s)
        self.durations = t(durations)
        self.cycle_s = t(durations.sum(1))
        self.oversaturated = t(oversat, torch.bool)

        # the cycle: used phases first, in index order (as FixedTime)
        phases = torch.arange(num_phases, device=dev).expand(num_inter, -1)
        order = torch.argsort((~self.phases_used).to(torch.int8), dim=1, stable=True)
        self._phases = phases.gather(1, order)
        self._ends = torch.cumsum(self.durations.gather(1, order), 1)
        self._cycle = self._ends[:, -1].clamp(min=1e-9)

    @staticmethod
    def _best_cover(green: np.ndarray, compete: np.ndarray, y: np.ndarray, lost: float) -> np.ndarray:
        """Indices (into the candidate phases) of the phase subset of shortest Webster cycle
        that gives green to every competing movement."""
        n = green.shape[0]
        masks = ((np.arange(1, 2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)  # [S, n]
        covered = (masks.astype(np.int64) @ green.astype(np.int64)) > 0  # [S, K]
        ok = (covered | ~compete[None, :]).all(1)
        masks = masks[ok]
        count = masks.sum(1)
        y_sum = masks @ y
        cycle = np.where(
            y_sum < 1.0, (1.5 * lost * count + 5.0) / np.maximum(1.0 - y_sum, 1e-300), np.inf
        )
        # lexicographic: cycle, Y, phases, then lowest indices (mask as a binary number, low bits first)
        rank = (masks * (2.0 ** -np.arange(1, n + 1))).sum(1)
        best = np.lexsort((-rank, count, y_sum, cycle))[0]
        return np.flatnonzero(masks[best])

    def act(self, sim: Simulator) -> torch.Tensor:
        if not hasattr(self, "_cycle"):  # an AttributeError before
            raise CommandError("<controller>", "act", "OversaturationWarning", "call reset(sim) before act(sim)")
        t = sim.state.t.to(torch.float32).unsqueeze(1) + self.offset_s  # [B, 1]
        in_cycle = torch.remainder(t, self._cycle.unsqueeze(0))  # [B, I]
        slot = (in_cycle.unsqueeze(-1) >= self._ends.unsqueeze(0)).sum(-1)
        slot = slot.clamp(max=self._phases.shape[1] - 1)
        phases = self._phases.expand(t.shape[0], -1, -1)
        return torch.gather(phases, 2, slot.unsqueeze(-1)).squeeze(-1)


def _plan(
    y: np.ndarray, lost_time: float, g_min: float, min_cycle: float, max_cycle: float
) -> tuple[float, np.ndarray]:
    """Cycle and effective greens of one intersection's used phases (see the module doc, 5).

    Phases whose proportional green falls below `g_min` are held at `g_min`; that time then
    counts as lost for the others, whose cycle is Webster's again with the lost time
    ``L + |held| g_min`` and the flow ratios of the free phases only (otherwise a short cycle
    of minimum greens would starve the critical phase). Repeats until no free phase is short.
    The cycle is clamped into [min_cycle, max_cycle] but never below ``L + n g_min``.
    """
    n = y.size
    held = np.zeros(n, dtype=bool)
    floor = lost_time + n * g_min
    while True:
        free = ~held
        if not free.any():
            return max(min_cycle, floor), np.full(n, g_min)
        lost = lost_time + g_min * held.sum()
        y_free = y[free].sum()
        cycle = (1.5 * lost + 5.0) / (1.0 - y_free) if y_free < 1.0 else np.inf
        cycle = max(min(max(cycle, min_cycle), max_cycle), floor)
        share = cycle - lost
        green = np.full(n, g_min)
        green[free] = share * y[free] / y_free if y_free > 0 else share / free.sum()
        short = free & (green < g_min - 1e-9)
        if not short.any():
            return float(cycle), green
        held |= short
