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
