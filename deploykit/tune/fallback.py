"""The fallback stage of ``deploykit tune``: for every target whose best int8 candidate is not faster than its
default fp32 after the halving, the per-layer profiles of the two (``deploykit.explain``) say which layers run
slower in int8 than in float; int8 candidates that leave those in float (then those plus the most
accuracy-sensitive layers, cheapest first: ``explain.fallback.fallback_candidates``) are built, checked like every
candidate, and timed in one more rung beside every candidate still in the race -- so the answer holds no tuned int8
slower than fp32 on its runtime unless no fallback set made it faster (then that target's answer is its fp32, and
the record says so)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Callable

from deploykit.core.errors import DeployKitError
from deploykit.tune.search import (MIN_RUNG_S, Candidate, Runner, State, TuneSettings, ab_reserve, cell_of,
                                   check_measure, cost, extra_rung, judge_checks, objective_value, overhead, row_of,
                                   _num)
from deploykit.tune.space import with_exclude

Say = Callable[[str], None]
MAX_SETS = 3  # exclude sets tried per target
EXPLAIN_ITERATIONS = 10


def last_rung(state: State) -> tuple[str, float] | None:
    rungs = [s for s in state.stages if str(s.get("stage", "")).startswith("rung") and "seconds" in s]
    if not rungs:
        return None
    s = max(rungs, key=lambda s: int(s["stage"][4:]))
    return s["stage"], float(s["seconds"])


def clearly_faster(state: State, settings: TuneSettings, a: Candidate, b: Candidate) -> bool:
    """Whether ``a`` beat ``b`` in their latest rungs with the intervals apart (latency objectives: the p50's
    bootstrap 95% intervals; the others: by more than 5%). Overlap is "not clearly": the fallback stage runs."""
    from deploykit.tune.search import final_row

    ra, rb = final_row(state, a), final_row(state, b)
    if ra is None or rb is None:
        return False
    if settings.objective == "latency":
        hi, lo = _num(ra[1].get("ci_high_ms")), _num(rb[1].get("ci_low_ms"))
        if math.isfinite(hi) and math.isfinite(lo):
            return hi < lo
    return cost(ra[1], settings) < 0.95 * cost(rb[1], settings)


def explain_cost(state: State, a: Candidate, b: Candidate) -> float:
    """Seconds the two per-layer profiles take at least: two loads and the profiled iterations of each (from
    their measured p50)."""
    p50 = [_num((row_of(state, "check", c) or {}).get("p50_ms")) / 1e3 for c in (a, b)]
    p50 = [p if math.isfinite(p) else 0.05 for p in p50]
    return 10.0 + sum(3 * EXPLAIN_ITERATIONS * p for p in p50)


def build_cost(state: State) -> float:
    """Seconds an int8 candidate's check took (median of those run: its build included)."""
    walls = sorted(_num(r.get("wall_s")) for k, r in state.rows.items() if k.startswith("check:")
                   and state.by_id(k.split(":", 1)[1]).spec.int8 and math.isfinite(_num(r.get("wall_s"))))
    return walls[len(walls) // 2] if walls else 30.0


def fallback_stage(settings: TuneSettings, say: Say):
    """The stage ``run_tune`` runs after the halving: ``(state, runner, ranked) -> ranked``."""

    def stage(state: State, runner: Runner, ranked: list[Candidate]) -> list[Candidate]:
        return run_fallback(state, runner, settings, ranked, say)

    return stage


def run_fallback(state: State, runner: Runner, settings: TuneSettings, ranked: list[Candidate],
                 say: Say) -> list[Candidate]:
    from deploykit.explain.diff import explain
    from deploykit.explain.fallback import fallback_candidates

    last = last_rung(state)
    if last is None:
        return ranked
    models_dir = Path(settings.models_dir) if settings.models_dir else None
    new: list[Candidate] = []
    rung_s: float | None = None
    for target in dict.fromkeys(c.target for c in ranked):
        fp32 = next((c for c in ranked if c.role == "fp32-default" and c.target == target), None)
        int8 = next((c for c in ranked if c.spec.int8 and c.target == target), None)
        if fp32 is None or int8 is None:
            continue
        numbers = {"int8_value": objective_value_of(state, settings, int8),
                   "fp32_value": objective_value_of(state, settings, fp32)}
        if clearly_faster(state, settings, int8, fp32):
            state.decide(int8, "fallback", "not needed", f"the best int8 on {target} is faster than its fp32 (their "
                         "95% intervals apart)", **numbers)
            continue
        q = int8.spec.quantize
        if q is None or q.quantizer != "ort":  # exclude sets are the ONNX Runtime quantizer's: its best int8 here
            alt = next((c for c in ranked if c.spec.int8 and c.target == target and c.spec.quantize is not None
                        and c.spec.quantize.quantizer == "ort"), None)
            if alt is None:
                state.decide(int8, "fallback", "not tried", "float fallback sets are built by the ONNX Runtime "
                             f"quantizer; this int8 is {q.quantizer if q else 'not quantized here'}'s and no ONNX "
                             "Runtime int8 is left in the race on this target", **numbers)
                continue
            state.decide(int8, "fallback", "base", f"float fallback sets are built by the ONNX Runtime quantizer: "
                         f"they start from {alt.label()} (this int8 is {q.quantizer if q else '?'}'s)", **numbers)
            int8 = alt
        left = settings.budget_s - state.elapsed() - ab_reserve(state, settings)
        o = overhead(state)
        n_sets, t_fb, fixed = 0, 0.0, 0.0
        for n in range(MAX_SETS, 0, -1):  # as many sets as fit, the cheapest (the layers slower in int8) first
            fixed = explain_cost(state, int8, fp32) + n * build_cost(state)
            t_fb = min(last[1], (left - fixed) / (len(ranked) + n) - o)
            if t_fb >= MIN_RUNG_S:
                n_sets = n
                break
        if not n_sets:
            state.decide(int8, "fallback", "not tried", f"slower than fp32 on {target}, but the budget left "
                         f"({max(left, 0):.0f} s) is below a fallback round (~{fixed:.0f} s of profiles and a build, "
                         f"then {len(ranked) + 1} timed cells of ~{o + MIN_RUNG_S:.0f} s)", **numbers)
            continue
        rung_s = t_fb if rung_s is None else min(rung_s, t_fb)
        say(f"tune: int8 on {target} is not faster than fp32: profiling both per layer (explain)")
        try:
            exp = explain(int8.spec, fp32.spec, iterations=EXPLAIN_ITERATIONS, models_dir=models_dir, progress=None)
            sens = None if (settings.max_drop is not None and left > 4 * fixed) else ()
            sets = fallback_candidates(int8.spec, fp32.spec, exp, sens, max_sets=n_sets, models_dir=models_dir)
        except DeployKitError as exc:
            state.decide(int8, "fallback", "not tried", f"the per-layer comparison failed: {exc.one_line()}",
                         **numbers)
            continue
        slower = list(exp.slower_in_int8())
        state.result.setdefault("explain", {})[target] = {
            "int8": int8.cid, "fp32": fp32.cid, "verdict": exp.verdict(), "slower_in_int8": slower,
            "buckets": exp.buckets, "delta_ms": exp.delta_ms, "top": exp.top(8)}
        if not sets:
            state.decide(int8, "fallback", "not tried", f"no layer of the int8 file on {target} runs slower than its "
                         f"float form ({exp.verdict()})", **numbers)
            continue
        for s in sets:
            c = with_exclude(int8, s)
            known = next((x for x in state.candidates if x.cid == c.cid), None)  # a resumed tune has it
            if known is None:
                state.candidates.append(c)
            if all(x.cid != c.cid for x in new):
                new.append(known or c)
        more = " ..." if len(slower) > 4 else ""
        state.decide(int8, "fallback", "sets", f"{len(sets)} float fallback sets from its per-layer profile "
                     f"({len(slower)} layers slower in int8: {', '.join(slower[:4])}{more})",
                     sets=[list(s) for s in sets], **numbers)
    if not new:
        return ranked
    # the new candidates' checks, then one rung for every candidate still in the race and the new survivors
    stage = "fbcheck"
    cells = [cell_of(c, replace(c.spec, measure=check_measure(settings, runner.base)), stage) for c in new]

    def check_limit(cell) -> float | None:
        left = settings.budget_s - state.elapsed() - ab_reserve(state, settings)
        return None if left < overhead(state) + last[1] else 600.0

    runner.run(cells, limit_s=check_limit)
    kept = judge_checks(state, settings, new, stage=stage)
    return extra_rung(state, runner, settings, ranked + kept, rung_s, "fallback", keep=ranked, must=kept)


def objective_value_of(state: State, settings: TuneSettings, c: Candidate) -> float | None:
    from deploykit.tune.search import final_row

    fr = final_row(state, c)
    v = objective_value(fr[1], settings) if fr is not None else math.nan
    return v if math.isfinite(v) else None
