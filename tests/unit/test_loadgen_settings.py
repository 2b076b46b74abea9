"""LoadGen settings (deploykit/loadgen/settings.py): validation, and the order deploykit's defaults, the
user.conf file (read by LoadGen itself) and the explicit options are applied in."""

from __future__ import annotations

import pytest

from deploykit.core.errors import InputError, UsageError
from deploykit.loadgen.settings import (OUTSTANDING_FLOOR, Calibration, LoadgenConfig, auto_max_outstanding,
                                        build_test_settings, check_user_conf, loadgen_settings_record,
                                        peak_start_qps)

lg = pytest.importorskip("mlperf_loadgen")

CAL = Calibration(latency_ms=4.0, requests_per_s=500.0, requests=2, seconds=1.0)


@pytest.mark.parametrize("kwargs,needle", [
    ({"scenario": "batch"}, "unknown scenario"),
    ({"scenario": "server", "qps": 0}, "--qps must be a positive"),
    ({"scenario": "server", "qps": float("inf")}, "--qps must be a positive"),
    ({"scenario": "singlestream", "qps": 10}, "--qps applies to"),
    ({"scenario": "multistream", "qps": 10}, "--qps applies to"),
    ({"scenario": "offline", "latency_bound_ms": 10}, "--latency-bound applies to --scenario server only"),
    ({"scenario": "server", "latency_bound_ms": -1}, "--latency-bound must be a positive"),
    ({"scenario": "server", "percentile": 100}, "--percentile must be between"),
    ({"scenario": "offline", "percentile": 90}, "does not apply to --scenario offline"),
    ({"scenario": "server", "duration_s": 0}, "--duration must be a positive"),
    ({"scenario": "server", "min_queries": 0}, "--min-queries must be positive"),
    ({"scenario": "offline", "max_outstanding": 5}, "--max-outstanding applies to --scenario server only"),
    ({"scenario": "server", "samples_per_query": 4}, "--samples-per-query applies to --scenario multistream"),
    ({"scenario": "offline", "find_peak": True}, "does not apply to --scenario offline"),
    ({"scenario": "server", "find_peak": True, "peak_method": "guess"}, "--peak-method must be"),
    ({"scenario": "server", "peak_decimals": 9}, "--peak-decimals must be between"),
])
def test_bad_settings_are_one_line_usage_errors(kwargs, needle):
    with pytest.raises(UsageError, match=needle.replace("-", r"\-").replace("(", r"\(")):
        LoadgenConfig(**kwargs)


def test_defaults_are_loadgens_and_sized_from_the_calibration():
    cfg = LoadgenConfig(scenario="server")
    assert cfg.resolved_percentile() == 99 and cfg.resolved_bound_ms() == 100 and cfg.resolved_duration_s() == 10
    s = build_test_settings(lg, cfg, CAL, model="m")
    assert s.scenario == lg.TestScenario.Server and s.mode == lg.TestMode.PerformanceOnly
    assert s.min_duration_ms == 10000 and s.server_target_latency_ns == 100_000_000
    assert s.server_target_latency_percentile == pytest.approx(0.99)
    assert s.server_target_qps == peak_start_qps(CAL) == 125.0  # a quarter of the calibrated rate
    assert s.server_max_async_queries == auto_max_outstanding(CAL, 100) == 200  # 4 x 500/s x 0.1 s
    assert s.offline_expected_qps == pytest.approx(625)  # 1.25 x the calibrated rate: the run lasts its duration
    assert s.single_stream_expected_latency_ns == 2_000_000
    assert LoadgenConfig(scenario="singlestream").resolved_percentile() == 90
    assert LoadgenConfig(scenario="offline").resolved_percentile() is None
    assert auto_max_outstanding(Calibration(10.0, 5.0, 1, 1.0), 100) == OUTSTANDING_FLOOR


def test_explicit_options_and_mode():
    cfg = LoadgenConfig(scenario="server", qps=42.5, latency_bound_ms=15, percentile=95, duration_s=2.5, min_queries=7,
                        max_outstanding=0, find_peak=True, peak_decimals=2)
    s = build_test_settings(lg, cfg, CAL, model="m")
    assert (s.server_target_qps, s.server_target_latency_ns, s.min_duration_ms, s.min_query_count) == \
        (42.5, 15_000_000, 2500, 7)
    assert s.server_target_latency_percentile == pytest.approx(0.95)
    assert s.server_max_async_queries == 0 and s.server_find_peak_qps_decimals_of_precision == 2
    assert s.mode == lg.TestMode.FindPeakPerformance
    assert build_test_settings(lg, cfg, CAL, model="m", find_peak=False, qps=7.0).mode == lg.TestMode.PerformanceOnly
    assert build_test_settings(lg, cfg, CAL, model="m", qps=7.0).server_target_qps == 7.0
    rec = loadgen_settings_record(s)
    assert rec["scenario"] == "Server" and rec["mode"] == "FindPeakPerformance" and rec["server_target_qps"] == 42.5


def test_user_conf_sits_between_defaults_and_explicit_options(tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("# comment\n*.Server.target_qps = 77\nresnet18.Server.min_duration = 3000\n"
                    "other.Server.min_query_count = 5\n*.Server.target_latency = 30\n*.Server.mode = 1\n")
    s = build_test_settings(lg, LoadgenConfig(scenario="server", user_conf=str(conf)), CAL, model="resnet18")
    assert s.server_target_qps == 77 and s.min_duration_ms == 3000  # the file beats deploykit's defaults
    assert s.server_target_latency_ns == 30_000_000
    assert s.min_query_count == 690  # a key for another model does not apply (the early-stopping default at p99)
    assert s.mode == lg.TestMode.PerformanceOnly  # the file cannot switch to accuracy mode
    # only the file: LoadGen's mlperf.conf (10-minute runs) is not loaded
    assert s.max_duration_ms == 0 and s.min_duration_ms != 600000
    s = build_test_settings(lg, LoadgenConfig(scenario="server", user_conf=str(conf), qps=5, duration_s=1), CAL,
                            model="resnet18")
    assert s.server_target_qps == 5 and s.min_duration_ms == 1000  # the explicit options beat the file


@pytest.mark.parametrize("text,needle", [
    ("*.Server.target_qps = fast\n", "line 1: LoadGen needs a number"),
    ("# ok\nnot a setting\n", "line 2: LoadGen expects"),
    ("*.Server.target_qps =\n", "line 1: no value"),
    ("*.Server.target_qps = 5 # trailing\n", "line 1: LoadGen needs a number"),  # LoadGen rejects it too
])
def test_a_user_conf_loadgen_would_reject_is_named_before_any_work(tmp_path, text, needle):
    conf = tmp_path / "user.conf"
    conf.write_text(text)
    with pytest.raises(InputError, match=needle):
        check_user_conf(str(conf))
    with pytest.raises(InputError, match=needle):
        LoadgenConfig(scenario="server", user_conf=str(conf))
    s = lg.TestSettings()
    assert s.FromConfig(str(conf), "m", "Server", 2) != 0 or "no value" in needle  # LoadGen agrees


def test_missing_user_conf(tmp_path):
    with pytest.raises(InputError, match="user.conf not found"):
        LoadgenConfig(scenario="server", user_conf=str(tmp_path / "nope.conf"))


def test_record_is_what_was_asked():
    rec = LoadgenConfig(scenario="multistream", samples_per_query=4, seed=3).record()
    assert rec["scenario"] == "multistream" and rec["samples_per_query"] == 4 and rec["percentile"] == 99
    assert rec["latency_bound_ms"] is None and rec["duration_s"] == 10 and rec["peak_method"] is None


def test_the_default_min_queries_lets_early_stopping_pass_at_the_percentile():
    """A first try (`loadgen --scenario server --qps 20 --duration 5`) asks for enough queries that LoadGen's early
    stopping can be met at p99 (459 with no late query: 0.99^459 <= 1%), with room for a few late ones."""
    from deploykit.spec.loadgen import default_min_queries

    assert [default_min_queries(p) for p in (90, 95, 99)] == [100, 140, 690]
    assert 0.99 ** 459 <= 0.01 < 0.99 ** 458
    s = build_test_settings(lg, LoadgenConfig(scenario="server", qps=20, duration_s=5), CAL, model="m")
    assert s.min_query_count == 690
    s = build_test_settings(lg, LoadgenConfig(scenario="server", qps=20, min_queries=50), CAL, model="m")
    assert s.min_query_count == 50  # an explicit --min-queries wins


def test_a_scheduled_qps_that_differs_from_the_asked_one_is_explained():
    from deploykit.report.loadgen import qps_note

    lg_section = {"scenario": "Server", "qps_scheduled": 18.514, "query_count": 100,
                  "effective_settings": {"target_qps": 20.0}}
    note = qps_note(lg_section)
    assert note.startswith("QPS scheduled 18.514 for 20 asked: LoadGen draws Poisson arrival times")
    assert "about +-10% over 100 queries" in note
    assert qps_note({**lg_section, "qps_scheduled": 20.02}) is None
    assert qps_note({**lg_section, "scenario": "Offline"}) is None
