"""The gate's decision function on synthetic block data with known ratios, and the multiple-comparison correction."""

import math

import numpy as np
import pytest

from deploykit.bench.stats import bootstrap_ci, bootstrap_distribution, percentile_interval
from deploykit.core.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_REGRESSION, InputError, UsageError
from deploykit.gate.decision import (IMPROVEMENT, INCONCLUSIVE, PASS, REGRESSION, Evidence, adaptive_level, decide,
                                   decide_all, exit_code, anytime_p_slower, parse_tolerance)


def blocks(true_ratio: float, noise: float, n: int, seed: int) -> tuple[float, ...]:
    """Per-round log-ratios of a candidate ``true_ratio`` times as slow, with log-normal block noise."""
    rng = np.random.default_rng(seed)
    return tuple(math.log(true_ratio) + rng.normal(0.0, noise, n))


def test_bootstrap_distribution_is_the_one_behind_bootstrap_ci():
    x = np.random.default_rng(3).lognormal(size=301)
    reps = bootstrap_distribution(x, "median", n_boot=1500, seed=7)
    assert reps.shape == (1500,)
    assert percentile_interval(reps, 0.9) == bootstrap_ci(x, "median", level=0.9, n_boot=1500, seed=7)
    with pytest.raises(ValueError):
        percentile_interval(reps, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_identical_sides_pass(seed):
    d = decide(Evidence(blocks(1.0, 0.01, 12, seed), 0.05))
    assert d.outcome == PASS, d
    assert d.ci[0] < 0.02 and d.ci[1] < 0.05 and d.mde < 0.05
    assert abs(d.estimate) < 0.02


@pytest.mark.parametrize("ratio", [1.10, 1.20, 1.5])
@pytest.mark.parametrize("seed", range(3))
def test_real_slowdowns_are_regressions(ratio, seed):
    d = decide(Evidence(blocks(ratio, 0.02, 12, seed), 0.05))
    assert d.outcome == REGRESSION, d
    assert d.ci[0] > 0 and d.estimate > 0.05
    assert d.estimate == pytest.approx(ratio - 1, abs=0.02)
    assert d.fails() and d.fails(strict=True)


def test_improvement_is_reported_and_passes():
    d = decide(Evidence(blocks(0.8, 0.02, 12, 0), 0.05))
    assert d.outcome == IMPROVEMENT and d.ci[1] < 0 and d.estimate == pytest.approx(-0.2, abs=0.02)
    assert not d.fails(strict=True)
    assert exit_code([d], strict=True) == EXIT_OK


def test_slowdown_at_the_tolerance_is_inconclusive():
    # a true 4.5% slowdown: surely slower, but the interval straddles the 5% tolerance
    lr = tuple(math.log(1.045) + np.array([-1, 1] * 6) * 0.01)
    d = decide(Evidence(lr, 0.05))
    assert d.outcome == INCONCLUSIVE and d.ci[0] > 0 and d.ci[0] < 0.05 < d.ci[1]
    assert "straddles" in d.reason and not d.too_noisy
    assert not d.fails() and d.fails(strict=True)


def test_too_noisy_run_says_so_instead_of_passing():
    # centred on zero, upper bound may even be below 5%, but the run could not have seen a 5% slowdown
    lr = np.array(blocks(1.0, 0.15, 12, 1))
    d = decide(Evidence(tuple(lr - np.median(lr)), 0.05))  # estimate exactly 0: only the noise is in question
    assert d.outcome == INCONCLUSIVE and d.too_noisy
    assert d.mde > 0.05 and "too noisy" in d.reason and "minimum detectable effect" in d.reason
    # the same noise with many more blocks resolves it
    d2 = decide(Evidence(blocks(1.0, 0.15, 2000, 1), 0.05))
    assert d2.outcome == PASS and d2.mde < d.mde


def test_a_tight_run_with_a_small_significant_slowdown_passes_with_a_note():
    d = decide(Evidence(blocks(1.02, 0.004, 20, 0), 0.05))
    assert d.outcome == PASS and d.ci[0] > 0
    assert any("significant but within the tolerance" in n for n in d.notes)


def test_too_few_blocks_are_inconclusive():
    d = decide(Evidence(blocks(2.0, 0.01, 3, 0), 0.05))
    assert d.outcome == INCONCLUSIVE and "too few blocks" in d.reason


def test_mde_scales_with_noise_and_blocks():
    noisy = decide(Evidence(blocks(1.0, 0.08, 16, 0), 0.05))
    quiet = decide(Evidence(blocks(1.0, 0.02, 16, 0), 0.05))
    many = decide(Evidence(blocks(1.0, 0.08, 64, 0), 0.05))
    assert quiet.mde < noisy.mde and many.mde < noisy.mde
    # the same rounds four times as spread: four times the MDE (in log space)
    assert math.log1p(noisy.mde) == pytest.approx(4 * math.log1p(quiet.mde))
    # of the order of (z_a + z_power) x noise / sqrt(n), larger: it holds at every look, and uses signs only
    assert 2.8 * 0.08 / 4 < math.log1p(noisy.mde) < 4 * 2.8 * 0.08 / 4
    few = decide(Evidence(blocks(1.0, 0.02, 6, 0), 0.05))  # too few rounds for any claim: nothing detectable
    assert few.mde == math.inf and few.outcome == INCONCLUSIVE


def test_baseline_mode_subtracts_the_stored_log_ratios():
    # machine 30% slower today for both the model and the reference workload: relative latency unchanged
    stored = blocks(1.25, 0.01, 20, 0)  # model / reference in the baseline report
    today_same = blocks(1.25, 0.01, 16, 1)
    today_slow = blocks(1.25 * 1.15, 0.01, 16, 2)
    same = decide(Evidence(today_same, 0.05, baseline_log_ratios=stored))
    slow = decide(Evidence(today_slow, 0.05, baseline_log_ratios=stored))
    assert same.outcome == PASS and same.n_baseline == 20 and abs(same.estimate) < 0.01
    assert slow.outcome == REGRESSION and slow.estimate == pytest.approx(0.15, abs=0.02)
    # the stored side's noise widens the interval: a baseline with noisier blocks gives a wider interval
    noisy_store = decide(Evidence(today_same, 0.05, baseline_log_ratios=blocks(1.25, 0.05, 20, 0)))
    assert (noisy_store.ci[1] - noisy_store.ci[0]) > (same.ci[1] - same.ci[0])


def test_decisions_are_deterministic():
    ev = Evidence(blocks(1.03, 0.03, 14, 5), 0.05)
    assert decide(ev) == decide(ev)


def test_bonferroni_widens_every_interval():
    evs = [Evidence(blocks(1.0, 0.02, 12, s), 0.05) for s in range(4)]
    single = [decide(ev) for ev in evs]
    corrected = decide_all(evs, alpha=0.05, correction="bonferroni")
    for s, c in zip(single, corrected):
        assert c.level == pytest.approx(1 - 0.05 / 4) and c.correction == "bonferroni"
        assert c.ci[0] <= s.ci[0] and c.ci[1] >= s.ci[1]
    assert [d.level for d in decide_all(evs, correction="none")] == [0.95] * 4


def centred(n: int, seed: int) -> np.ndarray:
    """Normal noise shifted to median 0 and scaled to standard deviation 1."""
    z = np.random.default_rng(seed).normal(0, 1, n)
    return (z - np.median(z)) / z.std(ddof=1)


def marginal_slowdown(n: int, seed: int, rejects_at: float, not_at: float, ratio: float = 1.08) -> Evidence:
    """A ``ratio`` slowdown (median log-ratio exactly log(ratio)) whose noise is scaled so that the interval's lower
    bound is above zero at confidence ``rejects_at`` but not at ``not_at``. The median and the (expanded) bootstrap
    interval are affine-equivariant, so the bounds of log(ratio) + k z are log(ratio) + k lo(z) and the scale k
    puts zero half-way between the two bounds."""
    z = centred(n, seed)
    ev_z = Evidence(tuple(z), 0.05)
    lo_reject = math.log1p(decide_all([ev_z], alpha=1 - rejects_at, correction="none")[0].ci[0])
    lo_not = math.log1p(decide_all([ev_z], alpha=1 - not_at, correction="none")[0].ci[0])
    assert lo_not < lo_reject < 0
    k = math.log(ratio) / -((lo_reject + lo_not) / 2)
    return Evidence(tuple(math.log(ratio) + k * z), 0.05)


def test_correction_turns_a_marginal_regression_inconclusive():
    # an 8% slowdown significant at 95% but not at 1 - 0.05/10: alone it fails, among ten checks it does not
    marginal = marginal_slowdown(12, 0, rejects_at=0.95, not_at=1 - 0.05 / 10)
    others = [Evidence(blocks(1.0, 0.01, 12, s), 0.05) for s in range(9)]
    alone = decide_all([marginal], correction="none")[0]
    assert alone.outcome == REGRESSION and alone.estimate == pytest.approx(0.08)
    many = decide_all([marginal, *others], alpha=0.05, correction="bonferroni")
    assert many[0].outcome == INCONCLUSIVE and many[0].ci[0] <= 0
    assert all(d.outcome == PASS for d in many[1:])


def test_holm_rejects_what_bonferroni_cannot():
    # two checks: one clearly slower; one 8% slower whose interval excludes zero at 95% (Holm's second step,
    # alpha/1) but not at 97.5% (Bonferroni, alpha/2)
    strong = Evidence(blocks(1.3, 0.02, 40, 0), 0.05)
    marginal = marginal_slowdown(40, 0, rejects_at=0.95, not_at=0.975)
    holm = decide_all([marginal, strong], alpha=0.05, correction="holm")
    bonf = decide_all([marginal, strong], alpha=0.05, correction="bonferroni")
    assert holm[1].outcome == bonf[1].outcome == REGRESSION
    assert holm[1].level == pytest.approx(0.975) and holm[0].level == pytest.approx(0.95)
    assert holm[0].outcome == REGRESSION and holm[0].correction == "holm"
    assert bonf[0].outcome == INCONCLUSIVE and bonf[0].level == pytest.approx(0.975)


@pytest.mark.parametrize("seed", range(6))
def test_holm_step_down_invariants(seed):
    rng = np.random.default_rng(seed)
    m = 6
    evs = [Evidence(blocks(float(rng.choice([1.0, 1.0, 1.07, 1.12, 1.3])), 0.05, 12, 10 * seed + k), 0.05)
           for k in range(m)]
    holm = decide_all(evs, alpha=0.05, correction="holm")
    ranked = sorted(holm, key=lambda d: (d.p_slower, -d.estimate))  # ties: the larger slowdown first
    stopped = False
    for k, d in enumerate(ranked):
        if not stopped:
            assert d.level == pytest.approx(1 - 0.05 / (m - k))
            if not d.ci[0] > 0:
                stopped, stop_level = True, d.level
        else:
            assert d.level == pytest.approx(stop_level)  # the remaining checks keep the level of the stop
            assert d.outcome != REGRESSION  # and none of them may be declared a regression


def test_holm_is_never_less_powerful_than_bonferroni():
    rng = np.random.default_rng(0)
    for trial in range(20):
        evs = [Evidence(blocks(float(rng.choice([1.0, 1.06, 1.1, 1.2])), 0.04, 12, 100 * trial + k), 0.05)
               for k in range(5)]
        holm = decide_all(evs, correction="holm")
        bonf = decide_all(evs, correction="bonferroni")
        for h, b in zip(holm, bonf):
            if b.outcome == REGRESSION:
                assert h.outcome == REGRESSION


def test_anytime_p_slower():
    """2 / E_n(0): twelve rounds all slower give 2 / 630; a lone slower round proves nothing; none slower: 1."""
    assert anytime_p_slower(np.full(12, 0.1)) == pytest.approx(2 * 13 / (2 ** 13 - 1))
    assert anytime_p_slower(np.array([0.1])) == 1.0
    assert anytime_p_slower(np.array([-0.1, -0.2, 0.3, -0.1, -0.2, -0.3])) == 1.0
    assert anytime_p_slower(np.full(40, 0.1)) < anytime_p_slower(np.full(20, 0.1)) < 1e-3


def test_exit_codes():
    reg = decide(Evidence(blocks(1.5, 0.01, 12, 0), 0.05))
    inc = decide(Evidence(blocks(1.0, 0.3, 12, 0), 0.05))
    ok = decide(Evidence(blocks(1.0, 0.01, 12, 0), 0.05))
    assert (reg.outcome, inc.outcome, ok.outcome) == (REGRESSION, INCONCLUSIVE, PASS)
    assert exit_code([ok]) == EXIT_OK == 0
    assert exit_code([ok, inc]) == EXIT_OK
    assert exit_code([ok, inc], strict=True) == EXIT_INCONCLUSIVE == 5
    assert exit_code([inc, reg], strict=True) == EXIT_REGRESSION == 4
    assert exit_code([]) == 0


@pytest.mark.parametrize("value,expected", [(0.05, 0.05), ("5%", 0.05), ("12.5 %", 0.125), ("0.1", 0.1), (1, 1.0)])
def test_parse_tolerance(value, expected):
    assert parse_tolerance(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["five", "0%", "-3%", 0, 1.5, True, None, [5], "nan"])
def test_bad_tolerances(value):
    with pytest.raises(InputError):
        parse_tolerance(value)


def test_bad_alpha_and_correction():
    ev = [Evidence((0.0,) * 5, 0.05)]
    with pytest.raises(UsageError):
        decide_all(ev, alpha=0.7)
    with pytest.raises(UsageError):
        decide_all(ev, correction="sidak")
    with pytest.raises(UsageError):
        Evidence((0.0,), 0.0)
    assert adaptive_level(0.05, 4, "holm") == adaptive_level(0.05, 4, "bonferroni") == pytest.approx(0.9875)
    assert adaptive_level(0.05, 4, "none") == pytest.approx(0.95)


@pytest.mark.parametrize("n", [6, 10, 30])
@pytest.mark.parametrize("noise", ["normal", "heavy-tailed"])
def test_interval_coverage_on_identical_sides(n, noise):
    """A/A at small block counts: the 95% interval claims "slower" (lower bound > 0) in about 2.5% of runs, not
    more -- the small-sample expansion is what keeps a plain percentile bootstrap (~5-8% at n = 6) honest."""
    rng = np.random.default_rng(1000 + n)
    sims, slower = 400, 0
    for _ in range(sims):
        x = rng.normal(0, 0.03, n) if noise == "normal" else rng.standard_t(3, n) * 0.02
        d = decide(Evidence(tuple(x), 0.05), n_boot=2000, seed=int(rng.integers(1 << 30)))
        slower += d.ci[0] > 0
        assert d.outcome != REGRESSION or d.estimate > 0.05
    assert slower / sims <= 0.045, slower


@pytest.mark.parametrize("seed", range(4))
def test_rounds_hit_by_other_jobs_do_not_decide(seed):
    """A shared machine: most rounds agree within a few percent, but two of twenty blocks overlapped another job's
    burst and ran 2.7x slower (on either side). Identical sides must not fail; a real 10% slowdown must."""
    rng = np.random.default_rng(seed)
    calm = rng.normal(0, 0.02, 18)
    bursts = np.array([1.0, 1.0]) * rng.choice([-1, 1], 2)  # log(2.7) ~ 1
    aa = decide(Evidence(tuple(np.concatenate([calm, bursts])), 0.05))
    assert aa.outcome in (PASS, INCONCLUSIVE) and abs(aa.estimate) < 0.03, aa
    same_sign = decide(Evidence(tuple(np.concatenate([calm, [1.0, 1.0]])), 0.05))  # both bursts on the candidate
    assert same_sign.outcome != REGRESSION, same_sign
    ab = decide(Evidence(tuple(np.concatenate([calm + math.log(1.10), bursts])), 0.05))
    assert ab.outcome == REGRESSION and ab.estimate == pytest.approx(0.10, abs=0.025), ab
    # a burst counts as one sign, however large: ten times larger bursts decide the same
    big = decide(Evidence(tuple(np.concatenate([calm + math.log(1.10), 10 * bursts])), 0.05))
    assert (big.outcome, big.ci[0]) == (ab.outcome, ab.ci[0])


def test_baseline_drift_allowance():
    """A stored baseline: the relative cost can move between sessions by more than the rounds of either show. The
    allowance widens the interval: a small apparent shift is no longer a regression, a large real one still is,
    and identical sides cannot PASS a tolerance tighter than the allowance -- they are INCONCLUSIVE, saying why."""
    stored = blocks(1.3, 0.01, 20, 0)
    drifted = blocks(1.3 * 1.08, 0.01, 20, 1)  # same model, the machine's mix moved the relative cost by 8%
    assert decide(Evidence(drifted, 0.05, baseline_log_ratios=stored)).outcome == REGRESSION  # without allowance
    d = decide(Evidence(drifted, 0.05, baseline_log_ratios=stored, drift=0.10))
    assert d.outcome == INCONCLUSIVE and d.ci[0] < 0 and d.drift == 0.10
    slow = decide(Evidence(blocks(1.3 * 1.5, 0.01, 20, 2), 0.05, baseline_log_ratios=stored, drift=0.10))
    assert slow.outcome == REGRESSION and slow.estimate == pytest.approx(0.5, abs=0.03)
    same = blocks(1.3, 0.01, 20, 3)
    held = decide(Evidence(same, 0.05, baseline_log_ratios=stored, drift=0.10))
    assert held.outcome == INCONCLUSIVE and held.drift_bound and "baseline-drift allowance" in held.reason
    assert held.mde > 0.10 and not held.fails() and held.fails(strict=True)
    assert decide(Evidence(same, 0.15, baseline_log_ratios=stored, drift=0.10)).outcome == PASS
    assert decide(Evidence(same, 0.05, baseline_log_ratios=stored, drift=0.02)).outcome == PASS
    # the allowance also holds under Holm: the stop rule uses the widened lower bound
    holm = decide_all([Evidence(drifted, 0.05, baseline_log_ratios=stored, drift=0.10),
                       Evidence(blocks(1.0, 0.01, 20, 4), 0.05)], correction="holm")
    assert holm[0].outcome != REGRESSION
    with pytest.raises(UsageError):
        Evidence(same, 0.05, baseline_log_ratios=stored, drift=1.0)


@pytest.mark.parametrize("value,expected", [(0, 0.0), ("0%", 0.0), ("10%", 0.10), (0.03, 0.03)])
def test_parse_drift(value, expected):
    from deploykit.gate.decision import parse_drift

    assert parse_drift(value) == pytest.approx(expected)
    for bad in ("-1%", "100%", "x", True):
        with pytest.raises(InputError):
            parse_drift(bad)


def test_a_noisy_session_with_a_tolerance_under_the_drift_is_not_told_to_add_blocks():
    """When the drift allowance alone reaches the tolerance no number of blocks can help: the reason says what
    would (a larger tolerance, a smaller drift, --against)."""
    stored = tuple(blocks(1.3, 0.15, 8, 0))
    d = decide(Evidence(blocks(1.3, 0.15, 8, 1), 0.05, baseline_log_ratios=stored, drift=0.10))
    assert d.outcome == INCONCLUSIVE and "add blocks" not in d.reason
    assert "--tolerance" in d.reason and "--baseline-drift" in d.reason


def test_baseline_floor_is_the_drift_plus_the_stored_blocks_noise():
    from deploykit.gate.decision import baseline_floor

    quiet, noisy = blocks(1.3, 0.005, 20, 0), blocks(1.3, 0.08, 20, 0)
    assert baseline_floor(quiet, drift=0.10, level=0.95) == pytest.approx(0.10, abs=0.01)
    assert baseline_floor(quiet, drift=0.0, level=0.95) < 0.01
    assert baseline_floor(noisy, drift=0.10, level=0.95) > baseline_floor(noisy, drift=0.0, level=0.95) + 0.09
    assert baseline_floor(noisy, drift=0.10, level=0.99) > baseline_floor(noisy, drift=0.10, level=0.95)
    # a tolerance above the floor can PASS identical sides measured as quietly as the baseline, one below cannot
    stored = blocks(1.3, 0.03, 20, 1)
    floor = baseline_floor(stored, drift=0.05, level=0.95)
    today = blocks(1.3, 0.001, 60, 2)
    assert decide(Evidence(today, floor + 0.03, baseline_log_ratios=stored, drift=0.05)).outcome == PASS
    assert decide(Evidence(today, floor - 0.02, baseline_log_ratios=stored, drift=0.05)).outcome == INCONCLUSIVE
