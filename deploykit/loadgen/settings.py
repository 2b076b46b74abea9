"""What a LoadGen run is asked to do (``LoadgenConfig``) and the ``mlperf_loadgen.TestSettings`` made from it.

Order in which LoadGen's settings are decided (later wins):
1. deploykit's defaults, sized from a short calibration of the loaded model (``Calibration``): the expected
   latency / QPS LoadGen uses to pre-generate its queries, the Server cap on outstanding queries;
2. the ``--user-conf`` file (LoadGen's own ``user.conf`` syntax, ``model.scenario.key = value`` with ``*``
   wildcards; the model is the model's label), read by LoadGen itself (``TestSettings.FromConfig``). LoadGen's
   built-in ``mlperf.conf`` (the submission rules, 10-minute runs) is *not* loaded;
3. the options given explicitly (``--qps``, ``--latency-bound``, ``--percentile``, ``--duration``,
   ``--min-queries``, ``--max-outstanding``) and the test mode (PerformanceOnly, or FindPeakPerformance with
   ``--find-peak``; a ``mode`` key in the file is overridden).
LoadGen's detail log records the settings it really used (``effective_*``); the report keeps them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deploykit.core.errors import InputError

from deploykit.spec.loadgen import (DEFAULT_BOUND_MS, DEFAULT_DURATION_S, DEFAULT_PERCENTILE,  # noqa: F401
                                    DEFAULT_SAMPLES_PER_QUERY, LOADGEN_SCENARIO, OUTSTANDING_BOUNDS, OUTSTANDING_FLOOR,
                                    PEAK_METHODS, QSL_SIZE, SCENARIOS, LoadgenConfig, check_user_conf,
                                    default_min_queries)


@dataclass(frozen=True)
class Calibration:
    """A short measurement of the loaded model before LoadGen starts, used only to size LoadGen's query
    generation (its expected latency / QPS) and the Server cap on outstanding queries."""

    latency_ms: float  # median request latency (submit to completion)
    requests_per_s: float  # completed requests per second with ``requests`` in flight
    requests: int  # requests in flight during the calibration
    seconds: float

    def record(self) -> dict:
        return {"latency_ms": self.latency_ms, "requests_per_s": self.requests_per_s, "requests": self.requests,
                "seconds": self.seconds,
                "use": "sizes LoadGen's query generation (expected latency / QPS) and the default --max-outstanding; "
                       "not a result"}


def auto_max_outstanding(cal: Calibration, bound_ms: float) -> int:
    """Server: the outstanding-query cap beyond which no query could finish within the bound any more -- the
    backlog the SUT needs ``OUTSTANDING_BOUNDS`` x the bound to clear at its calibrated rate -- at least
    ``OUTSTANDING_FLOOR``. An overloaded run (say 100x the QPS the SUT sustains) stops issuing there, INVALID,
    instead of queueing thousands of queries that take minutes to drain."""
    return max(OUTSTANDING_FLOOR, math.ceil(OUTSTANDING_BOUNDS * cal.requests_per_s * bound_ms / 1000.0))


def peak_start_qps(cal: Calibration) -> float:
    """Find-peak's starting QPS when none is given: a quarter of the calibrated request rate (LoadGen needs a start
    that meets the bound; it then widens upwards)."""
    return max(0.1, round(0.25 * cal.requests_per_s, 1))


def build_test_settings(lg, cfg: LoadgenConfig, cal: Calibration, *, model: str, qps: float | None = None,
                        find_peak: bool | None = None):
    """``mlperf_loadgen.TestSettings`` for ``cfg`` (see the module docstring for the order). ``qps`` overrides
    the Server target QPS (a bisection step); ``find_peak`` the test mode."""
    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, cfg.loadgen_scenario)
    sc = cfg.scenario
    lat_ns = max(1.0, cal.latency_ms * 1e6)
    rate = max(cal.requests_per_s, 1e-3)
    # 1. defaults sized from the calibration (LoadGen generates queries for its min duration from these)
    s.min_duration_ms = int(round(cfg.resolved_duration_s() * 1000))
    s.single_stream_expected_latency_ns = int(max(1.0, 0.5 * lat_ns))  # over-generate: the run ends on time anyway
    per_query = cfg.samples_per_query or DEFAULT_SAMPLES_PER_QUERY
    s.multi_stream_expected_latency_ns = int(max(1.0, 0.5 * lat_ns * per_query / max(1, cal.requests)))
    s.offline_expected_qps = 1.25 * rate  # LoadGen issues 1.1 x this x min duration samples: the run lasts >= duration
    s.server_target_qps = peak_start_qps(cal)
    s.server_target_latency_ns = int(DEFAULT_BOUND_MS * 1e6)
    if sc == "server":
        s.server_max_async_queries = auto_max_outstanding(cal, cfg.resolved_bound_ms())
    pct = cfg.resolved_percentile()
    if pct is not None:  # enough queries for early stopping at the percentile: VALID on a first try where it can be
        s.min_query_count = default_min_queries(pct)
    # 2. LoadGen's user.conf
    if cfg.user_conf:
        apply_user_conf(s, cfg.user_conf, model=model, scenario=cfg.loadgen_scenario)
    # 3. explicit options and the mode
    if cfg.qps is not None:
        s.server_target_qps = cfg.qps
        s.offline_expected_qps = cfg.qps
    if qps is not None:
        s.server_target_qps = qps
    if cfg.latency_bound_ms is not None:
        s.server_target_latency_ns = int(round(cfg.latency_bound_ms * 1e6))
    if cfg.percentile is not None:
        p = cfg.percentile / 100.0
        s.server_target_latency_percentile = p
        s.single_stream_target_latency_percentile = p
        s.multi_stream_target_latency_percentile = p
    if cfg.min_queries is not None:
        s.min_query_count = cfg.min_queries
    if cfg.max_outstanding is not None:
        s.server_max_async_queries = cfg.max_outstanding
    if cfg.samples_per_query is not None:
        s.multi_stream_samples_per_query = cfg.samples_per_query
    if cfg.duration_s is not None:
        s.min_duration_ms = int(round(cfg.duration_s * 1000))
    s.server_find_peak_qps_decimals_of_precision = cfg.peak_decimals  # not a user.conf key
    peak = cfg.find_peak if find_peak is None else find_peak
    s.mode = lg.TestMode.FindPeakPerformance if peak else lg.TestMode.PerformanceOnly
    return s


def apply_user_conf(s, path: str, *, model: str, scenario: str) -> None:
    """Let LoadGen read ``path`` (its user.conf syntax) into ``s``; a file it rejects is a one-line InputError.
    ``conf_type=2``: the file alone, without LoadGen's built-in mlperf.conf (``1`` would load that first, once
    per process)."""
    rc = s.FromConfig(str(path), model, scenario, 2)
    if rc != 0:
        why = {-2: "cannot open it", -22: "a line is not 'model.scenario.key = number'"}.get(rc, f"error {rc}")
        raise InputError(f"LoadGen rejected the user.conf {path}: {why}")


def loadgen_settings_record(s) -> dict:
    """The TestSettings fields deploykit sets, as plain values (for the report, beside LoadGen's effective ones)."""
    keys = ("min_duration_ms", "max_duration_ms", "min_query_count", "max_query_count", "server_target_qps",
            "server_target_latency_ns", "server_target_latency_percentile", "server_max_async_queries",
            "server_find_peak_qps_decimals_of_precision", "server_find_peak_qps_boundary_step_size",
            "offline_expected_qps", "single_stream_expected_latency_ns", "single_stream_target_latency_percentile",
            "multi_stream_expected_latency_ns", "multi_stream_target_latency_percentile",
            "multi_stream_samples_per_query")
    out = {k: getattr(s, k) for k in keys}
    out["scenario"] = str(s.scenario).split(".")[-1]
    out["mode"] = str(s.mode).split(".")[-1]
    return out
