"""Statistics over evaluation seeds: bootstrap confidence intervals and paired reductions.

Controllers are compared on the same evaluation demands (seed s is the same trip table for
every controller), so a reduction is computed per seed, ``100 * (base_s - x_s) / base_s``, and
its mean gets a percentile-bootstrap confidence interval over seeds (resampling seeds with
replacement). With one seed, or identical seeds, the interval has zero width: it says nothing
about demand variability, only that the run is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float

    def format(self, digits: int = 1, unit: str = "") -> str:
        return f"{self.mean:.{digits}f}{unit} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def bootstrap_mean(
    values, samples: int = BOOTSTRAP_SAMPLES, confidence: float = CONFIDENCE, seed: int = 0
) -> Estimate:
    """Mean of `values` (one per seed) with a percentile-bootstrap confidence interval."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"need a non-empty 1-D array of per-seed values, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"non-finite per-seed values: {values.tolist()}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, values.size, size=(samples, values.size))
    means = values[picks].mean(1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Estimate(float(values.mean()), float(low), float(high))


def reduction_percent(baseline, candidate) -> np.ndarray:
    """Per-seed reduction of `candidate` against `baseline`, in % of the baseline."""
    baseline = np.asarray(baseline, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if baseline.shape != candidate.shape:
        raise ValueError(f"paired values differ in shape: {baseline.shape} vs {candidate.shape}")
    if (baseline <= 0).any():
        raise ValueError(f"baseline values must be > 0 to express a reduction: {baseline.tolist()}")
    return 100.0 * (baseline - candidate) / baseline
