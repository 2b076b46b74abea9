"""The peak-QPS search (deploykit/loadgen/peak.py): LoadGen's FindPeakPerformance algorithm as a pure function.

A run is a function of the QPS (met the bound or not); with a threshold SUT the search must end on the last
QPS below the threshold, to the precision asked. (test_loadgen_logs.py replays LoadGen's own search.)"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploykit.loadgen.peak import MAX_WIDEN_STEPS, finished, search_peak


def test_threshold_sut_steps_are_loadgens():
    tried = []

    def run(q):
        tried.append(q)
        return q <= 300

    s = search_peak(run, 100, step_size=1.0, decimals=0)
    assert [st["phase"] for st in s.steps] == ["base", "widen", "widen"] + ["bisect"] * (len(s.steps) - 3)
    assert tried[:3] == [100, 200, 400]  # widen by (1 + step size) until a miss
    assert tried[3] == 300  # then the middle of [200, 400)
    assert s.peak_qps == 300 and s.failure is None
    assert [st["met"] for st in s.steps] == [q <= 300 for q in tried]


def test_a_failed_start_is_no_peak_and_says_why():
    s = search_peak(lambda q: False, 50)
    assert s.peak_qps is None and len(s.steps) == 1 and "starting QPS 50" in s.failure


def test_step_size_and_decimals():
    s = search_peak(lambda q: q <= 10.37, 1, step_size=0.5, decimals=2)
    widen = [st["qps"] for st in s.steps if st["phase"] == "widen"]
    assert widen == pytest.approx([1.5 * 1.5 ** i for i in range(len(widen))])
    assert 10.36 <= s.peak_qps <= 10.37


def test_a_run_that_never_misses_stops():
    s = search_peak(lambda q: True, 1)
    assert len(s.steps) == 1 + MAX_WIDEN_STEPS and "no upper bound" in s.failure


def test_finished_is_loadgens_rule():
    assert finished(100, 101, 0) and not finished(100, 102, 0)
    assert finished(10.05, 10.1, 1) and not finished(10.0, 10.2, 1)
    with pytest.raises(ValueError):
        search_peak(lambda q: True, 0)


@settings(max_examples=200, deadline=None)
@given(threshold=st.floats(min_value=0.5, max_value=5000), start=st.floats(min_value=0.1, max_value=100),
       decimals=st.integers(min_value=0, max_value=2))
def test_peak_brackets_the_threshold(threshold, start, decimals):
    s = search_peak(lambda q: q <= threshold, start, decimals=decimals)
    if start > threshold:
        assert s.peak_qps is None
        return
    assert s.peak_qps <= threshold  # the peak met the bound
    missed = [x["qps"] for x in s.steps if not x["met"]]
    hi = min(missed)
    assert threshold < hi and finished(s.peak_qps, hi, decimals)  # and the bounds closed around the threshold
    assert len(s.steps) <= 2 + math.log2(max(threshold / start, 1)) + math.log2(threshold * 10 ** decimals + 2) + 2
