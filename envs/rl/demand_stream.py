"""`DemandStream`: which demand sample each copy's episode runs, and where a resumed training run
picks the stream up.

Sample indices (of the configured split) are handed out in order from the ``seed`` of a reset, one
per episode; with a pool of K samples, episode n after ``restart(s)`` runs sample ``s + n % K``
(one `Trips` object per pool sample, so copies on it share its demand tables). The stream's
`state` (each copy's sample, the next index, the pool's first sample) is what a checkpoint keeps:
`resume(state)` makes the next full reset restart every copy on the sample its episode ran and
carry on from the next index, with the pool where it was, so a run resumed at an episode boundary
draws exactly what the uninterrupted run goes on with, and one resumed mid-episode replays no
finished sample.
"""

from __future__ import annotations

from envs.errors import ConfigError
from envs.incidents.perturbations import Perturbation, surge_trips
from envs.scenario import Scenario
from envs.scenario.demand import Trips
from envs.scenario.splits import DemandSpec, sample_trips

STATE_KEYS = ("held", "next_sample", "pool_base")


class DemandStream:
    def __init__(self, scenario: Scenario, split: str, perturbation: Perturbation, copies: int, pool: int) -> None:
        self.scenario, self.split, self.perturbation = scenario, split, perturbation
        self.copies, self.pool = copies, pool
        self.next_sample = 0
        self.held: dict[int, int] = {}  # copy -> the sample index (in the stream) its episode runs on
        self.pool_base = 0  # the pool is samples pool_base .. pool_base + K - 1
        self._pool: dict[int, Trips] = {}  # pool sample -> its (surged) trips, one object each
        self._resumed: list[int] | None = None  # each copy's sample at the next full reset (`resume`)

    def restart(self, seed: int) -> None:
        """Hand out indices from `seed` on (a pool then starts at `seed`), unless a `resume` is
        planned: it wins (SB3 seeds its env with the run's seed when it loads a model)."""
        if self._resumed is not None:
            return
        self.next_sample = seed
        if self.pool and seed != self.pool_base:
            self.pool_base, self._pool = seed, {}

    def draw(self, copy: int, spec: DemandSpec) -> tuple[int, Trips]:
        """Copy `copy`'s next episode: its sample index and (surged) trips drawn by `spec`. After
        `resume`, the first draw of each copy is the sample its episode ran."""
        if self._resumed is not None and self._resumed[copy] >= 0:
            index, self._resumed[copy] = self._resumed[copy], -1
        else:
            index, self.next_sample = self.next_sample, self.next_sample + 1
        self.held[copy] = index
        if self.pool:  # one Trips object per pool sample: its copies share its tables
            index = self.pool_base + (index - self.pool_base) % self.pool
            trips = self._pool.get(index)
            if trips is not None:
                return index, trips
        trips = sample_trips(self.scenario, spec, self.split, index)
        trips = surge_trips(trips, self.perturbation, self.split, index)  # incidents weigh the surged demand
        if self.pool:
            self._pool[index] = trips
        return index, trips

    def finish_resume(self) -> None:
        """After the full reset that applied `resume`: later draws continue the stream."""
        self._resumed = None

    @property
    def resume_sample(self) -> int:
        """The lowest sample an episode under way holds, else `next_sample` (checkpoints written
        before `state` existed resume the stream from here)."""
        return min(self.held.values()) if self.held else self.next_sample

    @property
    def state(self) -> dict:
        """What a checkpoint keeps: ``held`` (each copy's sample, -1 for a copy that drew none),
        ``next_sample`` and ``pool_base``."""
        return {"held": [self.held.get(b, -1) for b in range(self.copies)], "next_sample": self.next_sample,
                "pool_base": self.pool_base}

    def resume(self, state: dict, source: str) -> None:
        """Continue a stream whose `state` a checkpoint (`source`) kept: the next full reset
        restarts each copy on its held sample; the pool keeps its first sample. A run resumed
        with more copies starts the extra ones on new samples; with fewer, the samples the
        missing copies held are not finished."""
        if not isinstance(state, dict) or set(state) != set(STATE_KEYS) or not isinstance(state["held"], list):
            raise ConfigError(source, "train_demand", state, f"expected the keys {list(STATE_KEYS)}, held a list")
        held, next_sample, base = state["held"], state["next_sample"], state["pool_base"]
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in [next_sample, base, *held])
        if not whole or min(next_sample, base) < 0 or any(h < -1 or h >= next_sample for h in held):
            raise ConfigError(source, "train_demand", state,
                              "expected held samples in [-1, next_sample) and next_sample, pool_base >= 0")
        self.next_sample, self.pool_base, self._pool = next_sample, base, {}
        self._resumed = (held + [-1] * self.copies)[: self.copies]
