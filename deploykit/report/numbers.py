"""Numbers as table cells: the one place that decides how a latency, a ratio, a percentage or a count is written,
for every writer (the renderings of one report, the study report, ``deploykit compare``, the CLI's tables).

Every function takes what a table holds (a float, an int, NaN, None) and returns text; a missing value (None or
NaN) gives ``missing``: "-" by default, "" where an empty cell reads better (the study report's tables).
A string passes through unchanged, so a cell that already holds a status ("failed", "n/a") is never mangled.
"""

from __future__ import annotations

import math

MISSING = "-"
INF = "∞"


def value(x) -> float | None:
    """``x`` as a float, or None when it is missing (None, NaN) or not a number."""
    if x is None or isinstance(x, (str, bytes)):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _pre(x, missing: str) -> str | None:
    """The text of a value that is not a finite number (missing, a string, an infinity); None for the others."""
    if isinstance(x, str):
        return x
    f = value(x)
    if f is None:
        return missing if x is None or _is_nan(x) else str(x)
    if math.isinf(f):
        return INF if f > 0 else f"-{INF}"
    return None


def _is_nan(x) -> bool:
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def number(x, digits: int | None = None, *, missing: str = MISSING) -> str:
    """A plain number. With ``digits``: that many decimals. Without: about 4 significant digits, thousands
    grouped and never an exponent (1,235 / 123.5 / 1.23 / 0.800 / 0.000123)."""
    text = _pre(x, missing)
    if text is not None:
        return text
    f = float(x)
    if digits is not None:
        return f"{f:.{digits}f}"
    a = abs(f)
    if a >= 1000:
        return f"{f:,.0f}"
    if a >= 100:
        return f"{f:.1f}"
    if a >= 1:
        return f"{f:.2f}"
    return "0" if f == 0 else f"{f:#.3g}"


def ms(x, *, missing: str = MISSING) -> str:
    """A latency in milliseconds: microseconds visible below 100 ms, a tenth above (12.345 / 123.4)."""
    text = _pre(x, missing)
    if text is not None:
        return text
    f = float(x)
    return f"{f:.3f}" if abs(f) < 100 else f"{f:.1f}"


def ratio(x, digits: int = 2, *, missing: str = MISSING) -> str:
    """A ratio of two measurements (a speed-up, a lead): ``1.85×``."""
    text = number(x, digits, missing=missing)
    return text if text == missing or isinstance(x, str) else f"{text}×"


def pct(x, digits: int = 1, *, missing: str = MISSING) -> str:
    """A value already in percent: ``12.3%``."""
    text = number(x, digits, missing=missing)
    return text if text == missing or isinstance(x, str) else f"{text}%"


def share(x, digits: int = 1, *, missing: str = MISSING) -> str:
    """A fraction written as a percentage: 0.123 -> ``12.3%``."""
    text = _pre(x, missing)
    return text if text is not None else f"{float(x):.{digits}%}"


def count(x, *, missing: str = MISSING) -> str:
    """A whole number (a batch, a resolution, a count) held as a float in a table: ``224``."""
    text = _pre(x, missing)
    return text if text is not None else str(int(float(x)))


def given(x, *, missing: str = MISSING) -> str:
    """A number as it was given, not a measurement (a requested QPS, a latency bound, a percentile): 10, 2.5."""
    text = _pre(x, missing)
    return text if text is not None else f"{float(x):g}"


def sig(x, digits: int = 3, *, missing: str = MISSING) -> str:
    """``digits`` significant digits, an exponent where it is shorter: ``0.00123``, ``1.23e+05``."""
    text = _pre(x, missing)
    return text if text is not None else f"{float(x):.{digits}g}"


def sci(x, digits: int = 2, *, missing: str = MISSING) -> str:
    """Scientific notation (an error that spans decades): ``1.23e-05``."""
    text = _pre(x, missing)
    return text if text is not None else f"{float(x):.{digits}e}"


def interval(lo, hi, fmt=number, *, sep: str = ", ", missing: str = "", **kw) -> str:
    """A confidence interval ``[lo, hi]`` with each end written by ``fmt``; ``missing`` when either end is."""
    if value(lo) is None or value(hi) is None:
        return missing
    return f"[{fmt(lo, **kw)}{sep}{fmt(hi, **kw)}]"
