"""report/numbers.py: the one module that writes numbers as table cells, for every writer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deploykit.report import numbers as N


@pytest.mark.parametrize("fn", [N.number, N.ms, N.ratio, N.pct, N.share, N.count, N.sig, N.sci, N.given])
def test_a_missing_value_is_a_dash_or_what_the_writer_asks_for(fn):
    for v in (None, float("nan"), np.float64("nan")):
        assert fn(v) == "-" and fn(v, missing="") == ""


@pytest.mark.parametrize("fn", [N.number, N.ms, N.ratio, N.pct, N.count])
def test_a_string_passes_through(fn):
    assert fn("failed") == "failed"


def test_each_kind_of_number():
    assert [N.ms(12.3456), N.ms(123.456), N.ms(np.float32(0.5))] == ["12.346", "123.5", "0.500"]
    assert [N.number(1234.56), N.number(0.8), N.number(0.0001234), N.number(2.5, 1)] == ["1,235", "0.800",
                                                                                           "0.000123", "2.5"]
    assert N.ratio(1.846) == "1.85×" and N.pct(12.34) == "12.3%" and N.share(0.1234) == "12.3%"
    assert N.share(0.5, 0) == "50%" and N.count(224.0) == "224" and N.given(2.5) == "2.5" and N.given(10.0) == "10"
    assert N.sig(0.000123456) == "0.000123" and N.sci(1.5e-5) == "1.50e-05"
    assert N.number(math.inf) == "∞" and N.ratio(math.inf) == "∞×" and N.number(-math.inf) == "-∞"


def test_intervals():
    assert N.interval(1.234, 2.5, digits=2) == "[1.23, 2.50]"
    assert N.interval(12.1, 12.6, N.ms, sep="-") == "[12.100-12.600]"
    assert N.interval(1.0, float("nan")) == "" and N.interval(None, 1.0, missing="-") == "-"
    assert N.interval(300, math.inf, digits=0) == "[300, ∞]"
