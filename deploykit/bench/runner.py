"""The measurement loops every target is timed with.

Latency mode (``measure``): session load (timed) -> first inference (timed, reported apart) -> ``warmup``
iterations -> the measured loop. Its stop rule: run ``min_time`` seconds; past that, go on only while fewer
than ``min_iters`` iterations were measured (the floor the statistics need, see ``BenchConfig``); ``max_time``
bounds everything. The ``stop_reason`` says which of the three ended it, and the progress callback reports
the phase ``"min-iters"`` once when the loop runs past ``min_time`` for the floor. Each iteration is one
synchronous inference on the same prepared input; the per-iteration samples are kept raw.

Throughput mode (``measure_throughput``): the runtime keeps N requests in flight (``submit``); every
completion is timestamped here (``now_ns`` in bench's own callback), its request is resubmitted at once, and
the same stop rule decides when to stop resubmitting; the requests still in flight are drained and counted.
Samples are per-request latencies (submit -> completion); throughput = batch x completed requests / wall time.

``on_start`` / ``on_stop`` are called right before the measured loop's first clock read and right after its
last one (energy meters read there, so energy covers exactly the measured window).
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Callable

from deploykit.bench.timer import Timer, now_ns
from deploykit.core.config import BenchConfig
from deploykit.core.errors import RunFailure, runtime_raised, squash

# progress callback: (phase, iterations done, elapsed seconds in the phase)
Progress = Callable[[str, int, float], None]
Hook = Callable[[], None] | None

STOP_MIN_TIME = "min-time reached"  # with at least min-iters iterations by then
STOP_MIN_ITERS = "min-iters reached after min-time"  # the floor made the loop run past min-time
STOP_MAX_TIME = "max-time reached"


class StopRule:
    """The stop rule of both loops, fed the iteration count and the elapsed time after every iteration."""

    def __init__(self, cfg: BenchConfig, progress: Progress | None = None):
        self.min_ns, self.max_ns, self.min_iters = int(cfg.min_time * 1e9), int(cfg.max_time * 1e9), cfg.min_iters
        self.progress = progress
        self.past_min_time = False  # min_time was reached with fewer than min_iters iterations

    def reason(self, iters: int, elapsed_ns: int) -> str | None:
        """Why to stop now, or None to go on."""
        if elapsed_ns >= self.min_ns:
            if iters >= self.min_iters:
                return STOP_MIN_ITERS if self.past_min_time else STOP_MIN_TIME
            if not self.past_min_time:
                self.past_min_time = True
                if self.progress is not None and self.min_ns > 0 and elapsed_ns < self.max_ns:
                    self.progress("min-iters", iters, elapsed_ns / 1e9)
        if elapsed_ns >= self.max_ns:
            return STOP_MAX_TIME
        return None


@dataclass
class Measurement:
    batch: int
    samples_ns: list[int]
    wall_ns: int  # wall time of the measured loop, from its first start to its last stop
    stop_reason: str
    warmup_ns: list[int] = field(default_factory=list)
    load_ns: int | None = None
    first_ns: int | None = None
    mode: str = "latency"
    requests: int = 1  # requests in flight (throughput mode)
    device_ns: dict[str, list[int]] = field(default_factory=dict)  # device-clock samples (CUDA events) per kind

    @property
    def iterations(self) -> int:
        return len(self.samples_ns)

    @property
    def items_per_s(self) -> float:
        return self.batch * self.iterations / (self.wall_ns / 1e9) if self.wall_ns > 0 else 0.0


def measure(infer: Callable[[], object], cfg: BenchConfig, *, batch: int, timer: Timer | None = None,
            progress: Progress | None = None, progress_every_s: float = 0.25,
            device_timer: Callable[[], dict[str, int] | None] | None = None,
            on_start: Hook = None, on_stop: Hook = None) -> Measurement:
    """Warm up, then time ``infer`` until the stop rule is met. The first inference should already have
    been timed separately by the caller (it includes lazy initialisation on most runtimes).

    ``device_timer`` (GPU targets): called after each measured iteration (outside its timed interval) and
    returns device-clock durations of that iteration, collected into ``Measurement.device_ns``."""
    timer = timer or Timer()
    tick = int(progress_every_s * 1e9)

    warm: list[int] = []
    samples: list[int] = []
    try:
        start = now_ns()
        for _ in range(cfg.warmup):
            warm.append(timer.time_ns(infer))
        if progress:
            progress("warmup", len(warm), (now_ns() - start) / 1e9)

        rule = StopRule(cfg, progress)
        device: dict[str, list[int]] = {}
        append = samples.append
        time_ns = timer.time_ns
        if on_start:
            on_start()
        start = now_ns()
        next_tick = start + tick
        while True:
            append(time_ns(infer))
            if device_timer is not None:
                for kind, ns in (device_timer() or {}).items():
                    device.setdefault(kind, []).append(ns)
            t = now_ns()
            elapsed = t - start
            reason = rule.reason(len(samples), elapsed)
            if reason is not None:
                break
            if progress is not None and t >= next_tick:
                progress("measure", len(samples), elapsed / 1e9)
                next_tick = t + tick
    except Exception as exc:
        if not runtime_raised(exc):
            raise
        where = f"inference {len(samples) + 1} of the timed loop" if samples or len(warm) == cfg.warmup else \
            f"warm-up inference {len(warm) + 1}"
        done = f"{len(samples)} timed inference(s) before it" + (
            f" (p50 {sorted(samples)[len(samples) // 2] / 1e6:.3f} ms)" if samples else "")
        raise RunFailure(f"the runtime failed on {where}: {squash(exc, 200)}; {done}") from None
    wall = now_ns() - start
    if on_stop:
        on_stop()
    if progress:
        progress("done", len(samples), wall / 1e9)
    return Measurement(batch=batch, samples_ns=samples, wall_ns=wall, stop_reason=reason, warmup_ns=warm,
                       device_ns=device)


def first_inference(infer: Callable[[], object], timer: Timer, what: str = "the first inference") -> int:
    """``timer.time_ns(infer)`` of a run's first inference; a runtime's failure there is one line (RunFailure)."""
    try:
        return timer.time_ns(infer)
    except Exception as exc:
        if not runtime_raised(exc):
            raise
        raise RunFailure(f"the runtime failed on {what}: {squash(exc, 200)}; nothing was measured") from None


class RequestTimeout(RuntimeError):
    """A submitted request never reported completion (a runtime bug or a hung device)."""


def measure_throughput(submit: Callable[[int, Callable[[int], None]], None], requests: int, cfg: BenchConfig, *,
                       batch: int, progress: Progress | None = None, progress_every_s: float = 0.25,
                       on_start: Hook = None, on_stop: Hook = None, timeout_s: float | None = None) -> Measurement:
    """Keep ``requests`` asynchronous requests in flight until the stop rule is met (see module docstring).

    ``submit(slot, done)`` starts request ``slot`` and must call ``done(slot)`` once it has finished; ``done``
    timestamps the completion with the one clock (``now_ns``). Warm-up: ``max(warmup, requests)`` completed
    requests (every request runs at least once), unless ``warmup`` is 0."""
    if requests < 1:
        raise ValueError("requests must be >= 1")
    completions: queue.SimpleQueue = queue.SimpleQueue()
    put = completions.put
    timeout = timeout_s if timeout_s is not None else max(60.0, 2 * cfg.max_time)

    def done(slot: int) -> None:  # runs on the runtime's completion thread
        put((slot, now_ns()))

    def next_done() -> tuple[int, int]:
        try:
            return completions.get(timeout=timeout)
        except queue.Empty:
            raise RequestTimeout(f"an inference request did not complete within {timeout:g} s") from None

    t_sub = [0] * requests

    def start_all() -> None:
        for s in range(requests):
            t_sub[s] = now_ns()
            submit(s, done)

    # warm-up
    warm: list[int] = []
    n_warm = max(cfg.warmup, requests) if cfg.warmup else 0
    if n_warm:
        t0 = now_ns()
        start_all()
        inflight, submitted = requests, requests
        while inflight:
            slot, t = next_done()
            inflight -= 1
            warm.append(t - t_sub[slot])
            if submitted < n_warm:
                t_sub[slot] = now_ns()
                submit(slot, done)
                inflight += 1
                submitted += 1
        if progress:
            progress("warmup", len(warm), (now_ns() - t0) / 1e9)

    # measured window
    rule = StopRule(cfg, progress)
    tick = int(progress_every_s * 1e9)
    samples: list[int] = []
    reason = STOP_MAX_TIME
    if on_start:
        on_start()
    start = now_ns()
    next_tick = start + tick
    start_all()
    inflight = requests
    stopping = False
    while inflight:
        slot, t = next_done()
        inflight -= 1
        samples.append(t - t_sub[slot])
        if stopping:
            continue
        elapsed = t - start
        why = rule.reason(len(samples), elapsed)
        if why is not None:
            stopping, reason = True, why
        else:
            t_sub[slot] = now_ns()
            submit(slot, done)
            inflight += 1
            if progress is not None and t >= next_tick:
                progress("measure", len(samples), elapsed / 1e9)
                next_tick = t + tick
    wall = now_ns() - start
    if on_stop:
        on_stop()
    if progress:
        progress("done", len(samples), wall / 1e9)
    return Measurement(batch=batch, samples_ns=samples, wall_ns=wall, stop_reason=reason, warmup_ns=warm,
                       mode="throughput", requests=requests)
