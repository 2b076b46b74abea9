"""The gate's decision in the noise laboratory (benchmarks/gate_noise_lab.py): simulated interleaved runs -- i.i.d.,
heavy-tailed, bursty on/off load, slow drift -- decided by the real deploykit.gate.decision with the real look
schedule (a look after --min-blocks rounds and every two after, up to --max-blocks). The false-verdict rate of A/A
runs must stay at or below alpha however many looks were taken; real steps must be found."""

import pytest
from scipy.stats import binom

from benchmarks.gate_noise_lab import KINDS, lab, simulate, summary
from deploykit.gate.decision import Evidence, decide_one

STREAMS = 200
ALPHA = 0.05


def decide(lr: tuple, tol: float) -> str:
    return decide_one(Evidence(lr, tol), 1 - ALPHA).outcome


def allowed(streams: int, alpha: float = ALPHA) -> float:
    """The most false verdicts a procedure with rate alpha shows in ``streams`` runs, but for a 1-in-1000 chance."""
    return float(binom.ppf(0.999, streams, alpha)) / streams


def test_simulated_streams_are_what_they_say():
    import numpy as np

    quiet = simulate("iid", 0.0, 60, 1)
    assert abs(np.median(quiet)) < 0.02 and np.std(quiet) < 0.05
    step = simulate("iid", 0.10, 60, 1)
    assert np.median(step) == pytest.approx(np.log(1.10), abs=0.02)
    bursty = simulate("bursty", 0.0, 60, 1)
    assert np.mean(np.abs(bursty) > 0.2) > 0.05  # rounds hit by a burst edge or time-slicing
    assert simulate("bursty", 0.0, 60, 1) == pytest.approx(bursty)  # reproducible by seed


@pytest.mark.parametrize("kind", KINDS)
def test_aa_false_verdicts_stay_under_alpha_at_every_look(kind):
    s = summary(lab(kind, 0.0, STREAMS, decide, seed=1), 0.0)
    assert s["false"] <= allowed(STREAMS), s  # false REGRESSION or IMPROVEMENT
    assert s["REGRESSION"] <= allowed(STREAMS, ALPHA / 2), s


@pytest.mark.parametrize("kind", KINDS)
def test_steps_beyond_the_tolerance_are_found_and_never_passed(kind):
    s10 = summary(lab(kind, 0.10, STREAMS // 2, decide, seed=2), 0.10)
    s20 = summary(lab(kind, 0.20, STREAMS // 2, decide, seed=3), 0.20)
    assert s10["PASS"] <= allowed(STREAMS // 2) and s20["PASS"] == 0, (s10, s20)  # a false PASS
    if kind == "noisy":  # rounds spread by ~20%: 60 blocks find a 20% step most of the time
        assert s20["REGRESSION"] >= 0.5, s20
        return
    assert s20["REGRESSION"] >= 0.95, s20
    assert s10["REGRESSION"] >= (0.9 if kind != "bursty" else 0.8), s10
    assert s20["median_blocks"] <= 20


def test_a_small_step_within_the_tolerance_is_not_a_regression():
    s = summary(lab("iid", 0.03, STREAMS // 2, decide, seed=4), 0.03)
    assert s["REGRESSION"] <= allowed(STREAMS // 2) and s["PASS"] >= 0.8, s
