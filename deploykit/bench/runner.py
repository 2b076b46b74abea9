"""The measurement loop every target is timed with.

Sequence: session load (timed) -> first inference (timed, reported apart) -> ``warmup`` untimed-for-stats
iterations -> the measured loop, which stops once it has at least ``min_iters`` iterations AND ``min_time``
seconds, or at ``max_time`` seconds whichever comes first. Each iteration is one synchronous inference on
the same prepared input; the per-iteration samples are kept raw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from deploykit.bench.timer import Timer, now_ns
from deploykit.core.config import BenchConfig

# progress callback: (phase, iterations done, elapsed seconds in the phase)
Progress = Callable[[str, int, float], None]

STOP_MIN_BOTH = "min-iters and min-time reached"
STOP_MAX_TIME = "max-time reached"


@dataclass
class Measurement:
    batch: int
    samples_ns: list[int]
    wall_ns: int  # wall time of the measured loop, from its first start to its last stop
    stop_reason: str
    warmup_ns: list[int] = field(default_factory=list)
    load_ns: int | None = None
    first_ns: int | None = None

    @property
    def iterations(self) -> int:
        return len(self.samples_ns)

    @property
    def items_per_s(self) -> float:
        return self.batch * self.iterations / (self.wall_ns / 1e9) if self.wall_ns > 0 else 0.0


def measure(infer: Callable[[], object], cfg: BenchConfig, *, batch: int, timer: Timer | None = None,
            progress: Progress | None = None, progress_every_s: float = 0.25) -> Measurement:
    """Warm up, then time ``infer`` until the stop rule is met. The first inference should already have
    been timed separately by the caller (it includes lazy initialisation on most runtimes)."""
    timer = timer or Timer()
    tick = int(progress_every_s * 1e9)

    warm = []
    start = now_ns()
    for _ in range(cfg.warmup):
        warm.append(timer.time_ns(infer))
    if progress:
        progress("warmup", len(warm), (now_ns() - start) / 1e9)

    min_ns = int(cfg.min_time * 1e9)
    max_ns = int(cfg.max_time * 1e9)
    min_iters = cfg.min_iters
    samples: list[int] = []
    append = samples.append
    time_ns = timer.time_ns
    start = now_ns()
    next_tick = start + tick
    while True:
        append(time_ns(infer))
        t = now_ns()
        elapsed = t - start
        if elapsed >= min_ns and len(samples) >= min_iters:
            reason = STOP_MIN_BOTH
            break
        if elapsed >= max_ns:
            reason = STOP_MAX_TIME
            break
        if progress is not None and t >= next_tick:
            progress("measure", len(samples), elapsed / 1e9)
            next_tick = t + tick
    wall = now_ns() - start
    if progress:
        progress("done", len(samples), wall / 1e9)
    return Measurement(batch=batch, samples_ns=samples, wall_ns=wall, stop_reason=reason, warmup_ns=warm)
