"""Reading LoadGen's logs (deploykit/loadgen/logs.py) against logs real LoadGen writes at test time.

The logs come from short real LoadGen runs whose system under test sleeps a few ms per sample (the parser is
what is tested, not a model): the summary and the detail log must tell the same story, the trace must hold
exactly the samples LoadGen counted, and LoadGen's own percentiles must be recomputable from the trace with
LoadGen's rule -- which pins down both the trace reader and ``stats.loadgen_percentile``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from deploykit.bench.stats import loadgen_percentile
from deploykit.loadgen import logs
from deploykit.loadgen.peak import search_peak

lg = pytest.importorskip("mlperf_loadgen")

SLEEP_S = 0.003


def _run(folder, scenario, *, mode="PerformanceOnly", duration_ms=400, min_queries=20, **settings):
    """One real LoadGen test against a SUT that sleeps SLEEP_S per sample on 2 worker threads."""
    pool = ThreadPoolExecutor(2)
    lock = threading.Lock()

    def work(sample):
        time.sleep(SLEEP_S)
        with lock:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(sample.id, 0, 0)])

    def issue(samples):
        for s in samples:
            pool.submit(work, s)

    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, scenario)
    s.mode = getattr(lg.TestMode, mode)
    s.min_duration_ms = duration_ms
    s.min_query_count = min_queries
    s.single_stream_expected_latency_ns = int(SLEEP_S * 1e9)
    s.multi_stream_expected_latency_ns = int(4 * SLEEP_S * 1e9)
    s.offline_expected_qps = 400
    for k, v in settings.items():
        setattr(s, k, v)
    out = lg.LogOutputSettings()
    out.outdir = str(folder)
    out.copy_summary_to_stdout = False
    ls = lg.LogSettings()
    ls.log_output = out
    ls.enable_trace = True
    folder.mkdir(parents=True)
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(64, 64, lambda ids: None, lambda ids: None)
    try:
        lg.StartTestWithLogSettings(sut, qsl, s, ls, str(folder / "no-audit.config"))
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
        pool.shutdown()
    detail, summary = logs.read_run(folder)
    trace = logs.parse_trace_samples((folder / logs.TRACE).read_text())
    return detail, summary, trace


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("loadgen-logs")
    return {
        "single": _run(root / "single", "SingleStream"),
        "server": _run(root / "server", "Server", server_target_qps=100, server_target_latency_ns=int(200e6),
                       server_target_latency_percentile=0.9),
        "overload": _run(root / "overload", "Server", server_target_qps=100000, server_max_async_queries=50,
                         server_target_latency_ns=int(20e6)),
        "offline": _run(root / "offline", "Offline"),
        "multi": _run(root / "multi", "MultiStream", multi_stream_samples_per_query=4),
        "peak": _run(root / "peak", "Server", mode="FindPeakPerformance", duration_ms=150, min_queries=10,
                     server_target_qps=50, server_target_latency_ns=int(40e6),
                     server_find_peak_qps_decimals_of_precision=0),
    }


@pytest.mark.parametrize("name", ["single", "server", "overload", "offline", "multi"])
def test_summary_and_detail_tell_the_same_story(runs, name):
    detail, summary, _ = runs[name]
    sec = logs.result_section(detail, summary)
    assert sec["result"] == summary["result"] in ("VALID", "INVALID")
    assert sec["valid"] is (summary["result"] == "VALID")
    names = {"min_duration": "Min duration satisfied", "min_queries": "Min queries satisfied",
             "early_stopping": "Early stopping satisfied", "performance": "Performance constraints satisfied"}
    for key, line in names.items():
        if line in summary["constraints"]:
            assert sec["constraints"][key] is summary["constraints"][line], key
    assert sec["version"] and sec["mode"] == "PerformanceOnly"
    lat = sec["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert lat["min"] >= SLEEP_S * 1e3 * 0.9  # LoadGen's clock saw at least the SUT's sleep
    assert sec["query_count"] >= 1
    assert sec["valid"] or sec["reasons"]  # INVALID always says why


def test_trace_holds_every_sample_and_reproduces_loadgens_percentiles(runs):
    for name in ("single", "server", "overload", "offline"):
        detail, _, trace = runs[name]
        sec = logs.result_section(detail)
        n_samples = sec["query_count"] * (sec["samples_per_query"] or 1)
        assert len(trace) == n_samples, name
        assert [t["sample_seq"] for t in trace] == sorted(t["sample_seq"] for t in trace)
        ms = [t["complete_ns"] / 1e6 for t in trace]
        for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
            assert loadgen_percentile(ms, q) == pytest.approx(sec["latency_ms"][key], abs=1e-6), (name, key)
        assert max(ms) == pytest.approx(sec["latency_ms"]["max"], abs=1e-6)
        assert all(0 <= t["issue_start_ns"] <= t["complete_ns"] for t in trace)


def test_multistream_query_latency_is_the_last_sample_of_the_query(runs):
    detail, summary, trace = runs["multi"]
    sec = logs.result_section(detail, summary)
    assert sec["scenario"] == "MultiStream" and sec["samples_per_query"] == 4
    assert sec["latency_basis"].startswith("per query")
    assert len(trace) == 4 * sec["query_count"]
    q = [v / 1e6 for v in logs.query_latencies_ns(trace)]
    assert len(q) == sec["query_count"]
    for key, p in (("p50", 50), ("p99", 99)):
        assert loadgen_percentile(q, p) == pytest.approx(sec["latency_ms"][key], abs=1e-6)
    samples = [t["complete_ns"] / 1e6 for t in trace]
    assert loadgen_percentile(samples, 50) == pytest.approx(sec["sample_latency_ms"]["p50"], abs=1e-6)


def test_rates_and_target_per_scenario(runs):
    single = logs.result_section(runs["single"][0])
    assert single["qps_scheduled"] is None and single["qps_achieved"] > 0
    assert single["target"]["percentile"] == 90 and single["target"]["latency_bound_ms"] is None
    server = logs.result_section(runs["server"][0])
    assert server["target"] == {"percentile": 90, "latency_bound_ms": 200.0,
                                "latency_at_percentile_ms": server["latency_ms"]["p90"]}
    assert server["qps_scheduled"] == pytest.approx(100, rel=0.35) and server["qps_achieved"] > 0
    offline = logs.result_section(runs["offline"][0])
    assert offline["qps_scheduled"] == 400 and offline["qps_achieved"] > 0
    assert offline["samples_per_query"] == offline["effective_settings"]["samples_per_query"] > 1


def test_overload_is_invalid_with_every_reason(runs):
    detail, summary, _ = runs["overload"]
    sec = logs.result_section(detail, summary)
    assert sec["valid"] is False and sec["constraints"]["performance"] is False
    text = " | ".join(sec["reasons"])
    assert "latency constraint not met: 99th percentile latency" in text and "exceeds the 20 ms bound" in text
    assert "Too many outstanding queries" in text  # LoadGen's own error: it stopped issuing at the cap
    assert "LoadGen recommends: Reduce target QPS to improve latency." in sec["reasons"]
    assert any("Too many outstanding queries" in e for e in sec["errors"])
    assert sec["early_stopping"]["met"] is False and sec["early_stopping"]["lines"][0] == "Run unsuccessful."


def test_summary_parser_reads_recommendations_and_wrapped_lines():
    text = """================================================
MLPerf Results Summary
================================================
SUT name : PySUT
Scenario : Server
Result is : INVALID
  Performance constraints satisfied : NO
  Min duration satisfied : Yes
  Min queries satisfied : Yes
  Early stopping satisfied: NO
Recommendations:
 * Reduce target QPS to improve latency.
Early Stopping Result:
 * Run unsuccessful.
 * Would need to run at least 405 more queries,
 with the run being successful if every additional
 query were under latency.

================================================
Additional Stats
================================================
Scheduled samples per second : 50.75
"""
    s = logs.parse_summary(text)
    assert s["result"] == "INVALID" and s["fields"]["Scenario"] == "Server"
    assert s["constraints"] == {"Performance constraints satisfied": False, "Min duration satisfied": True,
                                "Min queries satisfied": True, "Early stopping satisfied": False}
    assert s["recommendations"] == ["Reduce target QPS to improve latency."]
    assert s["early_stopping"][1] == ("Would need to run at least 405 more queries, with the run being successful "
                                      "if every additional query were under latency.")
    assert s["fields"]["Scheduled samples per second"] == "50.75"


def test_detail_parser_skips_what_is_not_a_record():
    d = logs.parse_detail('junk\n:::MLLOG {"key": "a", "value": 1, "metadata": {"is_error": true}}\n'
                          ':::MLLOG {not json}\n:::MLLOG {"key": "a", "value": 2}\n')
    assert d.values("a") == [1, 2] and d.last("a") == 2 and d.last("b", "x") == "x"
    assert d.errors == ["1"] and d.warnings == []


def test_find_peak_steps_replay_loadgens_own_search(runs):
    """The verdicts read back from LoadGen's FindPeakPerformance messages, fed to deploykit's search as its
    oracle, make deploykit try exactly the QPS values LoadGen tried and find the same peak."""
    detail, _, trace = runs["peak"]
    steps, peak, failure = logs.peak_steps_from_detail(detail)
    if failure is not None:  # a machine so loaded that even the base QPS misses the bound: said so, no peak
        assert "Initial lower bound does not satisfy" in failure and peak is None, detail.messages
        return
    assert peak is not None, detail.messages
    assert steps[0]["phase"] == "base" and steps[0]["qps"] == 50
    assert [s["phase"] for s in steps[1:]] == sorted((s["phase"] for s in steps[1:]), key=["widen", "bisect"].index)
    assert all(s["met"] in (True, False) for s in steps)
    verdicts = {round(s["qps"], 6): s["met"] for s in steps}
    replay = search_peak(lambda q: verdicts[round(q, 6)], 50, step_size=1.0, decimals=0)
    assert [(s["phase"], round(s["qps"], 6), s["met"]) for s in replay.steps] == \
        [(s["phase"], round(s["qps"], 6), s["met"]) for s in steps]
    assert replay.peak_qps == pytest.approx(peak, abs=1e-6)
    # LoadGen's final summary is the run at the peak
    assert logs.result_section(detail)["mode"] == "FindPeakPerformance"
    assert len(trace) >= sum(10 for _ in steps)  # every step's samples are in the one trace


def test_find_peak_start_failure_is_read(tmp_path):
    detail, _, _ = _run(tmp_path / "fail", "Server", mode="FindPeakPerformance", duration_ms=100, min_queries=10,
                        server_target_qps=100000, server_target_latency_ns=int(1e6), server_max_async_queries=20)
    steps, peak, failure = logs.peak_steps_from_detail(detail)
    assert peak is None and steps == [{"phase": "base", "qps": 100000.0, "met": False}]
    assert "Initial lower bound does not satisfy performance constraints" in failure
