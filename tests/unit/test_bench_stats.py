"""The statistics module against known answers and known distributions."""

import numpy as np
import pytest

from deploykit.bench import stats


def test_percentile_definition_is_linear_interpolation_between_ranks():
    x = [4.0, 1.0, 3.0, 2.0]  # sorted: 1 2 3 4
    # h = (n-1) q/100 = 3q/100
    assert stats.percentile(x, 50) == pytest.approx(2.5)
    assert stats.percentile(x, 90) == pytest.approx(3.7)
    assert stats.percentile(x, 0) == 1.0 and stats.percentile(x, 100) == 4.0
    assert stats.percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("dist,quantile", [
    (lambda rng, n: rng.uniform(0, 1, n), lambda q: q / 100),
    (lambda rng, n: rng.exponential(2.0, n), lambda q: -2.0 * np.log(1 - q / 100)),
])
def test_percentiles_converge_to_the_distribution_quantiles(dist, quantile):
    rng = np.random.default_rng(1)
    x = dist(rng, 200_000)
    for q in (50, 90, 95, 99):
        assert stats.percentile(x, q) == pytest.approx(quantile(q), rel=0.02)


def test_summary_fields_are_consistent():
    rng = np.random.default_rng(2)
    x = rng.lognormal(mean=3.0, sigma=0.1, size=500)
    s = stats.summarize(x, n_boot=500)
    assert s["n"] == 500
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
    assert s["p50"] == pytest.approx(np.median(x))
    assert s["mean"] == pytest.approx(np.mean(x))
    assert s["stdev"] == pytest.approx(np.std(x, ddof=1))
    assert s["cv"] == pytest.approx(s["stdev"] / s["mean"])
    lo, hi = s["median_ci95"]
    assert lo <= s["p50"] <= hi


def test_bootstrap_is_deterministic_for_a_seed():
    x = np.random.default_rng(3).normal(10, 1, 100)
    assert stats.bootstrap_ci(x, seed=7, n_boot=300) == stats.bootstrap_ci(x, seed=7, n_boot=300)
    assert stats.bootstrap_ci(x, seed=7, n_boot=300) != stats.bootstrap_ci(x, seed=8, n_boot=300)


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time():
    # lognormal(mu, sigma) has median exp(mu); heavy-ish right tail like latencies
    rng = np.random.default_rng(4)
    true_median = np.exp(1.0)
    trials, covered = 300, 0
    for t in range(trials):
        x = rng.lognormal(1.0, 0.5, size=101)
        lo, hi = stats.bootstrap_ci(x, "median", n_boot=400, seed=t)
        covered += lo <= true_median <= hi
    coverage = covered / trials
    assert 0.89 <= coverage <= 0.995, coverage


def test_ci_narrows_with_more_samples():
    rng = np.random.default_rng(5)
    small = stats.bootstrap_ci(rng.normal(0, 1, 50), n_boot=500)
    large = stats.bootstrap_ci(rng.normal(0, 1, 5000), n_boot=500)
    assert (large[1] - large[0]) < (small[1] - small[0]) / 4


def test_tail_support_rule():
    assert stats.tail_supported(100, 90) and not stats.tail_supported(99, 90)
    assert stats.tail_supported(1000, 99) and not stats.tail_supported(999, 99)


def test_empty_samples_raise():
    with pytest.raises(ValueError):
        stats.summarize([])


def test_ratio_ci_brackets_the_ratio_of_medians_and_excludes_1_only_for_a_real_difference():
    from deploykit.bench.stats import percentile_stat, ratio_ci

    rng = np.random.default_rng(0)
    base = 10 * (1 + 0.05 * rng.standard_normal(300))
    slower = 11 * (1 + 0.05 * rng.standard_normal(300))
    same = 10 * (1 + 0.05 * rng.standard_normal(300))
    r, lo, hi = ratio_ci(slower, base)
    assert r == pytest.approx(np.median(slower) / np.median(base)) and lo < r < hi and lo > 1
    r, lo, hi = ratio_ci(base, slower)
    assert hi < 1
    r, lo, hi = ratio_ci(same, base)
    assert lo < 1 < hi
    r, lo, hi = ratio_ci(slower, base, percentile_stat(90), n_boot=500)
    assert r == pytest.approx(np.percentile(slower, 90) / np.percentile(base, 90)) and lo < r < hi
    with pytest.raises(ValueError):
        ratio_ci([], base)
def test_loadgen_percentile_is_loadgens_nearest_rank():
    x = list(range(1, 101))  # sorted 1..100: LoadGen takes sorted[floor(n * p)]
    assert stats.loadgen_percentile(x, 50) == 51.0
    assert stats.loadgen_percentile(x, 90) == 91.0
    assert stats.loadgen_percentile(x, 99) == 100.0  # index floor(100 * 0.99) = 99: the largest of 100
    assert stats.loadgen_percentile([5.0, 1.0, 3.0], 0) == 1.0
    assert stats.loadgen_percentile([2.0], 99.9) == 2.0
    with pytest.raises(ValueError):
        stats.loadgen_percentile(x, 100)
    with pytest.raises(ValueError):
        stats.loadgen_percentile([], 50)


# ------------------------------------------------------------------------------------------- scaling fits

RES = np.array([224, 320, 448, 640, 896, 1024], dtype=float)


def _noisy_points(rng, pixels, truth, sigma=0.04, n=80):
    samples = [t * rng.lognormal(0.0, sigma, n) for t in truth]
    return [float(np.median(s)) for s in samples], samples


def test_power_law_recovers_exponent_and_prefactor_exactly_without_noise():
    pix = RES ** 2
    fit = stats.fit_power_law(pix, 3e-4 * pix ** 1.37)
    assert fit.k == pytest.approx(1.37, abs=1e-12)
    assert fit.prefactor == pytest.approx(3e-4, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.ci is None and "no confidence interval" in fit.method  # nothing says how uncertain the points are


@pytest.mark.parametrize("k_true", [1.0, 1.5, 2.0])
def test_power_law_on_noisy_samples_recovers_k_and_its_ci_covers_it(k_true):
    rng = np.random.default_rng(int(k_true * 10))
    pix = RES ** 2
    y, samples = _noisy_points(rng, pix, 0.01 * (pix / pix[0]) ** k_true)
    fit = stats.fit_power_law(pix, y, samples=samples, n_boot=800, seed=3)
    assert fit.k == pytest.approx(k_true, abs=0.02)
    lo, hi = fit.ci
    assert lo < fit.k < hi and hi - lo < 0.05
    # one data set may miss (a 95% interval); the error is of the order of the interval's width, and the
    # coverage test below checks the 95%
    assert abs(fit.k - k_true) < 2 * (hi - lo)
    assert "bootstrap of their raw samples" in fit.method and fit.replicates.shape == (800,)


def test_power_law_ci_is_deterministic_for_a_seed():
    rng = np.random.default_rng(5)
    pix = RES ** 2
    y, samples = _noisy_points(rng, pix, pix ** 1.2)
    a = stats.fit_power_law(pix, y, samples=samples, n_boot=300, seed=1)
    b = stats.fit_power_law(pix, y, samples=samples, n_boot=300, seed=1)
    c = stats.fit_power_law(pix, y, samples=samples, n_boot=300, seed=2)
    assert a.ci == b.ci and np.array_equal(a.replicates, b.replicates)
    assert a.ci != c.ci


def test_power_law_ci_covers_the_true_exponent_about_95_percent_of_the_time():
    pix = RES[:4] ** 2
    covered = 0
    for i in range(30):
        rng = np.random.default_rng(100 + i)
        y, samples = _noisy_points(rng, pix, 2.0 * (pix / pix[0]) ** 1.3, sigma=0.1, n=41)
        lo, hi = stats.fit_power_law(pix, y, samples=samples, n_boot=400, seed=i).ci
        covered += lo <= 1.3 <= hi
    assert covered >= 24, covered  # nominal 95%: 28-29 of 30; fewer than 24 would be a broken interval


def test_power_law_from_medians_and_cis_only_says_so_and_covers_k():
    rng = np.random.default_rng(7)
    pix = RES ** 2
    y, samples = _noisy_points(rng, pix, (pix / pix[0]) ** 1.8)
    cis = [stats.bootstrap_ci(s, n_boot=400, seed=0) for s in samples]
    fit = stats.fit_power_law(pix, y, ci=cis, n_boot=800)
    assert "without raw samples" in fit.method and "log-normal" in fit.method
    lo, hi = fit.ci
    assert lo <= 1.8 <= hi and fit.k == pytest.approx(1.8, abs=0.03)
    # samples win over CIs where a point has both; a point with neither is taken as exact and said so
    mixed = stats.fit_power_law(pix, y, samples=[samples[0], None, None, None, None, None],
                                ci=[None, cis[1], cis[2], None, cis[4], cis[5]], n_boot=200)
    assert "1 point(s) from the bootstrap" in mixed.method and "4 point(s) without raw samples" in mixed.method
    assert "1 point(s) with neither taken as exact" in mixed.method


@pytest.mark.parametrize("x,y,msg", [
    ([100.0], [1.0], "at least 2 distinct"),
    ([100.0, 100.0, 100.0], [1.0, 1.1, 1.2], "at least 2 distinct"),
    ([100.0, 200.0], [1.0], "differ in length"),
    ([100.0, -200.0], [1.0, 2.0], "positive"),
    ([100.0, 200.0], [0.0, 2.0], "positive"),
    ([100.0, 200.0], [float("nan"), 2.0], "finite"),
    ([100.0, float("inf")], [1.0, 2.0], "finite"),
    ([], [], "at least 2 distinct"),
])
def test_power_law_rejects_degenerate_input_with_a_clean_error(x, y, msg):
    with pytest.raises(ValueError, match=msg):
        stats.fit_power_law(x, y)


def test_replicates_reject_mismatched_uncertainty_lists():
    with pytest.raises(ValueError, match="samples has 1 entries for 2 points"):
        stats.fit_power_law([1.0, 2.0], [1.0, 2.0], samples=[[1.0, 2.0]])
    with pytest.raises(ValueError, match="n_boot"):
        stats.fit_power_law([1.0, 2.0], [1.0, 2.0], n_boot=1)


def test_linear_quadratic_fit_recovers_coefficients_and_crossover_exactly_without_noise():
    pix = RES ** 2
    c0, c1, c2 = 2.0, 4e-5, 4e-5 / 600 ** 2  # crossover at sqrt(c1/c2) = 600 px
    fit = stats.fit_linear_quadratic(pix, c0 + c1 * pix + c2 * pix ** 2)
    assert (fit.c0, fit.c1, fit.c2) == pytest.approx((c0, c1, c2), rel=1e-6)
    assert fit.crossover_side == pytest.approx(600.0, rel=1e-6)
    assert fit.crossover_pixels == pytest.approx(600.0 ** 2, rel=1e-6)
    assert fit.crossover_in_range and fit.side_ci is None


def test_linear_quadratic_fit_ci_covers_the_true_crossover():
    rng = np.random.default_rng(11)
    pix = RES ** 2
    truth = 1.0 + 3e-5 * pix + 3e-5 / 500 ** 2 * pix ** 2
    y, samples = _noisy_points(rng, pix, truth, sigma=0.03)
    fit = stats.fit_linear_quadratic(pix, y, samples=samples, n_boot=400, seed=0)
    lo, hi = fit.side_ci
    assert lo <= 500 <= hi and lo < fit.crossover_side < hi
    assert fit.crossover_side == pytest.approx(500, rel=0.08)
    assert fit.no_crossover_share == 0.0


def test_linear_quadratic_fit_of_a_linear_curve_never_crosses():
    pix = RES ** 2
    rng = np.random.default_rng(12)
    y, samples = _noisy_points(rng, pix, 0.5 + 2e-5 * pix, sigma=0.02)
    fit = stats.fit_linear_quadratic(pix, y, samples=samples, n_boot=300)
    exact = stats.fit_linear_quadratic(pix, 0.5 + 2e-5 * pix)
    assert exact.c2 == pytest.approx(0.0, abs=1e-20) and exact.crossover_side == np.inf
    assert not exact.crossover_in_range
    # with noise c2 may come out slightly positive, but then far beyond the measured range, and some
    # replicates never cross: the CI's upper end is infinite
    assert fit.crossover_side > 2 * RES[-1]
    assert fit.side_ci[1] == np.inf and fit.no_crossover_share > 0.025


@pytest.mark.parametrize("x,y,msg", [
    ([100.0, 200.0], [1.0, 2.0], "at least 3 distinct"),
    ([100.0, 100.0, 200.0], [1.0, 1.0, 2.0], "at least 3 distinct"),
    ([100.0, 200.0, 300.0], [1.0, -2.0, 3.0], "positive"),
])
def test_linear_quadratic_fit_rejects_degenerate_input(x, y, msg):
    with pytest.raises(ValueError, match=msg):
        stats.fit_linear_quadratic(x, y)


# ------------------------------------------------------------------------------------------------- accuracy
def test_mcnemar_exact_matches_the_binomial_test():
    from scipy.stats import binomtest

    from deploykit.bench.stats import mcnemar_exact

    for b, c in ((0, 0), (3, 0), (10, 2), (7, 9), (30, 12)):
        expect = 1.0 if b + c == 0 else binomtest(min(b, c), b + c, 0.5).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expect)


def test_paired_accuracy_drop_interval_and_counts():
    from deploykit.bench.stats import paired_accuracy

    rng = np.random.default_rng(0)
    ref = rng.random(400) < 0.95
    var = ref.copy()
    var[np.flatnonzero(ref)[:20]] = False  # 20 images the variant gets wrong that the reference got right
    out = paired_accuracy(ref, var, seed=1)
    assert out["drop"] == pytest.approx(20 / 400)
    assert out["only_reference_right"] == 20 and out["only_variant_right"] == 0
    assert out["ci95"][0] > 0 and out["ci95"][0] < out["drop"] < out["ci95"][1]
    assert out["mcnemar_p"] < 1e-4
    same = paired_accuracy(ref, ref)
    assert same["drop"] == 0 and same["ci95"] == [0.0, 0.0] and same["mcnemar_p"] == 1.0
    with pytest.raises(ValueError):
        paired_accuracy(ref, ref[:10])


def test_proportion_ci_is_sensible_at_the_edges():
    from deploykit.bench.stats import proportion_ci

    low, high = proportion_ci(359, 359)
    assert high == 1.0 and 0.98 < low < 1.0
    low, high = proportion_ci(0, 50)
    assert low == 0.0 and 0 < high < 0.1
    low, high = proportion_ci(180, 360)
    assert low < 0.5 < high and high - low == pytest.approx(2 * 1.96 * (0.25 / 360) ** 0.5, rel=0.05)


def test_noise_flags_name_a_spread_run_and_a_run_whose_halves_differ():
    rng = np.random.default_rng(0)
    steady = 10 * (1 + 0.02 * rng.standard_normal(300))
    assert stats.noise_flags(steady) == []
    bursty = steady.copy()
    bursty[rng.random(300) < 0.15] *= 2.5  # another job's bursts: some iterations 2.5x slower
    (why,) = stats.noise_flags(bursty)
    assert why.startswith("CV ")
    stepped = np.concatenate([steady[:150], 1.10 * steady[150:]])  # a load arrived half-way
    (why,) = stats.noise_flags(stepped)
    assert why.startswith("second half +") and "burst test" in why  # ~ +10%
    assert stats.noise_flags(steady[:10]) == [] and stats.noise_flags([5.0]) == []
