"""The one statistics module: percentiles, summary statistics and bootstrap confidence intervals.

Percentile definition (used for every number deploykit prints): linear interpolation between the
closest ranks, Hyndman & Fan (1996) definition 7, numpy's default ``method="linear"``: for sorted samples
x[0..n-1] and q in [0, 100], h = (n-1)*q/100 and P = x[floor h] + (h - floor h)*(x[floor h + 1] - x[floor h]).
So p50 is the usual median; p0/p100 are min/max. Note trtexec and MLPerf use nearest-rank percentiles;
on a few hundred samples the two differ by less than one sample spacing.

Confidence interval of the median: percentile bootstrap (resample with replacement, ``n_boot`` times,
seeded), the 2.5th and 97.5th percentiles of the resampled medians.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

PERCENTILE_METHOD = "linear interpolation between closest ranks (Hyndman-Fan type 7, numpy 'linear')"
PERCENTILES = (50, 90, 95, 99)


def percentile(samples: Sequence[float] | np.ndarray, q: float | Sequence[float]) -> float | np.ndarray:
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    return np.percentile(a, q, method="linear")


def bootstrap_distribution(
    samples: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], np.ndarray] | str = "median",
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """``n_boot`` bootstrap replicates of ``stat`` (``"median"``, ``"mean"`` or a function that reduces axis 1
    of a 2-D array of resamples): resample ``samples`` with replacement, seeded. The one bootstrap deploykit
    has; ``bootstrap_ci`` and the latency gate (gate/decision.py) both draw from it."""
    a = np.asarray(samples, dtype=np.float64)
    n = a.size
    if n == 0:
        raise ValueError("no samples")
    if n == 1:
        return np.full(n_boot, a[0])
    if isinstance(stat, str):
        fn = {"median": lambda m: np.median(m, axis=1), "mean": lambda m: np.mean(m, axis=1)}[stat]
    else:
        fn = stat
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 4_000_000 // n))  # bound memory: at most ~32 MB of resamples at a time
    stats = []
    done = 0
    while done < n_boot:
        k = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(k, n))
        stats.append(fn(a[idx]))
        done += k
    return np.concatenate(stats)


def percentile_interval(replicates: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap ``replicates`` at confidence ``level``."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    alpha = (1 - level) / 2
    lo, hi = np.percentile(np.asarray(replicates, dtype=np.float64), [100 * alpha, 100 * (1 - alpha)],
                           method="linear")
    return float(lo), float(hi)


def bootstrap_ci(
    samples: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], np.ndarray] | str = "median",
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of ``stat`` (``"median"``, ``"mean"`` or a function that
    reduces axis 1 of a 2-D array of resamples)."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    if a.size == 1:
        return float(a[0]), float(a[0])
    return percentile_interval(bootstrap_distribution(a, stat, n_boot=n_boot, seed=seed), level)


def summarize(samples: Sequence[float] | np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> dict:
    """Summary statistics of latency samples (any unit; the caller states it)."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p = percentile(a, PERCENTILES)
    mean = float(np.mean(a))
    stdev = float(np.std(a, ddof=1)) if a.size > 1 else 0.0
    lo, hi = bootstrap_ci(a, "median", n_boot=n_boot, seed=seed)
    return {
        "n": int(a.size),
        "p50": float(p[0]),
        "p90": float(p[1]),
        "p95": float(p[2]),
        "p99": float(p[3]),
        "mean": mean,
        "stdev": stdev,
        "cv": stdev / mean if mean > 0 else 0.0,
        "min": float(np.min(a)),
        "max": float(np.max(a)),
        "median_ci95": [lo, hi],
    }


SUPPORT = 10  # samples that must lie beyond a percentile (on its nearer side) before deploykit trusts it


def tail_supported(n: int, q: float, beyond: int = SUPPORT) -> bool:
    """Whether ``n`` samples put at least ``beyond`` samples beyond percentile ``q`` on its nearer side, the
    rule deploykit uses before it trusts a percentile: the median needs 20 samples, p90 100, p95 200, p99 1000.
    Percentiles from fewer samples are still in the report (``stats.tails_supported``), but tables leave them
    out."""
    return n * min(q, 100 - q) >= beyond * 100  # integer-exact: n min(q, 1 - q) >= beyond


def samples_needed(q: float, beyond: int = SUPPORT) -> int:
    """The fewest samples for which ``tail_supported(n, q)`` holds."""
    import math

    return math.ceil(beyond * 100 / min(q, 100 - q))
