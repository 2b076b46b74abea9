"""The latency gate's decision BEFORE issue 24 (kept verbatim for benchmarks/gate_noise_lab.py: before vs after).

It re-tests at a fixed level after every added block (peeking). Not used by deploykit itself.

Input of one check (``Evidence``):
  * ``--against`` mode: for each ABBA round, d_i = log(cost of candidate block / cost of baseline block), where
    the two blocks ran back to back (bench/interleave.py). Rounds are exchangeable units: whatever the
    machine did during a round hits both of its blocks.
  * ``--baseline`` mode: c_i = log(candidate / reference workload) per round measured now, and b_j the same
    log-ratio per round stored in the baseline report. The effect is median(c) - median(b): the change of the
    model's latency *relative to the fixed reference workload*, which cancels machine speed.

Estimate: the median of the per-round log-ratios. On a shared machine the timings are bimodal -- a block that
overlaps another job's burst runs 2-3x slower -- so a few rounds carry log-ratios of +-1 while the rest sit
within a few percent of each other; the median ignores such rounds (up to half of them), while a real slowdown,
which moves every round, moves it fully. (Simulated on 12-40 rounds with 10-20% such rounds: the mean caught a
true 10% slowdown in 22-58% of runs, a 20% trimmed mean in 27-99%, the median in 51-100%, none of them raising
false alarms.) Uncertainty: the bootstrap over rounds (bench/stats.bootstrap_distribution; in baseline mode the
two sides are resampled independently and the replicates subtracted), as Hesterberg's *expanded percentile
interval* (Hesterberg 2015, "What teachers should know about the bootstrap", The American Statistician 69(4)):
a plain percentile interval is too narrow with the 6-60 blocks a CI job can afford, so the replicates' spread is
scaled by sqrt(n/(n-1)) and the interval is taken at the tail area that matches Student's t with n-1 degrees
of freedom (Welch-Satterthwaite from the two sides' bootstrap variances in baseline mode):
alpha' = 2 (1 - Phi(t_df(1 - alpha/2))). Simulated A/A coverage of the "slower" bound stays at or below the
nominal 2.5% from 6 rounds up, with or without burst rounds (tests/unit/test_gate_decision.py).
Effects are shown as fractions: exp(x) - 1, so +0.10 = 10% slower.

Outcomes, for tolerance t (a fraction; compared as log(1 + t)) and the interval [lo, hi] at the check's level:
  REGRESSION    lo > 0 and estimate > t    (slower, surely, and by more than the tolerance)
  IMPROVEMENT   hi < 0 and estimate < -t   (faster, surely, by more than the tolerance: it passes)
  PASS          hi < t and MDE <= t        (a slowdown as large as the tolerance is ruled out, and the run
                                            could have seen one)
  INCONCLUSIVE  anything else: the interval straddles the tolerance, or the run is too noisy -- its minimum
                detectable effect (MDE) exceeds the tolerance -- so "no regression seen" would not mean much.
MDE = (t_df(1 - a/2) + t_df(power)) x SE, with SE the standard deviation of the (scaled) bootstrap replicates,
a = 1 - level and power 0.8: the smallest true slowdown this run would flag with 80% probability.

Baseline drift (``Evidence.drift``, baseline mode only): the bootstrap sees the rounds of each session, not how
far the model's cost relative to the reference workload moves *between* sessions (other load on a shared
machine, SMT siblings, thermal state). On the 2-core development VM, A/A gates against a baseline stored minutes
earlier were off by -15% to +15% with intervals that excluded zero. So the interval is widened by +-log(1 + drift)
and the MDE grows by it: REGRESSION needs the slowdown to exceed the drift beyond noise, and PASS needs
tolerance > drift + noise -- otherwise the check is INCONCLUSIVE, saying why. Default 10% (``--baseline-drift``);
on a dedicated, quiet runner with the baseline from the same runner type, 2-3% is realistic.

Multiple checks (``decide_all``), family-wise error rate ``alpha`` over m checks:
  bonferroni (default)  every interval at level 1 - alpha/m: simultaneous intervals, so both the REGRESSION and
                        the PASS claims of all checks hold together with probability >= 1 - alpha.
  holm                  Holm's step-down on the "slower at all" tests: checks sorted by their bootstrap p-value
                        p = 2 x share of replicates <= 0; the k-th (0-based) is tested at level 1 - alpha/(m - k)
                        while every earlier one was significantly slower; from the first that is not, all
                        remaining checks keep that level and may not be declared REGRESSION. Controls the
                        family-wise rate of false REGRESSION claims like Bonferroni, with more power; PASS
                        claims of later checks are made at the (wider-alpha) Holm levels.
  none                  every interval at 1 - alpha.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Sequence

import numpy as np

from deploykit.bench.stats import bootstrap_distribution, percentile_interval
from deploykit.gate.config import GATE_CORRECTIONS
from deploykit.core.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, UsageError

PASS = "PASS"
REGRESSION = "REGRESSION"
INCONCLUSIVE = "INCONCLUSIVE"
IMPROVEMENT = "IMPROVEMENT"
OUTCOMES = (PASS, IMPROVEMENT, INCONCLUSIVE, REGRESSION)

CORRECTIONS = GATE_CORRECTIONS
DEFAULT_TOLERANCES = {"p50": 0.05, "p90": 0.10, "throughput": 0.05}
MIN_ROUNDS = 6  # fewer rounds than this give no usable bootstrap interval
POWER = 0.8
N_BOOT = 10_000  # replicates: Bonferroni/expanded tails reach the 0.05th percentile, which needs thousands


@dataclass(frozen=True)
class Evidence:
    """The numbers one check is decided on (log-ratios, natural log; > 0 = candidate slower)."""

    log_ratios: tuple[float, ...]
    tolerance: float
    baseline_log_ratios: tuple[float, ...] | None = None  # baseline mode: the stored report's rounds
    drift: float = 0.0  # baseline mode: allowance (fraction) for the relative cost drifting between two sessions

    def __post_init__(self):
        object.__setattr__(self, "log_ratios", tuple(float(x) for x in self.log_ratios))
        if self.baseline_log_ratios is not None:
            object.__setattr__(self, "baseline_log_ratios", tuple(float(x) for x in self.baseline_log_ratios))
        if not self.tolerance > 0:
            raise UsageError(f"tolerance must be positive, got {self.tolerance}")
        if not 0 <= self.drift < 1:
            raise UsageError(f"baseline drift must be in [0, 1), got {self.drift}")
        bad = [x for x in self.log_ratios + (self.baseline_log_ratios or ()) if not math.isfinite(x)]
        if bad:
            raise ValueError(f"non-finite log-ratio {bad[0]}")

    @property
    def n(self) -> int:
        return len(self.log_ratios)


@dataclass(frozen=True)
class Decision:
    outcome: str
    estimate: float  # fractional change of the candidate: +0.10 = 10% slower
    ci: tuple[float, float]  # fractional change at ``level``
    level: float
    mde: float  # fractional minimum detectable slowdown at ``level`` and 80% power
    tolerance: float
    n: int
    n_baseline: int | None
    p_slower: float  # bootstrap p-value of "not slower" (2 x share of replicates <= 0, capped at 1)
    reason: str
    correction: str = "none"
    notes: tuple[str, ...] = field(default=())
    drift: float = 0.0  # the baseline-drift allowance the interval and MDE include (baseline mode)
    drift_bound: bool = False  # INCONCLUSIVE only because of the drift allowance (no slowdown seen otherwise)

    @property
    def too_noisy(self) -> bool:
        return self.mde > self.tolerance

    def fails(self, strict: bool = False) -> bool:
        return self.outcome == REGRESSION or (strict and self.outcome == INCONCLUSIVE)

    def to_json(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci)
        d["notes"] = list(self.notes)
        d["too_noisy"] = self.too_noisy
        return d


@dataclass(frozen=True)
class Effect:
    """The estimate (median log-ratio, or the difference of two), its bootstrap replicates (spread scaled by
    sqrt(n/(n-1)) per side) and the degrees of freedom of the small-sample t correction."""

    estimate: float
    replicates: np.ndarray
    df: float


def _side(x: np.ndarray, n_boot: int, seed: int) -> tuple[float, np.ndarray]:
    """(median, bootstrap replicates of the median with their spread scaled by sqrt(n/(n-1))) of one side."""
    est = float(np.median(x))
    reps = bootstrap_distribution(x, "median", n_boot=n_boot, seed=seed)
    n = x.size
    if n > 1:
        reps = est + (reps - est) * math.sqrt(n / (n - 1))
    return est, reps


def effect_replicates(ev: Evidence, *, n_boot: int = N_BOOT, seed: int = 0) -> Effect:
    """The effect of one check in log space, with its bootstrap replicates and degrees of freedom."""
    c = np.asarray(ev.log_ratios, dtype=np.float64)
    if c.size == 0:
        raise ValueError("no rounds")
    est, reps = _side(c, n_boot, seed)
    df = float(max(1, c.size - 1))
    if ev.baseline_log_ratios is not None:
        b = np.asarray(ev.baseline_log_ratios, dtype=np.float64)
        if b.size == 0:
            raise ValueError("no baseline rounds")
        est_b, reps_b = _side(b, n_boot, seed + 1)
        dc, db = float(np.var(reps)), float(np.var(reps_b))
        est -= est_b
        reps = reps - reps_b
        den = dc * dc / max(1, c.size - 1) + db * db / max(1, b.size - 1)
        df = float(max(1.0, (dc + db) ** 2 / den)) if den > 0 else float(max(1, min(c.size, b.size) - 1))
    return Effect(float(est), reps, df)


def t_quantile(q: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


def expanded_level(level: float, df: float) -> float:
    """The percentile-interval level whose normal tail matches Student's t with ``df`` degrees of freedom."""
    tq = t_quantile(1 - (1 - level) / 2, df)
    return 1 - 2 * (1 - NormalDist().cdf(tq))


def p_slower(reps: np.ndarray) -> float:
    """Two-sided-style bootstrap p-value of H0 "not slower": 2 x share of replicates <= 0, capped at 1."""
    return float(min(1.0, 2.0 * np.mean(np.asarray(reps) <= 0.0)))


def _frac(x: float) -> float:
    return math.expm1(x)


def decide_one(eff: Effect, ev: Evidence, level: float, *, correction: str = "none", may_regress: bool = True,
               power: float = POWER) -> Decision:
    """The outcome of one check from its effect (estimate and bootstrap replicates) at confidence ``level``."""
    est, reps = eff.estimate, eff.replicates
    tol = math.log1p(ev.tolerance)
    drift = math.log1p(ev.drift)
    lo, hi = percentile_interval(reps, expanded_level(level, eff.df))
    lo, hi = lo - drift, hi + drift  # a stored baseline: the relative cost may have moved by up to +-drift
    se = float(np.std(reps, ddof=1)) if len(reps) > 1 else 0.0
    mde = (t_quantile(1 - (1 - level) / 2, eff.df) + t_quantile(power, eff.df)) * se + drift
    n_b = len(ev.baseline_log_ratios) if ev.baseline_log_ratios is not None else None
    notes = []
    drift_bound = False
    t = f"{ev.tolerance:.1%}"
    if ev.n < MIN_ROUNDS or (n_b is not None and n_b < MIN_ROUNDS):
        outcome = INCONCLUSIVE
        reason = f"too few blocks for an interval (need at least {MIN_ROUNDS} on each side)"
    elif lo > 0 and est > tol and may_regress:
        outcome = REGRESSION
        reason = f"slower by {_frac(est):+.1%} (interval {_frac(lo):+.1%} to {_frac(hi):+.1%}), above the tolerance {t}"
    elif hi < 0 and est < -tol:
        outcome = IMPROVEMENT
        reason = f"faster by {-_frac(est):.1%} (interval {_frac(lo):+.1%} to {_frac(hi):+.1%})"
    elif hi < tol and mde <= tol:
        outcome = PASS
        reason = f"a slowdown of {t} or more is ruled out (upper bound {_frac(hi):+.1%})"
        if lo > 0:
            notes.append(f"slower by {_frac(est):+.1%}, significant but within the tolerance {t}")
    elif ev.drift > 0 and hi - drift < tol and mde - drift <= tol and not (lo + drift > 0 and est > tol):
        outcome, drift_bound = INCONCLUSIVE, True
        reason = (f"no slowdown of {t} seen, but a stored baseline cannot rule one out: the interval "
                  f"{_frac(lo):+.1%} to {_frac(hi):+.1%} includes the baseline-drift allowance of +-{ev.drift:.1%} "
                  "(--baseline-drift; measure --against the old artifact to decide)")
    else:
        outcome = INCONCLUSIVE
        if ev.drift >= ev.tolerance:
            reason = (f"no run against a stored baseline can rule out a {t} slowdown: the baseline-drift allowance "
                      f"+-{ev.drift:.1%} alone reaches the tolerance (interval {_frac(lo):+.1%} to {_frac(hi):+.1%}); "
                      "raise --tolerance above the drift, lower --baseline-drift, or measure --against the old "
                      "artifact")
        elif mde > tol:
            reason = (f"too noisy to detect a {t} change: the minimum detectable effect of this run is "
                      f"{_frac(mde):.1%} (interval {_frac(lo):+.1%} to {_frac(hi):+.1%}"
                      + (f", of which +-{ev.drift:.1%} is the baseline-drift allowance" if ev.drift else "")
                      + "); add blocks or quiet the machine")
        elif lo > 0 and est > tol and not may_regress:
            reason = (f"slower by {_frac(est):+.1%} (interval {_frac(lo):+.1%} to {_frac(hi):+.1%}) but not "
                      "significant after the Holm step-down")
        else:
            reason = (f"the interval {_frac(lo):+.1%} to {_frac(hi):+.1%} straddles the tolerance {t} "
                      f"(estimate {_frac(est):+.1%})")
    return Decision(outcome=outcome, estimate=_frac(est), ci=(_frac(lo), _frac(hi)), level=level, mde=_frac(mde),
                    tolerance=ev.tolerance, n=ev.n, n_baseline=n_b, p_slower=p_slower(reps), reason=reason,
                    correction=correction, notes=tuple(notes), drift=ev.drift,
                    drift_bound=drift_bound)


def baseline_floor(baseline_log_ratios: Sequence[float], *, drift: float, level: float, n_boot: int = N_BOOT,
                   seed: int = 0, power: float = POWER) -> float:
    """The smallest tolerance a gate against this stored baseline can PASS at, even with as many blocks today as
    it likes (today's side adding no noise): the baseline's own minimum detectable effect plus the drift
    allowance, as a fraction. A tolerance at or below it leaves the check INCONCLUSIVE unless it regresses."""
    b = np.asarray(baseline_log_ratios, dtype=np.float64)
    if b.size < 2:
        return math.inf
    _, reps = _side(b, n_boot, seed + 1)
    se = float(np.std(reps, ddof=1))
    df = float(b.size - 1)
    return _frac((t_quantile(1 - (1 - level) / 2, df) + t_quantile(power, df)) * se + math.log1p(drift))


def decide(ev: Evidence, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Decision:
    """One check on its own, at confidence ``level``."""
    return decide_one(effect_replicates(ev, n_boot=n_boot, seed=seed), ev, level)


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 0.5:
        raise UsageError(f"--alpha must be between 0 and 0.5, got {alpha}")


def adaptive_level(alpha: float, m: int, correction: str) -> float:
    """The level a check is tested at while its blocks are still being added: the strictest level the final
    correction can give it (Bonferroni's 1 - alpha/m for both bonferroni and holm)."""
    check_alpha(alpha)
    if correction not in CORRECTIONS:
        raise UsageError(f"unknown correction {correction!r} (choose from {', '.join(CORRECTIONS)})")
    return 1 - alpha / max(1, m) if correction != "none" else 1 - alpha


def decide_all(evidence: Sequence[Evidence], *, alpha: float = 0.05, correction: str = "bonferroni",
               n_boot: int = N_BOOT, seed: int = 0) -> list[Decision]:
    """Decisions for several checks with the family-wise error rate ``alpha`` kept by ``correction``."""
    check_alpha(alpha)
    if correction not in CORRECTIONS:
        raise UsageError(f"unknown correction {correction!r} (choose from {', '.join(CORRECTIONS)})")
    m = len(evidence)
    if m == 0:
        return []
    effects = [effect_replicates(ev, n_boot=n_boot, seed=seed) for ev in evidence]
    if correction == "none" or m == 1:
        return [decide_one(eff, ev, 1 - alpha, correction=correction) for eff, ev in zip(effects, evidence)]
    if correction == "bonferroni":
        return [decide_one(eff, ev, 1 - alpha / m, correction=correction) for eff, ev in zip(effects, evidence)]
    # Holm step-down on the "slower at all" hypotheses, in the interval form described in the module doc
    order = sorted(range(m), key=lambda i: (p_slower(effects[i].replicates), -effects[i].estimate))
    out: list[Decision | None] = [None] * m
    stopped_at = None
    for k, i in enumerate(order):
        eff = effects[i]
        a_k = alpha / (m - k) if stopped_at is None else alpha / (m - stopped_at)
        level = 1 - a_k
        if stopped_at is None:
            lo, _ = percentile_interval(eff.replicates, expanded_level(level, eff.df))
            lo -= math.log1p(evidence[i].drift)
            if not lo > 0:
                stopped_at = k
        out[i] = decide_one(eff, evidence[i], level, correction=correction, may_regress=stopped_at is None)
    return out  # type: ignore[return-value]


def exit_code(decisions: Sequence[Decision], strict: bool = False) -> int:
    """0 pass, 4 any regression, 5 any inconclusive with ``strict`` (a regression wins)."""
    if any(d.outcome == REGRESSION for d in decisions):
        return EXIT_REGRESSION
    if strict and any(d.outcome == INCONCLUSIVE for d in decisions):
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def parse_drift(value, where: str = "--baseline-drift") -> float:
    """The baseline-drift allowance as a fraction: 0, 0.1, "10%". Must be in [0, 1)."""
    from deploykit.core.errors import InputError

    if isinstance(value, str) and value.strip().rstrip("%").strip() in ("0", "0.0"):
        return 0.0
    if not isinstance(value, bool) and isinstance(value, (int, float)) and value == 0:
        return 0.0
    v = parse_tolerance(value, where)
    if v >= 1:
        raise InputError(f"{where}: must be below 100%, got {value!r}")
    return v


def parse_tolerance(value, where: str = "tolerance") -> float:
    """A tolerance as a fraction: 0.05, "5%", or "0.05". Must be in (0, 1]."""
    from deploykit.core.errors import InputError

    if isinstance(value, bool):
        raise InputError(f"{where}: expected a number or a percentage like '5%', got {value!r}")
    if isinstance(value, (int, float)):
        v = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            v = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise InputError(f"{where}: expected a number or a percentage like '5%', got {value!r}") from None
    else:
        raise InputError(f"{where}: expected a number or a percentage like '5%', got {value!r}")
    if not (0 < v <= 1) or not math.isfinite(v):
        raise InputError(f"{where}: must be above 0% and at most 100%, got {value!r}")
    return v
