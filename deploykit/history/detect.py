"""Change-point detection on a latency series: where a real step happened, not a single noisy point.

The search is ``ruptures`` (PELT, least-squares cost) on the log of the series scaled by a robust noise estimate
(the MAD of first differences, which a step does not inflate), with a BIC-like penalty ``penalty * log(n)``.
Each change point found is then tested on its own: a Welch t-test of the log-latencies of the segment before
against the segment after (the neighbouring change points bound them); it is reported when ``p < alpha`` and
the step is at least ``min_change``. Magnitude: ratio of the segments' geometric means, with its 95% CI from
the same t interval.

Why ruptures and not Apache Otava / MongoDB's signal-processing-algorithms (E-divisive, made for performance
CI): both pin old numerical stacks -- Otava 0.8.0 needs numpy==2.2.0 and scipy<1.17 (plus BigQuery, Slack and
Postgres clients), signal-processing-algorithms 2.1.6 needs numpy<2, setuptools<71 and gevent -- so neither
installs beside deploykit's numpy 2.4 / scipy 1.17 without downgrading them. ruptures (the issue's fallback)
installs alone; the per-step significance test is what E-divisive's permutation test would have given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_PENALTY = 3.0  # x log(n), in units of the noise variance
DEFAULT_ALPHA = 0.01
DEFAULT_MIN_CHANGE = 0.01  # steps smaller than 1% are not reported
MIN_SEGMENT = 3


@dataclass(frozen=True)
class Step:
    index: int  # first point after the step
    change: float  # after / before - 1 (geometric means)
    ci: tuple[float, float]  # 95% CI of ``change``
    p_value: float
    before_n: int
    after_n: int

    @property
    def kind(self) -> str:
        return "regression" if self.change > 0 else "improvement"


def noise_sigma(logs: np.ndarray) -> float:
    """Robust noise of a series: MAD of first differences / (0.6745 * sqrt 2); steps barely move it."""
    if logs.size < 3:
        return float("nan")
    d = np.diff(logs)
    mad = float(np.median(np.abs(d - np.median(d))))
    sigma = mad / 0.6745 / math.sqrt(2)
    if sigma <= 0:
        sigma = float(np.std(d)) / math.sqrt(2)
    return sigma if sigma > 0 else 1e-9


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """(difference of means b - a, its 95% CI lo, hi, two-sided p) by Welch's t."""
    from scipy import stats

    diff = float(b.mean() - a.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff, 0.0 if diff else 1.0
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.975, df)) * se
    return diff, diff - half, diff + half, p


def detect(values: Sequence[float], *, penalty: float = DEFAULT_PENALTY, alpha: float = DEFAULT_ALPHA,
           min_change: float = DEFAULT_MIN_CHANGE, min_segment: int = MIN_SEGMENT) -> list[Step]:
    """The significant steps of ``values`` (positive latencies, in order)."""
    from deploykit.core.lazy import require

    rpt = require("ruptures", "change-point detection in 'deploykit history'")
    x = np.log(np.asarray(values, dtype=np.float64))
    n = x.size
    if n < 2 * min_segment or not np.all(np.isfinite(x)):
        return []
    sigma = noise_sigma(x)
    z = (x - x.mean()) / sigma
    algo = rpt.Pelt(model="l2", min_size=min_segment, jump=1).fit(z.reshape(-1, 1))
    bkps = [b for b in algo.predict(pen=penalty * math.log(n)) if b < n]
    edges = [0, *bkps, n]
    steps = []
    for i, b in enumerate(bkps, start=1):
        before, after = x[edges[i - 1]:b], x[b:edges[i + 1]]
        if before.size < 2 or after.size < 2:
            continue
        d, lo, hi, p = _welch(before, after)
        if p >= alpha or abs(math.expm1(d)) < min_change:
            continue
        steps.append(Step(index=b, change=math.expm1(d), ci=(math.expm1(lo), math.expm1(hi)), p_value=p,
                          before_n=before.size, after_n=after.size))
    return steps
