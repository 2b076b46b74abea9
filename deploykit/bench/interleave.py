"""Interleaved A/B measurement in ABBA blocks: two loaded models timed in the same process, alternating.

Machine speed on a shared runner drifts by several percent within seconds (other jobs, frequency, thermal
state). Timing A for a minute and then B for a minute folds that drift into the comparison. Here A and B
are measured in short blocks, alternating A B | B A | A B | B A ... (ABBA: each round swaps which side goes
first, so "being first after a switch" and any linear drift fall on both sides equally). Each block is one
call of ``bench.runner.measure`` -- the one timer and the one stop rule -- with a block-sized BenchConfig
(a few warm-up iterations to refill caches after the switch, then at least ``min_iters`` iterations and
``min_time`` seconds). A round's two blocks are adjacent in time, so the ratio of their medians cancels
whatever the machine was doing at that moment; gate/decision.py turns the rounds' log-ratios into a decision.

Rounds are added two at a time (one ABBA quartet) until ``enough(rounds)`` says so, ``max_rounds`` is reached,
or the time budget would be exceeded by the next quartet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from deploykit.bench.runner import measure
from deploykit.bench.stats import percentile
from deploykit.bench.timer import Timer, now_ns
from deploykit.core.config import BenchConfig
from deploykit.core.errors import UsageError

METRICS = ("p50", "p90", "throughput")

STOP_DECIDED = "decided"
STOP_MAX_ROUNDS = "max blocks reached"
STOP_BUDGET = "time budget reached"
STOP_FIXED = "fixed number of blocks"


@dataclass
class Side:
    """One side of a comparison: a bound inference call and its timer (device sync included)."""

    label: str
    infer: Callable[[], object]
    batch: int = 1
    timer: Timer = field(default_factory=Timer)


@dataclass
class Block:
    samples_ns: list[int]
    wall_ns: int
    warmup_ns: list[int]
    batch: int

    def cost(self, metric: str) -> float:
        """What ``metric`` costs in this block, in seconds: larger is worse for every metric.

        p50 / p90: that percentile of the block's per-iteration latencies; throughput: wall time per item of
        the block's measured loop (the inverse of items/s)."""
        if metric == "p50":
            return float(percentile(self.samples_ns, 50)) / 1e9
        if metric == "p90":
            return float(percentile(self.samples_ns, 90)) / 1e9
        if metric == "throughput":
            return self.wall_ns / 1e9 / (self.batch * len(self.samples_ns))
        raise UsageError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")

    def to_json(self) -> dict:
        return {
            "samples_ms": [round(s / 1e6, 6) for s in self.samples_ns],
            "warmup_ms": [round(s / 1e6, 6) for s in self.warmup_ns],
            "wall_s": self.wall_ns / 1e9,
            "batch": self.batch,
            "median_ms": float(percentile(self.samples_ns, 50)) / 1e6,
            "p90_ms": float(percentile(self.samples_ns, 90)) / 1e6,
            "items_per_s": self.batch * len(self.samples_ns) / (self.wall_ns / 1e9) if self.wall_ns else 0.0,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Block":
        return cls(samples_ns=[int(round(s * 1e6)) for s in d["samples_ms"]], wall_ns=int(round(d["wall_s"] * 1e9)),
                   warmup_ns=[int(round(s * 1e6)) for s in d.get("warmup_ms", [])], batch=int(d.get("batch", 1)))


@dataclass
class Round:
    index: int
    order: str  # "AB" or "BA": which side ran first
    a: Block
    b: Block

    def log_ratio(self, metric: str) -> float:
        """log(cost of B / cost of A): > 0 means B is slower."""
        return math.log(self.b.cost(metric) / self.a.cost(metric))

    def to_json(self) -> dict:
        return {"index": self.index, "order": self.order, "a": self.a.to_json(), "b": self.b.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> "Round":
        return cls(index=int(d["index"]), order=d["order"], a=Block.from_json(d["a"]), b=Block.from_json(d["b"]))


@dataclass
class Interleaved:
    rounds: list[Round]
    stop_reason: str
    wall_s: float
    block: BenchConfig

    def log_ratios(self, metric: str) -> list[float]:
        return log_ratios(self.rounds, metric)

    def settings(self) -> dict:
        return block_settings(self.block)


def log_ratios(rounds: Sequence[Round], metric: str) -> list[float]:
    return [r.log_ratio(metric) for r in rounds]


def block_config(*, block_time: float = 0.25, block_iters: int = 5, block_warmup: int = 2,
                 max_block_time: float | None = None) -> BenchConfig:
    """The BenchConfig of one block: a short run under the usual stop rule."""
    return BenchConfig(warmup=block_warmup, min_iters=block_iters, min_time=block_time,
                       max_time=max_block_time or max(10.0, 4 * block_time))


def block_settings(cfg: BenchConfig) -> dict:
    return {"block_warmup": cfg.warmup, "block_iters": cfg.min_iters, "block_time": cfg.min_time,
            "max_block_time": cfg.max_time}


def block_config_from(settings: dict) -> BenchConfig:
    return block_config(block_time=float(settings["block_time"]), block_iters=int(settings["block_iters"]),
                        block_warmup=int(settings["block_warmup"]), max_block_time=float(settings["max_block_time"]))


def abba_order(index: int) -> str:
    """Round 0 runs A first, round 1 B first, and so on: A B | B A | A B | B A ..."""
    return "AB" if index % 2 == 0 else "BA"


def _run_block(side: Side, cfg: BenchConfig) -> Block:
    m = measure(side.infer, cfg, batch=side.batch, timer=side.timer)
    return Block(samples_ns=m.samples_ns, wall_ns=m.wall_ns, warmup_ns=m.warmup_ns, batch=side.batch)


def run_interleaved(a: Side, b: Side, block: BenchConfig, *, min_rounds: int = 10, max_rounds: int = 60,
                    time_budget_s: float | None = None, enough: Callable[[list[Round]], bool] | None = None,
                    prewarm: int = 5, progress: Callable[[int, float], None] | None = None) -> Interleaved:
    """Measure A and B alternately in ABBA rounds until ``enough`` (checked after ``min_rounds`` and after every
    further quartet), ``max_rounds`` or the time budget. Without ``enough`` exactly ``min_rounds`` rounds run."""
    if min_rounds < 2 or max_rounds < min_rounds:
        raise UsageError(f"need 2 <= min blocks <= max blocks, got {min_rounds} and {max_rounds}")
    min_rounds += min_rounds % 2  # whole ABBA quartets keep the order balanced
    max_rounds -= max_rounds % 2
    max_rounds = max(max_rounds, min_rounds)
    for side in (a, b):  # both sessions hot before the first block (the first inference was timed by the caller)
        for _ in range(prewarm):
            side.infer()
    rounds: list[Round] = []
    start = now_ns()
    reason = STOP_FIXED if enough is None else STOP_MAX_ROUNDS
    while len(rounds) < max_rounds:
        i = len(rounds)
        order = abba_order(i)
        first, second = (a, b) if order == "AB" else (b, a)
        x = _run_block(first, block)
        y = _run_block(second, block)
        rounds.append(Round(index=i, order=order, a=x if order == "AB" else y, b=y if order == "AB" else x))
        elapsed = (now_ns() - start) / 1e9
        if progress is not None:
            progress(len(rounds), elapsed)
        if len(rounds) < min_rounds or len(rounds) % 2:
            continue
        if enough is None:
            break
        if enough(rounds):
            reason = STOP_DECIDED
            break
        per_round = elapsed / len(rounds)
        if time_budget_s is not None and elapsed + 2 * per_round > time_budget_s:
            reason = STOP_BUDGET
            break
    return Interleaved(rounds=rounds, stop_reason=reason, wall_s=(now_ns() - start) / 1e9, block=block)


def summarize_side(rounds: Sequence[Round], side: str) -> dict:
    """Pooled latency statistics (ms) of one side's samples across all its blocks."""
    samples = np.concatenate([np.asarray((r.a if side == "a" else r.b).samples_ns, dtype=np.float64)
                              for r in rounds]) / 1e6
    return {"n": int(samples.size), "p50": float(percentile(samples, 50)), "p90": float(percentile(samples, 90)),
            "mean": float(samples.mean()), "min": float(samples.min()), "max": float(samples.max())}


@dataclass
class LoadedSide:
    """A model loaded on a target with its input bound, ready to be one side of an interleaved run."""

    model: object  # export.source.ResolvedModel
    runtime: object  # runtimes.base.Runtime
    side: Side
    load_ms: float
    first_ms: float
    info: dict
    fidelity: dict | None = None  # the outputs against the model's reference (``check_outputs``)

    def close(self) -> None:
        self.runtime.close()


def load_side(label: str, model, runtime_cls, options, *, seed: int = 0, check_outputs: bool = False) -> LoadedSide:
    """Load ``model`` (a ResolvedModel) with ``runtime_cls(options)``, bind the seeded input, time the first
    inference (reported apart, as in ``bench``). ``check_outputs``: compare the outputs with the model's reference
    once, before any timing -- the same check as ``bench`` (``bench.fidelity``)."""
    from deploykit.onnxio.reference import make_input
    from deploykit.runtimes.base import DEVICE_TIMING, ModelInput

    ref = None
    if check_outputs:
        from deploykit.bench.fidelity import reference_outputs

        x, ref, ref_label = reference_outputs(model, seed)
    else:
        x = make_input(model.input_shape, seed, model.input_dtype)
    rt = runtime_cls(options)
    rt.share_process()  # the other side is (or will be) loaded in this process too
    t0 = now_ns()
    rt.load(ModelInput(model.path, model.input_name, model.input_shape, model.input_dtype, manifest=model.manifest,
                       precision=model.precision))
    load_ns = now_ns() - t0
    try:
        rt.set_input(x)
        timer = Timer(rt.sync if rt.has(DEVICE_TIMING) else None)  # as bench: a device sync only where there is one
        first_ns = timer.time_ns(rt.infer)
        info = rt.info()
        fid = None
        if ref is not None:
            from deploykit.bench.fidelity import fidelity

            fid = fidelity(ref, rt.outputs()[0], ref_label, info.get("precision") or model.precision)
    except BaseException:
        rt.close()
        raise
    return LoadedSide(model=model, runtime=rt, side=Side(label, rt.infer, model.input_shape[0], timer),
                      load_ms=load_ns / 1e6, first_ms=first_ns / 1e6, info=info, fidelity=fid)
