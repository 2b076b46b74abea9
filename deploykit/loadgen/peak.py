"""The peak-QPS search: LoadGen's FindPeakPerformance algorithm (loadgen.cc), as a pure function of a run.

LoadGen's rule, reproduced step for step so that ``--peak-method bisect`` (one PerformanceOnly LoadGen run per
step, each with its own logs) finds what ``--peak-method loadgen`` (LoadGen's own mode, one test) finds:

1. the starting QPS must meet the latency bound (else: no peak, say so);
2. widen: multiply by (1 + step size) until a QPS misses the bound -> bounds [last met, first missed);
3. bisect: try the middle of the bounds, keep the half that contains the boundary, until the bounds agree to
   ``decimals`` decimal places (``floor(lo * 10^d) + 1 >= floor(hi * 10^d)``); the peak is the lower bound.

"Meets the bound" is LoadGen's per-run performance constraint: the target-percentile latency of the run is
within the bound (LoadGen's ``PerfConstraintsMet``; early stopping and the minimum duration are not part of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

MAX_WIDEN_STEPS = 40  # 2^40 x the start: a SUT that never misses is a bug in the run, not a fast SUT


@dataclass
class PeakSearch:
    steps: list[dict] = field(default_factory=list)  # {"phase": base|widen|bisect, "qps": float, "met": bool}
    peak_qps: float | None = None
    failure: str | None = None


def finished(lo: float, hi: float, decimals: int) -> bool:
    """LoadGen's ``IsFinished``: the bounds agree to ``decimals`` decimal places."""
    scale = 10 ** decimals
    return math.floor(lo * scale) + 1 >= math.floor(hi * scale)


def search_peak(run: Callable[[float], bool], start: float, *, step_size: float = 1.0, decimals: int = 0,
                on_step: Callable[[dict], None] | None = None) -> PeakSearch:
    """The highest QPS ``run`` says meets the bound, by LoadGen's algorithm (module docstring). ``run(qps)``
    returns whether a run at ``qps`` met it; ``on_step`` sees each step as it is decided."""
    if not start > 0:
        raise ValueError(f"start QPS must be positive, got {start}")
    out = PeakSearch()

    def step(phase: str, qps: float) -> bool:
        met = bool(run(qps))
        rec = {"phase": phase, "qps": qps, "met": met}
        out.steps.append(rec)
        if on_step:
            on_step(rec)
        return met

    if not step("base", start):
        out.failure = (f"the starting QPS {start:g} already misses the latency bound: start lower (--qps) or "
                       "loosen the bound")
        return out
    lo = start
    for _ in range(MAX_WIDEN_STEPS):
        hi = lo * (1 + step_size)
        if not step("widen", hi):
            break
        lo = hi
    else:
        out.failure = f"every QPS up to {lo:g} met the bound ({MAX_WIDEN_STEPS} widening steps): no upper bound found"
        out.peak_qps = lo
        return out
    while not finished(lo, hi, decimals):
        mid = lo + (hi - lo) / 2
        if step("bisect", mid):
            lo = mid
        else:
            hi = mid
    out.peak_qps = lo
    return out
