"""The latency gate's decision: pure functions from per-round log-ratios to PASS / REGRESSION / INCONCLUSIVE.

Input of one check (``Evidence``):
  * ``--against`` mode: for each ABBA round, d_i = log(cost of candidate block / cost of baseline block), where
    the two blocks ran back to back (bench/interleave.py; a block's cost is the median, p90 or mean of its own
    samples). Whatever the machine did during a whole round hits both of its blocks; the alternating order
    (A B | B A | ...) turns slow drift into rounds of alternating sign.
  * ``--baseline`` mode: c_i = log(candidate / reference workload) per round measured now, and b_j the same
    log-ratio per round stored in the baseline report. The effect is median(c) - median(b): the change of the
    model's latency *relative to the fixed reference workload*, which cancels machine speed.

The gate may look as often as it likes. Blocks are added two rounds at a time from ``--min-blocks`` to
``--max-blocks`` and the check is decided at every look (gate/run.py), so the interval must hold at *all* looks
at once, not at one fixed number of rounds: re-testing a fixed-n interval after every added block ("peeking")
raised the false REGRESSION/IMPROVEMENT rate of A/A gates under bursty load to 10-40%
(benchmarks/gate_noise_lab.py keeps that decision in benchmarks/gate_decision_v1.py for the comparison).

Interval: an anytime-valid confidence sequence for the median round log-ratio m, built from signs only (the
sequential sign test of Howard & Ramdas, "Sequential estimation of quantiles with applications to A/B-testing and
best-arm identification", Bernoulli 2022; in the spirit of Lindon, Sanden & Shirikian, "Rapid Regression Detection
in Software Deployments through Sequential Testing", KDD 2022). For a value x, let k(x) = #{i <= n: d_i > x}. If
m <= x, each round lands above x with probability at most 1/2, and

    E_n(x) = 2^(n+1) * integral over p in [1/2, 1] of p^k (1-p)^(n-k) dp     (a uniform mixture over p >= 1/2)

is a nonnegative supermartingale with E_0 = 1 (each factor has expectation 2[p q + (1-p)(1-q)] <= 1 for q <= 1/2),
so by Ville's inequality P(E_n(x) >= 1/a for some n) <= a. "m > x" is claimed when E_n(x) >= 2/(1-level); the
mirror image bounds m from above. E depends on n and k only, so the sequence at round n is a pair of order
statistics, [d_(n-k*+1), d_(k*)] with k*(n, level) the smallest k whose E reaches 2/(1-level) -- cheap, and
exact for any distribution of the rounds (heavy tails, burst rounds of +-1: each counts as one sign, however
large). Below a few rounds no k reaches the threshold and the interval is unbounded (INCONCLUSIVE): with alpha
0.05 the first REGRESSION needs 10 rounds all slower; 3 metrics (Bonferroni) need 12.
Estimate: the median of the rounds' log-ratios (ignores up to half of the rounds, so bursts do not move it).

``--baseline`` mode: today's rounds get a confidence sequence at half the error rate, the stored rounds (a fixed
set) an exact binomial order-statistic interval for their median at the other half; the effect's interval is
[lo_c - hi_b, hi_c - lo_b] (a union bound), widened by the baseline drift below.

Effects are shown as fractions: exp(x) - 1, so +0.10 = 10% slower.

Outcomes, for tolerance t (a fraction; compared as log(1 + t)) and the interval [lo, hi] at the check's level:
  REGRESSION    lo > 0 and estimate > t    (slower, surely, and by more than the tolerance)
  IMPROVEMENT   hi < 0 and estimate < -t   (faster, surely, by more than the tolerance: it passes)
  PASS          hi < t and MDE <= t        (a slowdown as large as the tolerance is ruled out, and the run
                                            could have seen one)
  INCONCLUSIVE  anything else: the interval straddles the tolerance, or the run is too noisy -- its minimum
                detectable effect (MDE) exceeds the tolerance -- so "no regression seen" would not mean much.
Both REGRESSION and PASS (and IMPROVEMENT) are claims of the confidence sequence, so each is wrong with
probability at most 1 - level over the whole run, however many looks were taken.
MDE: the smallest true slowdown mu for which this run's sequence would claim "slower" (lo > 0) with 80%
probability, were the rounds spread as observed: lo > 0 needs k* of the n rounds above 0, which happens with
probability >= 0.8 when each round does with q = Beta(k*, n-k*+1).ppf(0.8); mu = -(the (1-q) quantile of the rounds'
deviations from their median). Infinite while n is too small for any claim.

Baseline drift (``Evidence.drift``, baseline mode only): the rounds show each session, not how far the model's
cost relative to the reference workload moves *between* sessions (other load on a shared machine, SMT siblings,
thermal state). On the 2-core development VM, A/A gates against a baseline stored minutes earlier were off by
-15% to +15% with intervals that excluded zero. So the interval is widened by +-log(1 + drift) and the MDE grows
by it: REGRESSION needs the slowdown to exceed the drift beyond noise, and PASS needs tolerance > drift + noise --
otherwise the check is INCONCLUSIVE, saying why. Default 10% (``--baseline-drift``); on a dedicated, quiet runner
with the baseline from the same runner type, 2-3% is realistic.

Multiple checks (``decide_all``), family-wise error rate ``alpha`` over m checks:
  bonferroni (default)  every sequence at level 1 - alpha/m: simultaneous, so both the REGRESSION and the PASS
                        claims of all checks hold together with probability >= 1 - alpha, at every look.
  holm                  Holm's step-down on the "slower at all" tests: checks sorted by their anytime p-value
                        p = min(1, 2 / E_n(0)); the k-th (0-based) is tested at level 1 - alpha/(m - k) while every
                        earlier one was significantly slower; from the first that is not, all remaining checks keep
                        that level and may not be declared REGRESSION. Controls the family-wise rate of false
                        REGRESSION claims like Bonferroni, with more power; PASS claims of later checks are made at
                        the (wider-alpha) Holm levels.
  none                  every sequence at 1 - alpha.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

from deploykit.gate.config import GATE_CORRECTIONS
from deploykit.core.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, UsageError

PASS = "PASS"
REGRESSION = "REGRESSION"
INCONCLUSIVE = "INCONCLUSIVE"
IMPROVEMENT = "IMPROVEMENT"
OUTCOMES = (PASS, IMPROVEMENT, INCONCLUSIVE, REGRESSION)

CORRECTIONS = GATE_CORRECTIONS
DEFAULT_TOLERANCES = {"p50": 0.05, "p90": 0.10, "throughput": 0.05}
MIN_ROUNDS = 6  # fewer rounds than this are never decided (and no baseline with fewer is accepted)
POWER = 0.8
N_BOOT = 10_000  # kept for the callers' signature; the decision no longer resamples
INTERVAL = "anytime-valid sign confidence sequence of the median round log-ratio"


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
    ci: tuple[float, float]  # fractional change at ``level`` (anytime-valid; +-inf while unbounded)
    level: float
    mde: float  # fractional minimum detectable slowdown at ``level`` and 80% power (inf while none is detectable)
    tolerance: float
    n: int
    n_baseline: int | None
    p_slower: float  # anytime p-value of "not slower": min(1, 2 / E_n(0))
    reason: str
    correction: str = "none"
    notes: tuple[str, ...] = field(default=())
    drift: float = 0.0  # the baseline-drift allowance the interval and MDE include (baseline mode)
    drift_bound: bool = False  # INCONCLUSIVE only because of the drift allowance (no slowdown seen otherwise)
    interval: str = INTERVAL

    @property
    def too_noisy(self) -> bool:
        return self.mde > self.tolerance

    def fails(self, strict: bool = False) -> bool:
        return self.outcome == REGRESSION or (strict and self.outcome == INCONCLUSIVE)

    def to_json(self) -> dict:
        d = asdict(self)
        d["ci"] = [_json_num(x) for x in self.ci]
        d["mde"] = _json_num(self.mde)
        d["notes"] = list(self.notes)
        d["too_noisy"] = self.too_noisy
        return d


def _json_num(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no infinity: an unbounded side is null


# ------------------------------------------------------------------------------------------ confidence sequence

@lru_cache(maxsize=65536)
def log_e_value(k: int, n: int) -> float:
    """log E_n: the mixture e-value of ``k`` of ``n`` rounds above a value whose true share above is <= 1/2."""
    if n == 0:
        return 0.0
    from scipy.special import betainc, betaln

    a, b = k + 1, n - k + 1
    upper = float(betainc(b, a, 0.5))  # the share of the Beta(a, b) integral above p = 1/2
    if upper <= 0.0:
        return -math.inf
    return (n + 1) * math.log(2.0) + float(betaln(a, b)) + math.log(upper)


@lru_cache(maxsize=65536)
def k_star(n: int, level: float) -> int:
    """The fewest of ``n`` rounds that must lie above a value to claim, at two-sided ``level``, that the median
    is above it (n + 1: no claim possible yet)."""
    threshold = math.log(2.0 / (1.0 - level))
    lo, hi = (n + 1) // 2, n + 1  # E is increasing in k; below half it is < 1
    while lo < hi:
        mid = (lo + hi) // 2
        if log_e_value(mid, n) >= threshold:
            hi = mid
        else:
            lo = mid + 1
    return lo


def sign_sequence(x: np.ndarray, level: float) -> tuple[float, float, int]:
    """(lower, upper, k*) of the confidence sequence for the median of ``x`` at round n = len(x)."""
    n = x.size
    k = k_star(n, level)
    if k > n:
        return -math.inf, math.inf, k
    s = np.sort(x)
    return float(s[n - k]), float(s[k - 1]), k


def fixed_median_interval(x: np.ndarray, level: float) -> tuple[float, float]:
    """The exact distribution-free interval of a fixed sample's median: order statistics (j, n + 1 - j) with
    P(Binomial(n, 1/2) <= j - 1) <= (1 - level) / 2."""
    from scipy.stats import binom

    n = x.size
    a = (1.0 - level) / 2
    j = int(np.searchsorted(binom.cdf(np.arange(n + 1), n, 0.5), a, side="right"))  # cdf(j-1) <= a < cdf(j)
    if j < 1:
        return -math.inf, math.inf
    s = np.sort(x)
    return float(s[j - 1]), float(s[n - j])


@lru_cache(maxsize=65536)
def _power_share(n: int, k: int, power: float) -> float:
    from scipy.stats import beta

    return float(beta.ppf(power, k, n - k + 1))  # P(Binomial(n, q) >= k) = I_q(k, n - k + 1)


def sequence_mde(x: np.ndarray, k: int, power: float = POWER) -> float:
    """Log-space MDE of a sign sequence needing ``k`` of the n rounds above zero (see the module doc)."""
    n = x.size
    if k > n or n == 0:
        return math.inf
    q = _power_share(n, k, power)
    dev = x - np.median(x)
    return max(0.0, -float(np.quantile(dev, 1.0 - q)))


def anytime_p_slower(x: np.ndarray) -> float:
    """Anytime p-value of "not slower" (median <= 0): min(1, 2 / E_n(0)), two-sided like the levels."""
    k = int(np.count_nonzero(x > 0.0))
    return float(min(1.0, 2.0 * math.exp(-log_e_value(k, x.size))))


@dataclass(frozen=True)
class Interval:
    """The effect of one check in log space at one level: estimate, bounds (drift included), MDE, p-value."""

    estimate: float
    lo: float
    hi: float
    mde: float
    p_slower: float


def interval(ev: Evidence, level: float, power: float = POWER) -> Interval:
    c = np.asarray(ev.log_ratios, dtype=np.float64)
    if c.size == 0:
        raise ValueError("no rounds")
    drift = math.log1p(ev.drift)
    est = float(np.median(c))
    if ev.baseline_log_ratios is None:
        lo, hi, k = sign_sequence(c, level)
        mde = sequence_mde(c, k, power)
        return Interval(est, lo, hi, mde, anytime_p_slower(c))
    b = np.asarray(ev.baseline_log_ratios, dtype=np.float64)
    if b.size == 0:
        raise ValueError("no baseline rounds")
    half = 1.0 - (1.0 - level) / 2  # today's sequence and the stored interval share the error rate
    lo_c, hi_c, k = sign_sequence(c, half)
    lo_b, hi_b = fixed_median_interval(b, half)
    est_b = float(np.median(b))
    mde = sequence_mde(c, k, power) + (hi_b - lo_b) / 2 + drift
    # p-value of "not slower": today's rounds against the stored median, the stored side's own uncertainty
    # counted by the union bound (conservative)
    p = min(1.0, anytime_p_slower(c - hi_b - drift) + (1.0 - half))
    return Interval(est - est_b, lo_c - hi_b - drift, hi_c - lo_b + drift, mde, p)


def _frac(x: float) -> float:
    return math.expm1(x) if x < 700 else math.inf


def decide_one(ev: Evidence, level: float, *, correction: str = "none", may_regress: bool = True,
               power: float = POWER) -> Decision:
    """The outcome of one check at confidence ``level`` (anytime-valid: any number of earlier looks is fine)."""
    iv = interval(ev, level, power)
    est, lo, hi, mde = iv.estimate, iv.lo, iv.hi, iv.mde
    tol = math.log1p(ev.tolerance)
    drift = math.log1p(ev.drift)
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
        elif not math.isfinite(hi - lo):
            reason = (f"too few blocks yet for an interval that holds at every look ({ev.n} rounds"
                      + (f", {n_b} stored" if n_b is not None else "") + "); add blocks (--max-blocks)")
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
                    tolerance=ev.tolerance, n=ev.n, n_baseline=n_b, p_slower=iv.p_slower, reason=reason,
                    correction=correction, notes=tuple(notes), drift=ev.drift, drift_bound=drift_bound)


def baseline_floor(baseline_log_ratios: Sequence[float], *, drift: float, level: float, n_boot: int = N_BOOT,
                   seed: int = 0, power: float = POWER) -> float:
    """The smallest tolerance a gate against this stored baseline can PASS at, even with as many blocks today as
    it likes (today's side adding no noise): how far the stored median's interval reaches below it (or its
    half-width, the MDE's share) plus the drift allowance, as a fraction. A tolerance at or below it leaves the
    check INCONCLUSIVE unless it regresses. (``n_boot`` and ``seed``: unused, kept for callers.)"""
    b = np.asarray(baseline_log_ratios, dtype=np.float64)
    if b.size < 2:
        return math.inf
    lo_b, hi_b = fixed_median_interval(b, 1.0 - (1.0 - level) / 2)
    med = float(np.median(b))
    return _frac(max(med - lo_b, (hi_b - lo_b) / 2) + math.log1p(drift))


def decide(ev: Evidence, *, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Decision:
    """One check on its own, at confidence ``level`` (``n_boot``, ``seed``: unused, kept for callers)."""
    return decide_one(ev, level)


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
    """Decisions for several checks with the family-wise error rate ``alpha`` kept by ``correction``
    (``n_boot``, ``seed``: unused, kept for callers)."""
    check_alpha(alpha)
    if correction not in CORRECTIONS:
        raise UsageError(f"unknown correction {correction!r} (choose from {', '.join(CORRECTIONS)})")
    m = len(evidence)
    if m == 0:
        return []
    if correction == "none" or m == 1:
        return [decide_one(ev, 1 - alpha, correction=correction) for ev in evidence]
    if correction == "bonferroni":
        return [decide_one(ev, 1 - alpha / m, correction=correction) for ev in evidence]
    # Holm step-down on the "slower at all" hypotheses, in the interval form described in the module doc
    first = [interval(ev, 1 - alpha / m) for ev in evidence]
    order = sorted(range(m), key=lambda i: (first[i].p_slower, -first[i].estimate))
    out: list[Decision | None] = [None] * m
    stopped_at = None
    for k, i in enumerate(order):
        a_k = alpha / (m - k) if stopped_at is None else alpha / (m - stopped_at)
        level = 1 - a_k
        if stopped_at is None and not interval(evidence[i], level).lo > 0:
            stopped_at = k
        out[i] = decide_one(evidence[i], level, correction=correction, may_regress=stopped_at is None)
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
