"""`DetectorFaults`: the one place detector faults (noise, dropouts, stuck and dead detectors,
`DetectorFaultSpec`) are applied to per-lane readings. RL observations
(`envs.rl.features`), the classical controllers (`agents.classical.detector_readings`) and the
deployment driver (`agents.deploy.simulated`) all read through its `apply`."""

from __future__ import annotations

import numpy as np
import torch

from envs.incidents.perturbation_specs import DetectorFaultSpec, Perturbation, stream_rng
from envs.scenario.network import Network
from envs.scenario.splits import split_seed

_READING_KEY = {"lane_count": 0, "lane_halting": 1, "approach": 2, "approach_platoon": 3,  # noise streams
                "approach_moving": 4, "approach_halting": 5, "lane_running": 6}


class DetectorFaults:
    """The detector faults of B copies, applied to per-lane readings ``[B, L]``.

    `start_episode(copy, split, index)` draws a copy's per-episode faults (stuck lanes, dead
    intersections) from the perturbation's seed; per-reading noise and dropouts are drawn from
    (seed, split, index, time, reading), so copies on the same episode sample (every controller
    on one evaluation seed) see the same faults, and a run is reproducible."""

    def __init__(self, perturbation: Perturbation, network: Network, in_lanes: torch.Tensor, copies: int) -> None:
        self.perturbation = perturbation
        self.spec = perturbation.detectors or DetectorFaultSpec()
        self.network = network
        lanes = network.num_lanes
        # which lanes each intersection's detectors cover (its incoming lanes)
        owner = torch.full((lanes + 1,), -1, dtype=torch.int64)
        for i, row in enumerate(in_lanes.cpu().tolist()):
            for lane in row:
                if lane >= 0:
                    owner[lane] = i
        self.lane_owner = owner[:lanes].to(network.device)
        self.stuck = torch.zeros(copies, lanes, dtype=torch.bool, device=network.device)
        self.dead = torch.zeros(copies, lanes, dtype=torch.bool, device=network.device)
        self.frozen: dict[str, torch.Tensor] = {}  # reading (and zone) -> [B, L] values stuck lanes show
        self.frozen_set: dict[str, torch.Tensor] = {}  # reading (and zone) -> [B] already frozen this episode
        self.enabled = torch.zeros(copies, dtype=torch.bool, device=network.device)  # copies with faults
        self.episode = [("", -1)] * copies  # (split, index) each copy's faults were drawn for

    @property
    def active(self) -> bool:
        return not self.spec.is_clean

    def start_episode(self, copy: int, split: str, index: int) -> None:
        if not self.active:
            return
        rng = stream_rng(self.perturbation, split, index, "detectors")
        lanes, inter = self.network.num_lanes, int(self.lane_owner.max()) + 1
        stuck = rng.random(lanes) < self.spec.stuck_p
        dead_inter = rng.random(inter) < self.spec.dead_p
        owner = self.lane_owner.cpu().numpy()
        dead = np.where(owner >= 0, dead_inter[owner.clip(min=0)], False)
        self.stuck[copy] = torch.as_tensor(stuck, device=self.stuck.device)
        self.dead[copy] = torch.as_tensor(dead, device=self.dead.device)
        self.enabled[copy] = True
        self.episode[copy] = (split, index)
        for flags in self.frozen_set.values():
            flags[copy] = False

    def apply(self, name: str, values: torch.Tensor, t: torch.Tensor, upper: torch.Tensor | None = None,
              missing: float = 0.0, zone: float | None = None) -> torch.Tensor:
        """The detectors' view of true per-lane `values` ``[B, L]`` at steps `t` ``[B]`` (copies
        whose episode was started with faults; the others read true). `upper` ``[L]``: the most
        a lane's detector can report (what the lane holds). `name` picks the noise stream; a
        reading whose values depend on a parameter (an approach zone of `zone` metres or seconds)
        keeps what its stuck lanes show apart per `zone`, so two controllers counting different
        zones may share one faults object without freezing each other's count (evaluate.py gives
        each controller its own, which also keeps the moment a lane freezes that reader's)."""
        if not self.active or not bool(self.enabled.any()):
            return values
        spec, true, out = self.spec, values.to(torch.float32), values.to(torch.float32)
        lost = self.dead
        if spec.noise_std > 0 or spec.dropout_p > 0:
            noise, dropped = self._draws(name, t, out.shape[1])
            out = (out + noise.to(out.device) * spec.noise_std).round().clamp(min=0.0) if spec.noise_std > 0 else out
            if upper is not None:  # a counter reads whole vehicles, never < 0, never above what its lane holds
                out = torch.minimum(out, upper.to(out.dtype).unsqueeze(0))
            lost = lost | (dropped.to(out.device) < spec.dropout_p)
        if spec.stuck_p > 0:  # freeze each stuck lane at what it showed at its first reading from stuck_at_s on
            # (after the noise: the frozen value held still; noise added after it kept moving it)
            key = name if zone is None else f"{name}@{zone:g}"
            done = self.frozen_set.setdefault(key, torch.zeros(out.shape[0], dtype=torch.bool, device=out.device))
            due = (t >= spec.stuck_at_s) & ~done
            frozen = self.frozen.get(key, torch.zeros_like(out))
            self.frozen[key] = torch.where(due.unsqueeze(1), out, frozen)
            done |= due
            out = torch.where(self.stuck & (t >= spec.stuck_at_s).unsqueeze(1), self.frozen[key], out)
        out = torch.where(lost, torch.full_like(out, missing), out)
        return torch.where(self.enabled.unsqueeze(1), out, true)

    def _draws(self, name: str, t: torch.Tensor, lanes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per copy ``[B, L]``: standard normal noise and uniform dropout draws, a function of
        (seed, split, index, time, reading) only."""
        noise = torch.zeros(len(self.episode), lanes)
        uniform = torch.ones(len(self.episode), lanes)
        times = t.cpu().tolist()
        cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        for copy, (split, index) in enumerate(self.episode):
            if index < 0:
                continue
            key = (split, index, int(times[copy]))
            if key not in cache:
                entropy = _noise_entropy(self.perturbation.seed, split_seed(split, index), key[2],
                                         _READING_KEY.get(name, 9))
                state = np.random.SeedSequence(entropy).generate_state(1)[0]
                generator = torch.Generator().manual_seed(int(state))
                cache[key] = (torch.randn(lanes, generator=generator), torch.rand(lanes, generator=generator))
            noise[copy], uniform[copy] = cache[key]
        return noise, uniform


def _noise_entropy(seed: int, sample_seed: int, t: int, reading: int) -> list[int]:
    """The words a (seed, split seed, time, reading) noise draw is seeded from, a different list for each.
    SeedSequence splits an integer of 2**32 or more into several 32-bit words and runs the list's words
    together, so ``[seed, sample seed, ...]`` aliased: perturbation.seed 7 on train sample 2**31 + 1
    (split seed words [2, 1]) drew eval sample 0's noise under perturbation.seed 2 * 2**32 + 7 (words
    [7, 2]). Values below 2**32 keep their list (every draw recorded so far); a wider one gives its
    seed's word count and fixed-width sample-seed words, never 5 words long."""
    if seed < 2**32 and sample_seed < 2**32:
        return [seed, sample_seed, t, reading, 3]
    words = [(seed >> (32 * k)) & 0xFFFFFFFF for k in range(max(1, (seed.bit_length() + 31) // 32))]
    return [*words, sample_seed & 0xFFFFFFFF, sample_seed >> 32, t, reading, len(words), 4]
