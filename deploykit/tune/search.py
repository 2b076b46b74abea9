"""The search of ``deploykit tune``: check every candidate once, then successive halving on the objective, then
the A/B proof of the winner -- within a wall-time budget, every decision recorded with its numbers.

Stages (each candidate at each stage is a sweep cell run by the sweep's executor, local or Slurm: a crash is a row
with its reason, the search goes on):

1. ``check``: each candidate built (export / int8 build, both cached in the artifact store across candidates) and
   run briefly: its fidelity against the fp32 reference, its accuracy on ``--eval-data`` (int8: the paired drop
   against the fp32 file it was made from), its memory. A candidate that fails a constraint is dropped here, before
   any timing, with its numbers. The default fp32 and int8 of each target are always checked; the others while the
   budget allows (estimated from the cells already run).
2. ``rung<k>``: successive halving on the objective: every survivor measured for ``t`` seconds, the better half
   kept (the default fp32 of each target and the best int8 of each target are kept too: every verdict is against
   them), ``2t`` for the next rung, ... The rung times are sized from the budget left and the per-cell overhead
   measured so far.
3. A/B: the winner interleaved (the gate's ABBA rounds and its anytime-valid decision, three outcomes) against the
   runner-up and against the default fp32 of its target; the best int8 of every target against that target's fp32.

The state is ``tune.json`` in the output folder, written after every cell: ``--resume`` runs nothing that has a row
there, and every decision is recomputed from the rows (the search is a function of its rows and its budget).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from deploykit.core.config import BenchConfig
from deploykit.core.errors import DeployKitError, UsageError
from deploykit.spec.run import RunSpec
from deploykit.tune.space import Candidate, SpaceSettings, TuneCell, cell_of, generate

Say = Callable[[str], None]
TUNE_FILE = "tune.json"
SCHEMA = "deploykit.tune"
# what a cell costs before any has run (measured on a 2-core runner at 64 px; scaled by the pixel count)
START_S = 6.0
EXPORT_S = 20.0
BUILD_S = 30.0
AB_SHARE = 0.15  # of the budget kept for the A/B proofs
FALLBACK_SHARE = 0.25  # of the budget the halving leaves for the fallback stage
MIN_RUNG_S = 0.5
MAX_RUNG_S = 20.0
AB_LOAD_S = 3.0  # loading one side (its artifact is built by then)
AB_ROUNDS = 8  # the fewest ABBA rounds an A/B runs
AB_BLOCK = {"block_time": 0.2, "block_iters": 3, "block_warmup": 1}
AB_PAIRS = 3  # A/Bs the budget keeps room for: against the runner-up, the default fp32, another target's int8


@dataclass(frozen=True)
class TuneSettings:
    """How ``deploykit tune`` searches, what it must hold, and how long it may take."""

    objective: str = "latency"
    budget_s: float = 1200.0
    max_drop: float | None = None  # accuracy points on eval_data
    eval_data: str | None = None
    eval_size: int | None = None
    max_memory: float | None = None  # MB, the run's peak RSS
    latency_bound: float | None = None  # ms, server objective
    executor: str = "local"
    executor_options: tuple[tuple[str, Any], ...] = ()
    models_dir: str | None = None
    seed: int = 0
    ab_tolerance: float | None = None  # None: the gate's default for the metric
    check_iters: int = 5
    fallback: bool = True  # the fallback stage runs (budget kept for it)
    max_rung_s: float = MAX_RUNG_S  # the longest a candidate is timed in one rung

    def __post_init__(self):
        if not (math.isfinite(self.budget_s) and self.budget_s > 0):
            raise UsageError(f"--budget must be positive, got {self.budget_s}")
        if self.max_drop is not None and not (math.isfinite(self.max_drop) and self.max_drop >= 0):
            raise UsageError(f"--max-drop must be a non-negative number of accuracy points, got {self.max_drop}")
        if self.max_drop is not None and not self.eval_data:
            raise UsageError("--max-drop needs labelled data: --eval-data DIR (without it the fidelity floors judge)")
        if self.objective == "server" and self.latency_bound is None:
            raise UsageError("--objective server needs --latency-bound MS (the peak QPS is the one that meets it)")

    @property
    def lower_is_better(self) -> bool:
        return self.objective in ("latency", "p99")

    @property
    def ab_metric(self) -> str:
        return {"latency": "p50", "p99": "p90"}.get(self.objective, "throughput")

    def to_json(self) -> dict:
        from dataclasses import asdict

        d = asdict(self)
        d["executor_options"] = {k: str(v) for k, v in self.executor_options}
        return d


# --------------------------------------------------------------------------------------------- the state

@dataclass
class State:
    """Everything the search knows: candidates, rows of finished cells (by cell key), decisions, timings."""

    out: Path
    candidates: list[Candidate]
    rows: dict[str, dict] = field(default_factory=dict)
    decisions: list[dict] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)
    ab: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    spent_before_s: float = 0.0

    def by_id(self, cid: str) -> Candidate:
        return next(c for c in self.candidates if c.cid == cid)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def decide(self, c: Candidate, stage: str, decision: str, reason: str, **numbers) -> None:
        self.decisions.append({"candidate": c.cid, "label": c.label(), "stage": stage, "decision": decision,
                               "reason": reason, **{k: _clean(v) for k, v in numbers.items()}})


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def load_previous(out: Path) -> dict | None:
    from deploykit.core.validate import read_cache_json

    data = read_cache_json(out / TUNE_FILE, max_bytes=64 * 1024 * 1024)
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def save(state: State, settings: TuneSettings, base: RunSpec, space: SpaceSettings) -> Path:
    from deploykit.core.atomic import write_json

    doc = {"schema": SCHEMA, "version": 1, "model": base.model, "base_spec": base.to_dict(),
           "settings": settings.to_json(),
           "space": {"targets": list(space.targets), "threads": space.threads,
                     "calib_methods": list(space.calib_methods), "calib_data": space.calib.calib_data,
                     "calib_size": space.calib.calib_size},
           "candidates": [c.to_json() for c in state.candidates],
           "rows": state.rows, "stages": state.stages, "decisions": state.decisions, "ab": state.ab,
           "runs": state.runs, **state.result}
    return write_json(state.out / TUNE_FILE, _jsonable(doc))


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):  # numpy scalars
        try:
            return _jsonable(x.item())
        except (TypeError, ValueError):
            return str(x)
    if x is None or isinstance(x, (str, int, bool)):
        return x
    try:
        import pandas as pd

        if pd.isna(x):
            return None
    except (TypeError, ValueError, ImportError):
        pass
    return str(x)


# ------------------------------------------------------------------------------------------ measuring

def check_measure(settings: TuneSettings, base: RunSpec) -> BenchConfig:
    """The check stage's run: a few iterations (the artifact built, loaded, its outputs checked), accuracy on the
    labelled data, memory; no energy, no idle wait."""
    return BenchConfig(batch=base.batch, resolution=base.resolution, warmup=1, min_iters=settings.check_iters,
                       min_time=0.0, max_time=5.0, energy="off", idle_time=0.0, bootstrap=200, seed=settings.seed,
                       eval_data=settings.eval_data, eval_size=settings.eval_size)


def rung_measure(settings: TuneSettings, spec: RunSpec, seconds: float):
    """A rung's measurement of ``spec``: bench's stop rule for ``seconds`` (the server objective: LoadGen's
    peak search under the latency bound, each step ``seconds`` long)."""
    if settings.objective == "server":
        from deploykit.spec.loadgen import LoadgenConfig

        # the peak search runs ~10 LoadGen runs: each a tenth of the rung's time, p90 with the 100 queries early
        # stopping needs there (p99 would need 690 a step: minutes per candidate at a few tens of QPS)
        return LoadgenConfig(scenario="server", find_peak=True, peak_method="bisect",
                             latency_bound_ms=settings.latency_bound, duration_s=max(1.0, seconds / 10),
                             percentile=90.0, min_queries=100, batch=spec.batch, resolution=spec.resolution,
                             seed=settings.seed)
    return BenchConfig(batch=spec.batch, resolution=spec.resolution, warmup=3, min_iters=10, min_time=seconds,
                       max_time=max(2 * seconds, seconds + 5), energy="off", idle_time=0.0, bootstrap=1000,
                       seed=settings.seed)


def objective_value(row: dict, settings: TuneSettings) -> float:
    """The objective of a finished cell (NaN when it has none): p50 / p99 ms, items/s, peak QPS."""
    col = {"latency": "p50_ms", "p99": "p99_ms", "throughput": "items_per_s", "server": "peak_qps"}[settings.objective]
    v = row.get(col)
    if settings.objective == "server" and _nan(v):
        v = row.get("qps_achieved")
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) and v > 0 else math.nan


def cost(row: dict, settings: TuneSettings) -> float:
    """Lower is better: the objective, inverted for throughput and QPS."""
    v = objective_value(row, settings)
    if math.isnan(v):
        return math.inf
    return v if settings.lower_is_better else 1.0 / v


def _nan(v) -> bool:
    try:
        return v is None or math.isnan(float(v))
    except (TypeError, ValueError):
        return True


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


class Runner:
    """Runs cells through the sweep's executor, one stage at a time, stopping when the budget says so."""

    def __init__(self, state: State, settings: TuneSettings, base: RunSpec, space: SpaceSettings, say: Say):
        self.state, self.settings, self.base, self.space, self.say = state, settings, base, space, say

    def executor(self, timeout: float):
        from deploykit.sweep.executor import make_executor
        from deploykit.sweep.spec import BenchSettings

        bench = BenchSettings(cell_timeout=max(30.0, timeout), out=str(self.state.out))
        models_dir = Path(self.settings.models_dir) if self.settings.models_dir else None
        return make_executor(self.settings.executor, bench, self.state.out, models_dir=models_dir,
                             say=self.say, **dict(self.settings.executor_options))

    def run(self, cells: list[TuneCell], *, limit_s: Callable[[TuneCell], float | None]) -> None:
        """Run the cells that have no row yet, in order; before each, ``limit_s(cell)`` is the time it may take
        (None: it does not fit the budget any more: the rest are not run)."""
        todo = [c for c in cells if c.key not in self.state.rows]
        if not todo:
            return
        stopped: list[TuneCell] = []

        def gen():
            for c in todo:
                lim = limit_s(c)
                if lim is None:
                    stopped.extend(todo[todo.index(c):])
                    return
                yield c

        remaining = self.settings.budget_s - self.state.elapsed()
        ex = self.executor(remaining + 60)
        for row in ex.run(gen()):
            self.state.rows[row["cell"]] = {k: _jsonable(v) for k, v in row.items()}
            self.say(f"{row['cell']}: {row['status']}"
                     + (f" ({row.get('reason')})" if row.get("status") != "ok" and row.get("reason") else ""))
            save(self.state, self.settings, self.base, self.space)


# --------------------------------------------------------------------------------------------- the search

def scale(base: RunSpec) -> float:
    """How much costlier than a 64 px run a cell is (its pixel count), for the estimates before any cell ran."""
    r = base.resolution or 224
    return max(1.0, (r / 64) ** 2 / 2)


def row_of(state: State, stage: str, c: Candidate) -> dict | None:
    return state.rows.get(f"{stage}:{c.cid}")


def ab_cost(state: State) -> float:
    """What one A/B costs at least (seconds): two loads, the pre-warm, the fewest rounds of two blocks each --
    from the slowest p50 the checks measured (else a guess)."""
    p50 = [_num(r.get("p50_ms")) / 1e3 for k, r in state.rows.items() if r.get("status") == "ok"]
    p50 = [x for x in p50 if math.isfinite(x)]
    slow = max(p50) if p50 else 0.05
    block = max(AB_BLOCK["block_time"], (AB_BLOCK["block_iters"] + AB_BLOCK["block_warmup"]) * slow)
    return 2 * AB_LOAD_S + 10 * slow + AB_ROUNDS * 2 * block


def ab_reserve(state: State, settings: TuneSettings) -> float:
    """The part of the budget kept for the A/B proofs: room for ``AB_PAIRS`` of them, at least ``AB_SHARE``, at
    most 40% of the budget."""
    return min(0.4 * settings.budget_s, max(AB_SHARE * settings.budget_s, AB_PAIRS * ab_cost(state)))


def fallback_reserve(settings: TuneSettings) -> float:
    """The part of the budget the halving leaves for the fallback stage (when it runs)."""
    return FALLBACK_SHARE * settings.budget_s if settings.fallback else 0.0


def check_stage(state: State, runner: Runner, settings: TuneSettings, base: RunSpec) -> list[Candidate]:
    """Build and check every candidate while the budget allows; the survivors, in candidate order."""
    stage = "check"
    timing = settings.budget_s * 0.25  # at least one timed rung
    k = scale(base)

    def est(c: Candidate) -> float:
        """The median wall time of the checks of its kind (int8 builds / float) run so far, else a guess."""
        kind = c.spec.int8
        seen = sorted(w for key, r in state.rows.items() if key.startswith("check:")
                      for w in [_num(r.get("wall_s"))] if math.isfinite(w)
                      and state.by_id(key.split(":", 1)[1]).spec.int8 == kind)
        if seen:
            return seen[len(seen) // 2]
        return (START_S + EXPORT_S + (BUILD_S if kind else 0.0)) * k

    mandatory = {c.cid for c in state.candidates if c.role in ("fp32-default", "int8-default")}

    def limit(cell: TuneCell) -> float | None:
        left = settings.budget_s - state.elapsed() - timing - ab_reserve(state, settings)
        e = est(state.by_id(cell.cid))
        if cell.cid in mandatory:
            return max(e * 3, 60.0)
        if e > left:
            state.decide(state.by_id(cell.cid), stage, "not checked",
                         f"the budget ran out before its check (estimated {e:.0f} s, {max(left, 0):.0f} s left "
                         "for checks)", estimated_s=e, left_s=left)
            return None
        return max(e * 3, 60.0)

    first = [c for c in state.candidates if c.role != "fallback"]  # fallback sets are the fallback stage's
    cells = [cell_of(c, replace(c.spec, measure=check_measure(settings, base)), stage) for c in first]
    # defaults first (the references), then the others
    cells.sort(key=lambda cell: cell.cid not in mandatory)
    t0 = state.elapsed()
    runner.run(cells, limit_s=limit)
    state.stages.append({"stage": stage, "cells": sum(1 for c in cells if c.key in state.rows),
                         "wall_s": state.elapsed() - t0})
    return judge_checks(state, settings)


def reference_top1(state: State) -> tuple[float, str]:
    """The fp32 top-1 other candidates' accuracy drops are taken against (the first target's default fp32)."""
    for c in state.candidates:
        if c.role == "fp32-default":
            r = row_of(state, "check", c)
            if r is not None and r.get("status") == "ok" and not _nan(r.get("top1")):
                return float(r["top1"]), c.cid
    return math.nan, ""


def accuracy_drop(state: State, c: Candidate, row: dict) -> tuple[float, float, float, str]:
    """(drop, ci low, ci high, how) in accuracy points: the paired drop of an int8 file against the fp32 file it
    was made from (its report's), else the fp32 default's top-1 minus this one's (same images)."""
    if not _nan(row.get("acc_drop")):
        return (100 * float(row["acc_drop"]), 100 * _num(row.get("acc_drop_ci_low")),
                100 * _num(row.get("acc_drop_ci_high")), "paired against its fp32 source")
    ref, who = reference_top1(state)
    if _nan(row.get("top1")) or math.isnan(ref):
        return math.nan, math.nan, math.nan, "no top-1"
    if who == c.cid:
        return 0.0, 0.0, 0.0, "the reference"
    return 100 * (ref - float(row["top1"])), math.nan, math.nan, f"top-1 against the fp32 default ({who})"


def judge_checks(state: State, settings: TuneSettings, cands: list[Candidate] | None = None,
                 stage: str = "check") -> list[Candidate]:
    """Drop what failed its check (crash, fidelity, accuracy, memory), recording why with the numbers."""
    kept = []
    for c in ([c for c in state.candidates if c.role != "fallback"] if cands is None else cands):
        row = row_of(state, stage, c)
        if row is None:
            if not any(d["candidate"] == c.cid and d["stage"] == stage for d in state.decisions):
                state.decide(c, stage, "not checked", "no check ran (the budget ran out)")
            continue
        if row.get("status") != "ok":
            state.decide(c, stage, "dropped", f"{row.get('status')}: {row.get('reason') or 'no reason given'}",
                         exit_code=row.get("exit_code"))
            continue
        mem = _num(row.get("rss_peak_mb"))
        numbers = {"fidelity": row.get("fidelity"), "rss_peak_mb": mem, "p50_ms_short": _num(row.get("p50_ms"))}
        if settings.eval_data:
            drop, lo, hi, how = accuracy_drop(state, c, row)
            numbers.update(top1=_num(row.get("top1")), drop_points=drop, drop_ci=[lo, hi], drop_basis=how)
            if settings.max_drop is not None and (math.isnan(drop) or drop > settings.max_drop):
                state.decide(c, stage, "dropped", f"accuracy drop {drop:.2f} points ({how}) above --max-drop "
                             f"{settings.max_drop:g}" if not math.isnan(drop) else "no accuracy measured", **numbers)
                continue
        if row.get("fidelity") == "FAIL":
            state.decide(c, stage, "dropped", "its outputs are below the fidelity floors against the fp32 reference",
                         **numbers)
            continue
        if settings.max_memory is not None and not math.isnan(mem) and mem > settings.max_memory:
            state.decide(c, stage, "dropped", f"peak memory {mem:.0f} MB above --max-memory {settings.max_memory:g} MB",
                         **numbers)
            continue
        state.decide(c, stage, "kept", "built, outputs within the floors"
                     + (", accuracy within --max-drop" if settings.max_drop is not None else "")
                     + (", memory within --max-memory" if settings.max_memory is not None else ""), **numbers)
        kept.append(c)
    return kept


def protected(cands: list[Candidate], last: dict[str, float]) -> set[str]:
    """Kept through every rung whatever their rank: each target's default fp32 (the reference of every verdict)
    and each target's best int8 so far (the tuned int8 the verdicts compare with fp32)."""
    keep = {c.cid for c in cands if c.role == "fp32-default"}
    best: dict[str, tuple[float, str]] = {}
    for c in cands:
        if c.spec.int8:
            v = last.get(c.cid, math.inf)
            if c.target not in best or v < best[c.target][0]:
                best[c.target] = (v, c.cid)
    return keep | {cid for _, cid in best.values()}


def overhead(state: State) -> float:
    """Seconds a timed cell costs besides its measuring time (start, load, warm-up): from the rungs run so far,
    else from the quickest checks (their artifacts are built by then)."""
    extra = []
    for key, r in state.rows.items():
        if key.startswith("rung") and r.get("status") == "ok":
            stage = key.split(":")[0]
            t = next((s.get("seconds") for s in state.stages if s["stage"] == stage), None)
            if t is not None:
                extra.append(_num(r.get("wall_s")) - t)
    extra = [e for e in extra if math.isfinite(e)]
    if extra:
        return max(1.0, sorted(extra)[len(extra) // 2])
    checks = sorted(_num(r.get("wall_s")) for k, r in state.rows.items() if k.startswith("check:")
                    and r.get("status") == "ok" and math.isfinite(_num(r.get("wall_s"))))
    return max(2.0, checks[0]) if checks else START_S


def halving(state: State, runner: Runner, settings: TuneSettings, survivors: list[Candidate]) -> list[Candidate]:
    """Successive halving: the survivors' ranking at the last rung that measured them (best first)."""
    last: dict[str, float] = {}
    alive = list(survivors)
    k = 0
    reserve = ab_reserve(state, settings) + fallback_reserve(settings)
    state.result["reserve_s"] = reserve
    rungs_left = max(1, math.ceil(math.log2(max(len(alive), 2) / 2)) + 1)
    while alive:
        stage = f"rung{k}"
        o = overhead(state)
        left = settings.budget_s - state.elapsed() - reserve
        # the rungs left cost about n * (o + t) each with n halving and t doubling: sum ~ 2 n o + rungs n t
        n = len(alive)
        t = (left - 2 * n * o) / (n * rungs_left)
        if t < MIN_RUNG_S:
            if k == 0:
                t = MIN_RUNG_S  # one timed rung always runs: the check's few iterations rank nothing
            else:
                for c in alive:
                    state.decide(c, stage, "not timed further", f"the budget left ({max(left, 0):.0f} s) is below "
                                 f"another rung ({n} cells x ~{o + MIN_RUNG_S:.0f} s)")
                break
        t = min(t, settings.max_rung_s)
        prev = next((s for s in state.stages if s["stage"] == stage), None)
        if prev is not None:  # resumed: the rung keeps the time it was planned with (its rows are comparable)
            t = prev["seconds"]
        else:
            state.stages.append({"stage": stage, "seconds": t, "planned_overhead_s": o, "candidates": n})
        order = sorted(alive, key=lambda c: (c.role != "fp32-default", last.get(c.cid, 0.0)))
        cells = [cell_of(c, replace(c.spec, measure=rung_measure(settings, c.spec, t)), stage) for c in order]
        protect = protected(alive, last)

        def limit(cell: TuneCell, t=t, o=o, protect=protect, k=k) -> float | None:
            remaining = settings.budget_s - state.elapsed() - reserve
            if remaining < (o + t) and cell.cid not in protect and k > 0:
                return None
            return (o + t) * 4

        t0 = state.elapsed()
        runner.run(cells, limit_s=limit)
        for s in state.stages:
            if s["stage"] == stage:
                s["wall_s"] = s.get("wall_s", 0.0) + state.elapsed() - t0
        measured = []
        for c in alive:
            r = row_of(state, stage, c)
            if r is None:
                state.decide(c, stage, "dropped", "not measured in this rung (the budget ran out)")
                continue
            if r.get("status") != "ok" or math.isinf(cost(r, settings)):
                state.decide(c, stage, "dropped", f"{r.get('status')}: {r.get('reason') or 'no objective value'}")
                continue
            last[c.cid] = cost(r, settings)
            measured.append(c)
        measured.sort(key=lambda c: last[c.cid])
        if len(measured) <= 2 or rungs_left <= 1:
            for i, c in enumerate(measured):
                r = row_of(state, stage, c) or {}
                state.decide(c, stage, "final", f"rank {i + 1} of {len(measured)} in the last rung",
                             rank=i + 1, value=objective_value(r, settings), ci_low_ms=_num(r.get("ci_low_ms")),
                             ci_high_ms=_num(r.get("ci_high_ms")))
            return measured
        keep_n = math.ceil(len(measured) / 2)
        protect = protected(measured, last)
        cutoff = last[measured[keep_n - 1].cid]
        nxt = []
        for i, c in enumerate(measured):
            r = row_of(state, stage, c) or {}
            nums = {"rank": i + 1, "value": objective_value(r, settings), "ci_low_ms": _num(r.get("ci_low_ms")),
                    "ci_high_ms": _num(r.get("ci_high_ms"))}
            if i < keep_n:
                state.decide(c, stage, "kept", f"rank {i + 1} of {len(measured)}: in the better half", **nums)
                nxt.append(c)
            elif c.cid in protect:
                state.decide(c, stage, "kept", f"rank {i + 1} of {len(measured)}: kept as a reference (its target's "
                             + ("default fp32)" if c.role == "fp32-default" else "best int8)"), **nums)
                nxt.append(c)
            else:
                state.decide(c, stage, "dropped", f"rank {i + 1} of {len(measured)}: outside the better half "
                             f"({_fmt_obj(objective_value(r, settings), settings)} vs the cut-off "
                             f"{_fmt_obj(_inv(cutoff, settings), settings)})", **nums)
        alive = nxt
        rungs_left -= 1
        k += 1
    return sorted(alive, key=lambda c: last.get(c.cid, math.inf))


def extra_rung(state: State, runner: Runner, settings: TuneSettings, race: list[Candidate], seconds: float | None,
               why: str, *, keep: list[Candidate], must: list[Candidate] | None = None) -> list[Candidate]:
    """One more rung for ``race`` after the halving (the fallback sets beside every candidate still in it, or the
    time left spent on the last ones): every candidate measured again, the same ``seconds`` each, and ranked by it.
    A rung the budget cuts short ranks nothing fairly: ``keep`` (the ranking so far) stands then, plus what ran of
    ``must``."""
    rungs = [s for s in state.stages if str(s.get("stage", "")).startswith("rung") and "seconds" in s]
    k = max((int(s["stage"][4:]) for s in rungs), default=-1) + 1
    prev_seconds = max(rungs, key=lambda s: int(s["stage"][4:]))["seconds"] if rungs else MIN_RUNG_S
    rung = f"rung{k}"
    done = next((s for s in state.stages if s.get("stage") == rung), None)
    t = done["seconds"] if done is not None else (seconds or prev_seconds)
    if done is None:
        state.stages.append({"stage": rung, "seconds": t, "planned_overhead_s": overhead(state),
                             "candidates": len(race), "why": why})
    cells = [cell_of(c, replace(c.spec, measure=rung_measure(settings, c.spec, t)), rung) for c in race]

    def limit(cell: TuneCell) -> float | None:
        left = settings.budget_s - state.elapsed() - ab_reserve(state, settings) / 2
        return None if left < overhead(state) + t else (overhead(state) + t) * 4

    runner.run(cells, limit_s=limit)
    measured = [c for c in race if (row_of(state, rung, c) or {}).get("status") == "ok"
                and math.isfinite(cost(row_of(state, rung, c), settings))]
    if len(measured) < len(race):
        for c in race:
            if c not in measured:
                state.decide(c, rung, "not timed", f"the {why} rung did not measure it (budget or failure)")
        if must is None or not any(c in measured for c in must):
            return keep
    measured.sort(key=lambda c: cost(row_of(state, rung, c), settings))
    for i, c in enumerate(measured):
        r = row_of(state, rung, c) or {}
        state.decide(c, rung, "final", f"rank {i + 1} of {len(measured)} in the {why} rung (every candidate still "
                     "in the race measured again)", rank=i + 1, value=objective_value(r, settings),
                     ci_low_ms=_num(r.get("ci_low_ms")), ci_high_ms=_num(r.get("ci_high_ms")))
    return measured + [c for c in keep if c not in measured]


def spend_the_rest(state: State, runner: Runner, settings: TuneSettings, ranked: list[Candidate]) -> list[Candidate]:
    """Time left beyond the A/B's share after the halving (and the fallback stage): one more, longer rung for the
    best few (at most four), so that the winner is chosen on the longest measurement the budget allows."""
    race = ranked[:4]
    if len(race) < 2:
        return ranked
    o = overhead(state)
    left = settings.budget_s - state.elapsed() - ab_reserve(state, settings)
    t = min(settings.max_rung_s, left / len(race) - o)
    if t < 2 * MIN_RUNG_S:
        return ranked
    return extra_rung(state, runner, settings, race, t, "time left", keep=ranked)


def _inv(c: float, settings: TuneSettings) -> float:
    return c if settings.lower_is_better else (1.0 / c if c else math.nan)


def _fmt_obj(v: float, settings: TuneSettings) -> str:
    unit = {"latency": "ms p50", "p99": "ms p99", "throughput": "items/s", "server": "QPS"}[settings.objective]
    return "n/a" if math.isnan(v) else f"{v:.3g} {unit}"


def final_row(state: State, c: Candidate) -> tuple[str, dict] | None:
    """The latest rung row of a candidate (else its check row)."""
    best = None
    for key, r in state.rows.items():
        stage, _, cid = key.partition(":")
        if cid == c.cid and r.get("status") == "ok" and stage.startswith("rung"):
            if best is None or int(stage[4:]) > int(best[0][4:]):
                best = (stage, r)
    if best is None:
        r = row_of(state, "check", c)
        return ("check", r) if r is not None and r.get("status") == "ok" else None
    return best


# ------------------------------------------------------------------------------------------------ the A/B

def outcome_word(outcome: str) -> str:
    """The gate's decision for B (the tuned variant) against A, as tune says it: faster / tie / slower /
    inconclusive (a tie is never a win)."""
    from deploykit.gate.decision import IMPROVEMENT, INCONCLUSIVE, PASS, REGRESSION

    return {IMPROVEMENT: "faster", PASS: "tie", REGRESSION: "slower", INCONCLUSIVE: "inconclusive"}[outcome]


def ab(a: Candidate, b: Candidate, settings: TuneSettings, budget_s: float, say: Say) -> dict:
    """B against A, interleaved in ABBA rounds in this process (both loaded at once, each on its own target with
    its own options), decided by the gate's anytime-valid sign confidence sequence."""
    from deploykit.bench.interleave import block_config, load_side, log_ratios, run_interleaved, summarize_side
    from deploykit.bench.pipeline import prepare_model
    from deploykit.gate.decision import DEFAULT_TOLERANCES, INCONCLUSIVE, Evidence, decide_one

    metric = settings.ab_metric
    tol = settings.ab_tolerance or DEFAULT_TOLERANCES[metric]
    models_dir = Path(settings.models_dir) if settings.models_dir else None
    level = 0.95
    t0 = time.monotonic()

    def load(c: Candidate, label: str):
        s = c.spec
        cls, _rt, model = prepare_model(s.model, s.target, s.runtime_options(), batch=s.batch,
                                        resolution=s.resolution, export=s.export_config(models_dir), say=None,
                                        int8=s.quantize, preprocess=dict(s.preprocess) or None)
        return load_side(label, model, cls, s.runtime_options(), seed=settings.seed), model

    out: dict[str, Any] = {"a": a.cid, "a_label": a.label(), "b": b.cid, "b_label": b.label(), "metric": metric,
                           "tolerance": tol}
    if a.cid == b.cid:  # one run spec on both sides: the same artifact, target and options -- nothing to measure
        out.update(same_artifact=True, outcome="PASS", verdict="tie", rounds=0, wall_s=0.0,
                   reason="the same run (artifact, target and options) on both sides: a tie by construction, "
                          "not measured")
        say(f"A/B {b.label()} vs itself: tie (the same run)")
        return out
    try:
        side_a, ma = load(a, "A")
        try:
            side_b, mb = load(b, "B")
            try:
                out["same_artifact"] = bool(ma.sha256 == mb.sha256 and a.spec.target == b.spec.target
                                            and a.spec.runtime_options() == b.spec.runtime_options())

                def enough(rounds) -> bool:
                    d = decide_one(Evidence(tuple(log_ratios(rounds, metric)), tol), level)
                    return d.outcome != INCONCLUSIVE

                run = run_interleaved(side_a.side, side_b.side, block_config(**AB_BLOCK), min_rounds=AB_ROUNDS,
                                      max_rounds=200, time_budget_s=max(2.0, budget_s), enough=enough)
            finally:
                side_b.close()
        finally:
            side_a.close()
    except DeployKitError as exc:
        out.update(outcome="error", verdict="error", reason=exc.one_line(), wall_s=time.monotonic() - t0)
        return out
    d = decide_one(Evidence(tuple(log_ratios(run.rounds, metric)), tol), level)
    out.update(outcome=d.outcome, verdict=outcome_word(d.outcome), reason=d.reason, decision=d.to_json(),
               rounds=len(run.rounds), stop=run.stop_reason, a_stats=summarize_side(run.rounds, "a"),
               b_stats=summarize_side(run.rounds, "b"), wall_s=time.monotonic() - t0)
    say(f"A/B {b.label()} vs {a.label()}: {out['verdict']} ({d.reason})")
    return out


# ------------------------------------------------------------------------------------------ the answer

def pareto(points: list[dict], keys: tuple[str, ...]) -> list[str]:
    """The ids of the points no other point beats on every key (lower is better for each; NaN counts as worst)."""
    def val(p, k):
        v = p.get(k)
        return math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v

    front = []
    for p in points:
        dominated = any(all(val(q, k) <= val(p, k) for k in keys) and any(val(q, k) < val(p, k) for k in keys)
                        for q in points if q is not p)
        if not dominated:
            front.append(p["id"])
    return front


def summary_points(state: State, settings: TuneSettings) -> list[dict]:
    """One point per candidate that was timed: its latest objective with CI, accuracy drop, memory."""
    pts = []
    for c in state.candidates:
        fr = final_row(state, c)
        if fr is None:
            continue
        stage, r = fr
        chk = row_of(state, "check", c) or row_of(state, "fbcheck", c) or {}
        drop = accuracy_drop(state, c, chk)[:3] if settings.eval_data else (math.nan,) * 3
        pts.append({"id": c.cid, "label": c.label(), "role": c.role, "stage": stage, **c.choices(),
                    "objective": objective_value(r, settings), "cost": cost(r, settings),
                    "p50_ms": _num(r.get("p50_ms")), "ci_low_ms": _num(r.get("ci_low_ms")),
                    "ci_high_ms": _num(r.get("ci_high_ms")), "p99_ms": _num(r.get("p99_ms")),
                    "items_per_s": _num(r.get("items_per_s")), "iterations": r.get("iterations"),
                    "drop_points": drop[0], "drop_ci": [drop[1], drop[2]],
                    "fidelity": chk.get("fidelity"), "rss_peak_mb": _num(chk.get("rss_peak_mb")),
                    "report": r.get("report")})
    return pts


@dataclass
class TuneResult:
    state: State
    winner: Candidate | None
    runner_up: Candidate | None
    reason: str  # why there is no winner (empty when there is one)
    wall_s: float
    budget_s: float
    out: Path


def run_tune(base: RunSpec, space: SpaceSettings, settings: TuneSettings, out: Path, *, resume: bool = False,
             say: Say | None = None, candidates: list[Candidate] | None = None,
             left_out: list[Candidate] | None = None,
             extra_stage: Callable[[State, Runner, list[Candidate]], list[Candidate]] | None = None) -> TuneResult:
    """The whole search into ``out`` (see the module docstring)."""
    from deploykit.core.atomic import ensure_dir

    say = say or (lambda m: None)
    cands = candidates if candidates is not None else generate(base, space)
    if not cands:
        raise UsageError("no candidate to tune: no target given here runs this model's precisions")
    prev = load_previous(out)
    if prev is not None and not resume:
        raise UsageError(f"{out} already holds a tune ({TUNE_FILE}): pass --resume to continue it, or choose another "
                         "-o folder")
    if resume and prev is not None and prev.get("settings", {}).get("objective") != settings.objective:
        raise UsageError(f"--resume with another objective than {out}'s ({prev['settings'].get('objective')}): "
                         "choose another -o folder")
    ensure_dir(out)
    state = State(out=out, candidates=list(cands))
    if prev is not None:
        state.rows = {k: v for k, v in (prev.get("rows") or {}).items() if isinstance(v, dict)}
        state.runs = [r for r in prev.get("runs") or [] if isinstance(r, dict)]
        state.ab = [a for a in prev.get("ab") or [] if isinstance(a, dict)]
        # rungs keep the times they were planned with
        state.stages = [s for s in prev.get("stages") or [] if isinstance(s, dict) and str(s.get("stage", ""))
                        .startswith("rung")]
        for s in state.stages:
            s.pop("wall_s", None)
        known = {c.cid for c in state.candidates}
        for cj in prev.get("candidates") or []:  # fallback candidates a previous run added
            if isinstance(cj, dict) and cj.get("id") not in known and cj.get("role") == "fallback":
                try:
                    spec = RunSpec.from_dict(cj["spec"])
                except DeployKitError:
                    continue
                state.candidates.append(Candidate(cj["id"], spec, role="fallback",
                                                  exclude=tuple(spec.quantize.exclude if spec.quantize else ())))
    state.runs.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed": prev is not None,
                       "budget_s": settings.budget_s})
    runner = Runner(state, settings, base, space, say)
    for c in left_out or []:
        state.decide(c, "sample", "not sampled", "the space is bigger than --max-candidates: a seeded sample of the "
                     "non-reference candidates is searched")
    save(state, settings, base, space)
    say(f"tune: {len(state.candidates)} candidates, budget {settings.budget_s:.0f} s")
    survivors = check_stage(state, runner, settings, base)
    say(f"tune: {len(survivors)} of {len(state.candidates)} candidates passed their checks")
    ranked = halving(state, runner, settings, survivors) if survivors else []
    if extra_stage is not None and ranked:
        ranked = extra_stage(state, runner, ranked)
    if ranked:
        ranked = spend_the_rest(state, runner, settings, ranked)
    result = finish(state, settings, ranked, say)
    save(state, settings, base, space)
    return result


def _ab_once(state: State, settings: TuneSettings, what: str, a: Candidate, b: Candidate, pending: int,
             say: Say) -> dict:
    """B against A once (a resumed tune reuses the verdict it has; the pair measured the other way round is
    reused as it is, A and B named), within the share of the budget left for the ``pending`` A/Bs."""
    done = next((x for x in state.ab if {x["a"], x["b"]} == {a.cid, b.cid} and x.get("outcome") not in
                 ("error", "not run")), None)
    if done is not None:
        if done["a"] == a.cid:
            if done.get("what") == what:
                return done
            res = {**done, "what": what, "reason": f"{done.get('reason')} (the rounds of '{done.get('what')}')"}
            state.ab.append(res)
            return res
        res = flipped(done, what)  # measured the other way round: the same rounds, read from B's side
        state.ab.append(res)
        return res
    left = settings.budget_s - state.elapsed()
    least = ab_cost(state)
    if left < least and a.cid != b.cid:  # an A/B that cannot fit is not started (one run against itself costs nothing)
        res = {"what": what, "a": a.cid, "a_label": a.label(), "b": b.cid, "b_label": b.label(),
               "outcome": "not run", "verdict": "not run",
               "reason": f"the budget left ({max(left, 0):.0f} s) is below an A/B (~{least:.0f} s)"}
    else:
        # the loads come on top of the rounds' budget
        res = ab(a, b, settings, max(2.0, left / pending - 2 * AB_LOAD_S), say)
        res["what"] = what
    state.ab.append(res)
    return res


FLIP = {"faster": "slower", "slower": "faster"}


def flipped(rec: dict, what: str) -> dict:
    """An A/B record read from the other side (A and B swapped): faster <-> slower, the change inverted."""
    d = dict(rec.get("decision") or {})
    if d:
        inv = [(1.0 / (1.0 + x) - 1.0) if isinstance(x, (int, float)) and x > -1 else None
               for x in (d.get("estimate"), *(d.get("ci") or [None, None]))]
        d.update(estimate=inv[0], ci=[inv[2], inv[1]])
    return {**{k: v for k, v in rec.items() if k not in ("decision", "a_stats", "b_stats")},
            "what": what, "a": rec["b"], "a_label": rec["b_label"], "b": rec["a"], "b_label": rec["a_label"],
            "a_stats": rec.get("b_stats"), "b_stats": rec.get("a_stats"), "decision": d or None,
            "verdict": FLIP.get(rec.get("verdict"), rec.get("verdict")),
            "outcome": {"IMPROVEMENT": "REGRESSION", "REGRESSION": "IMPROVEMENT"}.get(rec.get("outcome"),
                                                                                     rec.get("outcome")),
            "reason": _flipped_reason(rec, d)}


def _flipped_reason(rec: dict, d: dict) -> str:
    src = f"the rounds of '{rec.get('what')}' read from this side"
    est, ci = d.get("estimate"), d.get("ci") or [None, None]
    if not isinstance(est, (int, float)) or None in ci:
        return f"{src}: {rec.get('reason')}"
    word = FLIP.get(rec.get("verdict"), rec.get("verdict"))
    how = f"{'slower' if est > 0 else 'faster'} by {abs(est):.1%} (interval {ci[0]:+.1%} to {ci[1]:+.1%})"
    return f"{how}; {src}" if word in ("faster", "slower") else f"{word}: {how}; {src}"


def per_target(state: State, ranked: list[Candidate]) -> dict:
    """Per target: its default fp32, its best int8 (the tuned int8) and whether int8 pays there -- by the A/B
    against the default fp32 where one ran, else by the last rung -- and what the target's answer is."""
    out = {}
    for target in dict.fromkeys(c.target for c in state.candidates):
        fp32 = next((c for c in state.candidates if c.role == "fp32-default" and c.target == target), None)
        int8 = next((c for c in ranked if c.spec.int8 and c.target == target), None)
        rec = next((a for a in state.ab if fp32 is not None and int8 is not None and a.get("a") == fp32.cid
                    and a.get("b") == int8.cid), None)
        verdict = rec.get("verdict") if rec else None
        pays = None if int8 is None else (verdict == "faster" if verdict in ("faster", "tie", "slower") else None)
        answer = int8 if pays else fp32
        out[target] = {"fp32": fp32.cid if fp32 else None, "tuned_int8": int8.cid if int8 else None,
                       "int8_vs_fp32": verdict, "int8_pays": pays,
                       "answer": answer.cid if answer else None,
                       "why": ("int8 faster than fp32 in the A/B" if pays else
                               "int8 not faster than fp32 in the A/B: the answer on this runtime is its fp32"
                               if pays is False else "no A/B decided it: the answer on this runtime is its fp32")}
    return out


def meets(state: State, settings: TuneSettings, c: Candidate) -> bool:
    return any(d["candidate"] == c.cid and d["stage"] == "check" and d["decision"] == "kept" for d in state.decisions)


def finish(state: State, settings: TuneSettings, ranked: list[Candidate], say: Say) -> TuneResult:
    """Winner, runner-up, the A/B proofs, the Pareto front, the wall time against the budget."""
    winner = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None
    points = summary_points(state, settings)
    keys = ("cost", "drop_points", "rss_peak_mb") if settings.eval_data else ("cost", "rss_peak_mb")
    front = pareto(points, keys)
    for p in points:
        p["on_front"] = p["id"] in front
    reason = ""
    if winner is None:
        failed = [d for d in state.decisions if d["stage"] == "check" and d["decision"] != "kept"]
        reason = (f"no candidate met the constraints ({len(failed)} of {len(state.candidates)} dropped at their check"
                  + (f"; first: {failed[0]['label']}: {failed[0]['reason']}" if failed else "") + ")")
    state.ab = [a for a in state.ab if a.get("a") and a.get("b")]
    if winner is not None and runner_up is not None:
        res = _ab_once(state, settings, "winner vs runner-up", runner_up, winner, 3, say)
        if res.get("verdict") == "slower":  # the interleaved A/B outweighs a short rung: the runner-up wins
            state.decide(winner, "ab", "replaced", f"slower than the runner-up in the A/B ({res.get('reason')})")
            state.decide(runner_up, "ab", "chosen", "faster than the rung's winner in the A/B")
            winner, runner_up = runner_up, winner
            ranked = [winner, runner_up] + [c for c in ranked if c not in (winner, runner_up)]
    pairs: list[tuple[str, Candidate, Candidate]] = []

    def vs_own_fp32(w: Candidate | None) -> None:
        fp32 = next((c for c in state.candidates if c.role == "fp32-default" and c.target == w.target), None) \
            if w is not None else None
        if fp32 is not None:
            pairs.append(("winner vs default fp32 (same target)", fp32, w))

    vs_own_fp32(winner)
    if winner is not None:
        # the tuned (best) int8 of every target against that target's fp32
        for target in dict.fromkeys(c.target for c in ranked):
            best = next((c for c in ranked if c.spec.int8 and c.target == target), None)
            ref = next((f for f in state.candidates if f.role == "fp32-default" and f.target == target), None)
            if best is not None and ref is not None and best is not winner:
                pairs.append((f"tuned int8 on {target} vs its default fp32", ref, best))
    demoted: list[Candidate] = []
    i = 0
    while i < len(pairs):
        what, a, b = pairs[i]
        res = _ab_once(state, settings, what, a, b, len(pairs) - i, say)
        i += 1
        if what.startswith("winner vs default fp32") and res.get("verdict") == "slower" and winner is b:
            # never an answer slower than the default fp32 on its own runtime: the next best of the ranking takes
            # its place (that fp32, or a faster candidate on another target), and is proven against its own fp32;
            # each turn demotes one candidate and the fp32 is never demoted, so it ends (A/Bs the budget cannot hold
            # are not run, and "not run" demotes nothing)
            demoted.append(b)
            rest = [c for c in ranked if c not in demoted]
            if a not in rest:  # the fp32 left the race in a rung: what ranked above it there goes first
                rest.append(a)
            winner = rest[0]
            runner_up = rest[1] if len(rest) > 1 else None
            ranked = rest + demoted
            state.decide(b, "ab", "replaced", f"slower than the default fp32 on {b.target} in the A/B "
                         f"({res.get('reason')})")
            state.decide(winner, "ab", "chosen", f"the next best of the ranking once {b.label()} was replaced"
                         + (" (the default fp32 it was slower than)" if winner is a else ""))
            if winner is not a:
                vs_own_fp32(winner)
    state.result["per_target"] = per_target(state, ranked)
    wall = state.elapsed()
    total = wall + sum(float(r.get("wall_s") or 0) for r in state.runs[:-1])
    state.runs[-1]["wall_s"] = wall
    state.result = {
        **{k: v for k, v in state.result.items() if k in ("per_target", "explain", "reserve_s")},
        "objective": settings.objective,
        "winner": winner.to_json() if winner else None,
        "runner_up": runner_up.to_json() if runner_up else None,
        "ranked": [c.cid for c in ranked],
        "no_winner_reason": reason,
        "points": points, "front": front,
        "wall_s": wall, "wall_s_all_runs": total, "budget_s": settings.budget_s,
        "within_budget": wall <= settings.budget_s,
    }
    return TuneResult(state=state, winner=winner, runner_up=runner_up, reason=reason, wall_s=wall,
                      budget_s=settings.budget_s, out=state.out)
