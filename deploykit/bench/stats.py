"""The one statistics module: percentiles, summary statistics and bootstrap confidence intervals.

Percentile definition (used for every number deploykit prints): linear interpolation between the
closest ranks, Hyndman & Fan (1996) definition 7, numpy's default ``method="linear"``: for sorted samples
x[0..n-1] and q in [0, 100], h = (n-1)*q/100 and P = x[floor h] + (h - floor h)*(x[floor h + 1] - x[floor h]).
So p50 is the usual median; p0/p100 are min/max. Note trtexec and MLPerf use nearest-rank percentiles;
on a few hundred samples the two differ by less than one sample spacing.

Confidence interval of the median: percentile bootstrap (resample with replacement, ``n_boot`` times,
seeded), the 2.5th and 97.5th percentiles of the resampled medians.

Scaling fits (``fit_power_law``, ``fit_linear_quadratic``): each point is a median latency; the CI of a fitted
quantity comes from refitting on ``n_boot`` replicates where every point's median is drawn from its own
bootstrap distribution (``bootstrap_distribution`` on that point's raw samples, seeded per point). Without raw
samples a point's median is drawn from a log-normal whose 95% interval is the point's CI (said in ``method``).
These CIs carry the measurement noise of the points, not how well the model curve describes them (see ``r2``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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
    fn = _reducer(stat)
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


NOISY_CV = 0.10  # a run whose samples spread more than this (coefficient of variation) is flagged noisy
NOISY_SHIFT = 0.05  # ... or whose two halves' medians differ by more than this, beyond chance (p < NOISY_P)
NOISY_P = 0.001


def noise_flags(samples: Sequence[float] | np.ndarray, *, cv_limit: float = NOISY_CV,
                shift_limit: float = NOISY_SHIFT) -> list[str]:
    """Why a run's samples (in the order they were measured) are not one steady level -- empty when they are.

    Two checks: the coefficient of variation above ``cv_limit`` (another job's bursts make some iterations 2-3x
    slower), and a burst test: the medians of the first and second half of the run differ by more than
    ``shift_limit`` and a Mann-Whitney U test of the two halves says so with p < 0.001 (the machine changed speed
    during the run: a load came or went). A noisy run's median and its CI describe the machine's mix of states
    more than the model."""
    a = np.asarray(samples, dtype=np.float64)
    out: list[str] = []
    if a.size < 2:
        return out
    mean = float(a.mean())
    cv = float(a.std(ddof=1)) / mean if mean > 0 else 0.0
    if cv > cv_limit:
        out.append(f"CV {cv:.0%} > {cv_limit:.0%}")
    if a.size >= 20:
        half = a.size // 2
        m1, m2 = float(np.median(a[:half])), float(np.median(a[half:]))
        if m1 > 0 and m2 > 0 and abs(np.log(m2 / m1)) > np.log1p(shift_limit):
            from scipy.stats import mannwhitneyu

            p = float(mannwhitneyu(a[:half], a[half:], alternative="two-sided").pvalue)
            if p < NOISY_P:
                out.append(f"second half {m2 / m1 - 1:+.0%} vs the first (burst test, p < {NOISY_P:g})")
    return out


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


def ratio_ci(
    samples: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], np.ndarray] | str = "median",
    *,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(ratio, low, high): ``stat(samples) / stat(baseline)`` and its percentile-bootstrap confidence interval,
    the two sides resampled independently (unpaired runs). The difference is real at ``level`` when the interval
    excludes 1."""
    a = np.asarray(samples, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("no samples")
    fn = _reducer(stat)
    ratio = float(fn(a[None, :])[0] / fn(b[None, :])[0])
    reps = (bootstrap_distribution(a, stat, n_boot=n_boot, seed=seed)
            / bootstrap_distribution(b, stat, n_boot=n_boot, seed=seed + 1))
    lo, hi = percentile_interval(reps, level)
    return ratio, lo, hi


def _reducer(stat) -> Callable[[np.ndarray], np.ndarray]:
    if isinstance(stat, str):
        return {"median": lambda m: np.median(m, axis=1), "mean": lambda m: np.mean(m, axis=1)}[stat]
    return stat


def percentile_stat(q: float) -> Callable[[np.ndarray], np.ndarray]:
    """A bootstrap statistic (reduces axis 1) for percentile ``q``, with deploykit's percentile definition."""
    return lambda m: np.percentile(m, q, axis=1, method="linear")


def loadgen_percentile(samples: Sequence[float] | np.ndarray, q: float) -> float:
    """Percentile ``q`` (0 <= q < 100) the way MLPerf LoadGen computes it (results.cc): the sorted samples'
    element at index floor(n * (q / 100)) -- a nearest-rank rule, used where a number must match LoadGen's own
    verdict (deploykit's other percentiles interpolate: ``percentile``)."""
    a = np.sort(np.asarray(samples, dtype=np.float64))
    if a.size == 0:
        raise ValueError("no samples")
    if not 0 <= q < 100:
        raise ValueError(f"percentile must be in [0, 100), got {q}")
    return float(a[min(a.size - 1, int(a.size * (q / 100.0)))])  # n * 0.99 in doubles, as LoadGen


# ------------------------------------------------------------------------------------------- scaling fits

_Z975 = 1.959963984540054  # the normal quantile of a two-sided 95% interval


@dataclass(frozen=True)
class PowerLawFit:
    """y = prefactor * x**k, least squares on log-log. ``ci``: the bootstrap interval of k at ``level`` (None
    when no point carries uncertainty); ``r2`` on log-log; ``method`` says what the CI rests on."""

    k: float
    prefactor: float
    ci: tuple[float, float] | None
    r2: float
    n_points: int
    level: float
    method: str
    replicates: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class LinearQuadraticFit:
    """t(P) = c0 + c1*P + c2*P**2 (non-negative least squares on relative residuals). The quadratic term
    exceeds the linear one for P > crossover_pixels = c1/c2, i.e. above the side length sqrt(c1/c2)
    (inf when c2 = 0: the quadratic term never wins). ``side_ci``: bootstrap interval of that side length;
    ``no_crossover_share``: the share of replicates with c2 = 0 (upper CI bound inf when above 1 - level/2)."""

    c0: float
    c1: float
    c2: float
    crossover_pixels: float
    crossover_side: float
    side_ci: tuple[float, float] | None
    no_crossover_share: float | None
    r2: float
    n_points: int
    level: float
    method: str
    pixel_range: tuple[float, float]

    @property
    def crossover_in_range(self) -> bool:
        lo, hi = self.pixel_range
        return bool(lo <= self.crossover_pixels <= hi)


def _check_xy(x, y, *, min_distinct: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=np.float64).ravel()
    ya = np.asarray(y, dtype=np.float64).ravel()
    if xa.size != ya.size:
        raise ValueError(f"{what}: x and y differ in length ({xa.size} vs {ya.size})")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise ValueError(f"{what}: x and y must be finite numbers (got NaN or inf)")
    if np.any(xa <= 0) or np.any(ya <= 0):
        raise ValueError(f"{what}: x and y must be positive")
    distinct = np.unique(xa).size
    if distinct < min_distinct:
        raise ValueError(f"{what}: needs at least {min_distinct} distinct x values, got {distinct}")
    return xa, ya


def median_replicates(
    y: Sequence[float],
    *,
    samples: Sequence[Sequence[float] | None] | None = None,
    ci: Sequence[tuple[float, float] | None] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, str, int]:
    """(replicates, method, n_uncertain): an ``n_boot`` x n array of bootstrap replicates of each point's
    median ``y[i]``, drawn from the bootstrap distribution of point i's raw ``samples[i]`` (seed derived from
    ``seed`` and i), else from a log-normal centred on ``y[i]`` whose 95% interval is as wide as ``ci[i]`` (the
    cell's CI of the median), else constant; ``method`` says which, ``n_uncertain`` counts the non-constant."""
    ya = np.asarray(y, dtype=np.float64).ravel()
    n = ya.size
    if n_boot < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    for name, seq in (("samples", samples), ("ci", ci)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} points")
    out = np.empty((n_boot, n))
    kinds = {"samples": 0, "ci": 0, "none": 0}
    for i in range(n):
        point_seed = seed * 1_000_003 + 7919 * (i + 1)
        s = None if samples is None else samples[i]
        if s is not None and np.asarray(s).size > 1:
            out[:, i] = bootstrap_distribution(np.asarray(s, dtype=np.float64), "median", n_boot=n_boot,
                                               seed=point_seed)
            kinds["samples"] += 1
            continue
        c = None if ci is None else ci[i]
        lo, hi = (np.nan, np.nan) if c is None else (float(c[0]), float(c[1]))
        if np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi:
            sigma = (np.log(hi) - np.log(lo)) / (2 * _Z975)
            out[:, i] = ya[i] * np.exp(sigma * np.random.default_rng(point_seed).standard_normal(n_boot))
            kinds["ci"] += 1
        else:
            out[:, i] = ya[i]
            kinds["none"] += 1
    parts = []
    if kinds["samples"]:
        parts.append(f"{kinds['samples']} point(s) from the bootstrap of their raw samples' median")
    if kinds["ci"]:
        parts.append(f"{kinds['ci']} point(s) without raw samples from their median and 95% CI (log-normal)")
    if kinds["none"]:
        parts.append(f"{kinds['none']} point(s) with neither taken as exact")
    return out, f"{n_boot} seeded replicates: " + "; ".join(parts), kinds["samples"] + kinds["ci"]


def _loglog_slope(lx: np.ndarray, ly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of ly (n or B x n) on lx (n)."""
    dx = lx - lx.mean()
    sxx = float(dx @ dx)
    k = (ly - ly.mean(axis=-1, keepdims=True)) @ dx / sxx
    b = ly.mean(axis=-1) - k * lx.mean()
    return k, b


def fit_power_law(
    x: Sequence[float],
    y: Sequence[float],
    *,
    samples: Sequence[Sequence[float] | None] | None = None,
    ci: Sequence[tuple[float, float] | None] | None = None,
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> PowerLawFit:
    """Exponent k and prefactor of y = prefactor * x**k by least squares on log-log, with a bootstrap CI of k
    (see ``median_replicates`` for how each point's uncertainty enters; seeded and deterministic). Raises
    ValueError on fewer than 2 distinct x values, non-positive or non-finite values, or mismatched lengths."""
    xa, ya = _check_xy(x, y, min_distinct=2, what="power-law fit")
    lx, ly = np.log(xa), np.log(ya)
    k, b = _loglog_slope(lx, ly)
    resid = ly - (b + k * lx)
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0
    reps, method, n_uncertain = median_replicates(ya, samples=samples, ci=ci, n_boot=n_boot, seed=seed)
    if not n_uncertain:
        return PowerLawFit(float(k), float(np.exp(b)), None, r2, int(xa.size), level,
                           "no raw samples or CIs: no confidence interval")
    if np.any(reps <= 0):
        raise ValueError("power-law fit: a bootstrap replicate is not positive (samples must be positive)")
    kb, _ = _loglog_slope(lx, np.log(reps))
    return PowerLawFit(float(k), float(np.exp(b)), percentile_interval(kb, level), r2, int(xa.size), level,
                       method, kb)


def _nnls_lq(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rows (B x n) of times -> (B x 3) non-negative coefficients c0, c1, c2 minimising relative residuals."""
    from scipy.optimize import nnls

    scale = float(p.max())
    q = p / scale
    base = np.stack([np.ones_like(q), q, q * q], axis=1)
    out = np.empty((t.shape[0], 3))
    for j, row in enumerate(t):
        coef, _ = nnls(base / row[:, None], np.ones_like(row))
        coef[coef < 1e-10 * coef.sum()] = 0.0  # round-off, not a term: its share of t(P_max) is below 1e-10
        out[j] = coef / np.array([1.0, scale, scale * scale])
    return out


def _side(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """sqrt(c1/c2), inf where c2 = 0 (the quadratic term never exceeds the linear one)."""
    side = np.full(np.shape(c1), np.inf)
    pos = c2 > 0
    side[pos] = np.sqrt(c1[pos] / c2[pos])
    return side


def fit_linear_quadratic(
    pixels: Sequence[float],
    t: Sequence[float],
    *,
    samples: Sequence[Sequence[float] | None] | None = None,
    ci: Sequence[tuple[float, float] | None] | None = None,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> LinearQuadraticFit:
    """Fit t(P) = c0 + c1*P + c2*P**2 over pixel counts P (non-negative least squares, each residual relative
    to its point's time so that the largest resolution does not dominate) and find the crossover where the
    quadratic term exceeds the linear one: P = c1/c2 pixels, side length sqrt(c1/c2). The CI of the side
    length refits on bootstrap replicates of the medians (``median_replicates``). Needs 3 distinct P."""
    pa, ta = _check_xy(pixels, t, min_distinct=3, what="linear+quadratic fit")
    c = _nnls_lq(pa, ta[None, :])[0]
    c0, c1, c2 = (float(v) for v in c)
    fitted = c0 + c1 * pa + c2 * pa * pa
    ss_tot = float(np.sum((ta - ta.mean()) ** 2))
    r2 = 1.0 - float(np.sum((ta - fitted) ** 2)) / ss_tot if ss_tot > 0 else 1.0
    side = float(_side(np.array([c1]), np.array([c2]))[0])
    cross_p = side * side
    reps, method, n_uncertain = median_replicates(ta, samples=samples, ci=ci, n_boot=n_boot, seed=seed)
    span = (float(pa.min()), float(pa.max()))
    if not n_uncertain:
        return LinearQuadraticFit(c0, c1, c2, cross_p, side, None, None, r2, int(pa.size), level,
                                  "no raw samples or CIs: no confidence interval", span)
    if np.any(reps <= 0):
        raise ValueError("linear+quadratic fit: a bootstrap replicate is not positive (samples must be positive)")
    cb = _nnls_lq(pa, reps)
    sides = _side(cb[:, 1], cb[:, 2])
    big = np.finfo(np.float64).max
    lo, hi = percentile_interval(np.where(np.isinf(sides), big, sides), level)
    side_ci = (np.inf if lo >= big else lo, np.inf if hi >= big else hi)
    return LinearQuadraticFit(c0, c1, c2, cross_p, side, side_ci, float(np.mean(np.isinf(sides))), r2,
                              int(pa.size), level, method, span)


# ------------------------------------------------------------------------------------------ accuracy (labels)

def proportion_ci(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (top-1 accuracy on n images): sensible at 0 and at n, unlike the
    normal approximation."""
    from scipy.stats import norm

    if n <= 0:
        return (float("nan"), float("nan"))
    z = float(norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges (no rounding residue)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return (low, high)


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact test of paired correctness: ``b`` images only the reference got right, ``c`` only the other;
    the two-sided binomial p-value on the discordant pairs (1.0 when there are none)."""
    from scipy.stats import binom

    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(b, c), n, 0.5)))


def paired_accuracy(ref_correct, correct, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """The accuracy change of a variant against a reference on the same images (1 = right, 0 = wrong per image):
    ``drop`` = reference top-1 - variant top-1 (points, positive = worse), its paired bootstrap interval (images
    resampled together), and McNemar's exact p-value with the discordant counts."""
    a = np.asarray(ref_correct, dtype=bool)
    v = np.asarray(correct, dtype=bool)
    if a.shape != v.shape or a.ndim != 1 or a.size == 0:
        raise ValueError("paired accuracy needs two equal, non-empty per-image correctness vectors")
    d = a.astype(np.float64) - v.astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    reps = d[idx].mean(axis=1)
    low, high = percentile_interval(reps, level)
    b, c = int(np.sum(a & ~v)), int(np.sum(~a & v))
    return {"drop": float(d.mean()), "ci95": [float(low), float(high)], "mcnemar_p": mcnemar_exact(b, c),
            "only_reference_right": b, "only_variant_right": c, "n": int(d.size)}
