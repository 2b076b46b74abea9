"""deploykit/report/results.py: rows from reports (hand-built, schema-valid: benchmark and LoadGen reports), failure
rows, the table written as Parquet and CSV and read back, and reports read straight from files and folders."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from deploykit.core.errors import InputError
from deploykit.report import results as res
from tests.sample_reports import make_loadgen_report, make_report, samples, write_report


def test_row_from_a_bench_report_has_the_contract_columns_and_nan_for_what_is_missing():
    r = make_report(samples(10.0), model="deit_tiny", family="vit", target="openvino", resolution=96)
    row = res.row_from_report(r, report_path="cells/x/r.json")
    assert list(row) == res.COLUMN_NAMES
    assert row["cell"] == "deit_tiny|openvino|fp32|b1|r96|t2"
    assert (row["model"], row["family"], row["target"], row["precision"], row["batch"], row["resolution"],
            row["threads"], row["scenario"]) == ("deit_tiny", "vit", "openvino", "fp32", 1, 96, 2, "latency")
    assert row["status"] == "ok" and row["reason"] == "" and row["exit_code"] == 0
    assert row["p50_ms"] == pytest.approx(r["stats"]["p50"])
    assert [row["ci_low_ms"], row["ci_high_ms"]] == pytest.approx(r["stats"]["median_ci95"])
    assert row["cv_pct"] == pytest.approx(100 * r["stats"]["cv"])
    assert row["iterations"] == 200 and row["fidelity"] == "pass"
    assert row["report"] == "cells/x/r.json" and row["git_rev"] == "f" * 40
    # no memory / complexity / efficiency / energy sections: NaN, never 0
    for col in ("params_m", "gmacs", "gflops", "peak_share", "rss_peak_mb", "artifact_mb", "j_per_item",
                "qps_achieved"):
        assert math.isnan(row[col]), col
    assert row["peak_kind"] == ""


def test_optional_sections_fill_memory_model_efficiency_and_measured_energy_only():
    extra = {
        "memory": {"rss_before_load_mb": 100.0, "rss_after_load_mb": 150.0, "rss_peak_mb": 210.5,
                   "rss_increase_mb": 110.5, "gpu_peak_mb": None, "gpu_method": None, "artifact_mb": 44.6,
                   "method": "VmHWM"},
        "efficiency": {"gflops": 120.0, "precision": "fp32", "peak_measured_gflops": None,
                       "peak_theoretical_gflops": 300.0, "share_of_measured": None, "share_of_theoretical": 0.4,
                       "peak_source": "isa"},
        "energy": {"status": "estimated", "reasons": [], "domains": [
            _domain("const", joules=5.0, j_per_inference=0.05, estimated=True)]},
    }
    r = make_report(samples(5.0), extra=extra)
    r["model"]["complexity"] = {"params": 11_689_512, "macs": 148_000_000, "macs_attention": 0, "source": "test"}
    row = res.row_from_report(r)
    assert row["rss_peak_mb"] == 210.5 and row["rss_increase_mb"] == 110.5 and row["artifact_mb"] == 44.6
    assert math.isnan(row["gpu_peak_mb"])
    assert row["params_m"] == pytest.approx(11.689512) and row["gmacs"] == pytest.approx(0.148)
    assert row["gmacs_attention"] == 0.0  # a real zero (no attention) stays zero
    assert (row["gflops"], row["peak_share"], row["peak_kind"]) == (120.0, 0.4, "theoretical")
    assert math.isnan(row["j_per_item"])  # an estimate is not a measurement
    r["energy"]["domains"].append(_domain("rapl", joules=2.0, j_per_inference=0.02, estimated=False))
    r["efficiency"]["share_of_measured"] = 0.8
    row = res.row_from_report(r)
    assert row["j_per_item"] == 0.02 and (row["peak_share"], row["peak_kind"]) == (0.8, "measured")


def _domain(name, **kw):
    return {"name": name, "scope": "package", "method": "test", "inferences_per_j": 20.0, "avg_power_w": 10.0,
            "idle_power_w": None, **kw}


def test_the_sweep_cell_names_the_row_and_the_executor_fills_the_run_columns():
    r = make_report(samples(3.0), model="parc_net_s", family="parc", threads=None, options={"parc_impl": "fft"})
    cell = {"cell": "parc_net_s|ort|fp32|b1|r64|t1|parc_impl=fft", "model": "parc_net_s",
            "model_options": "parc_impl=fft", "family": "parc", "target": "ort", "precision": "fp32", "batch": 1,
            "resolution": 64, "threads": 1, "scenario": "latency"}
    row = res.row_from_report(r, cell, run={"wall_s": 12.5, "host": "h", "node": "h", "executor": "local"})
    assert row["cell"] == cell["cell"] and row["threads"] == 1 and row["model_options"] == "parc_impl=fft"
    assert (row["wall_s"], row["host"], row["executor"]) == (12.5, "h", "local")
    # without a cell: the threads the target reported, the options the export recorded
    row = res.row_from_report(r)
    assert row["threads"] == 2 and row["cell"] == "parc_net_s|ort|fp32|b1|r64|t2|parc_impl=fft"


def test_reports_of_another_schema_need_their_row_builder():
    with pytest.raises(InputError, match=r"'deploykit.test-kind' \(known: deploykit.loadgen, deploykit.report\)"):
        res.row_from_report({"schema": "deploykit.test-kind"})
    res.register_row_builder("deploykit.test-kind", lambda rep: {**res.empty_row(), "model": rep["m"],
                                                                  "target": "ort", "precision": "fp32", "batch": 1,
                                                                  "scenario": "server", "status": "ok"})
    try:
        row = res.row_from_report({"schema": "deploykit.test-kind", "m": "x"})
        assert row["scenario"] == "server" and row["cell"] == "x|ort|fp32|b1|rauto|tauto|server"
    finally:
        res._ROW_BUILDERS.pop("deploykit.test-kind")


def test_failed_rows_carry_status_reason_and_exit_code():
    cell = {"cell": "m|ort|fp32|b1|r64|tauto", "model": "m", "model_options": "", "family": "", "target": "ort",
            "precision": "fp32", "batch": 1, "resolution": 64, "threads": None, "scenario": "latency"}
    row = res.failed_row(cell, "killed", "killed by SIGKILL\n(possibly out of memory)", exit_code=-9)
    assert (row["status"], row["reason"], row["exit_code"]) == ("killed", "killed by SIGKILL (possibly out of memory)",
                                                                -9)
    assert math.isnan(row["p50_ms"]) and row["threads"] is None and row["cell"] == cell["cell"]
    with pytest.raises(ValueError):
        res.failed_row(cell, "ok", "")


def test_table_round_trips_through_parquet_and_csv(tmp_path):
    ok = res.row_from_report(make_report(samples(10.0)), report_path="cells/a/r.json")
    bad = res.failed_row({"model": "broken", "target": "ort", "precision": "int8", "batch": 1, "resolution": 64,
                          "threads": None, "scenario": "latency"}, "failed", "not a valid ONNX file", exit_code=2)
    pq, csv = res.write_results([ok, bad], tmp_path / "sweep")
    assert pq.name == "results.parquet" and csv.name == "results.csv"
    assert not [p for p in (tmp_path / "sweep").iterdir() if p.name.startswith(".dk-tmp")]
    for source in (pq, csv, tmp_path / "sweep"):
        df = res.read_results(source)
        assert list(df.columns) == res.COLUMN_NAMES and len(df) == 2
        assert str(df["batch"].dtype) == "Int64" and str(df["p50_ms"].dtype) == "float64"
        assert df.loc[0, "p50_ms"] == pytest.approx(ok["p50_ms"], rel=1e-5)
        assert df.loc[1, "status"] == "failed" and df.loc[1, "reason"] == "not a valid ONNX file"
        assert pd.isna(df.loc[1, "threads"]) and math.isnan(df.loc[1, "p50_ms"])
        assert df.loc[1, "cell"] == "broken|ort|int8|b1|r64|tauto" and df.loc[0, "model_options"] == ""
    # the CSV is rounded for people, the Parquet file keeps every digit
    assert res.read_results(pq).loc[0, "p50_ms"] == ok["p50_ms"]
    assert len(csv.read_text().splitlines()[1].split(",")) == len(res.COLUMN_NAMES)


def test_absolute_report_paths_resolve_against_the_table_folder(tmp_path):
    res.write_results([res.row_from_report(make_report(samples(1.0)), report_path="cells/a/r.json")], tmp_path)
    df = res.read_results(tmp_path / "results.csv", absolute_reports=True)
    assert df.loc[0, "report"] == str((tmp_path / "cells/a/r.json").resolve())


def test_bare_reports_and_folders_of_them_become_rows(tmp_path):
    a = write_report(tmp_path / "runs" / "a.json", make_report(samples(10.0), target="ort"))
    write_report(tmp_path / "runs" / "deeper" / "b.json", make_report(samples(8.0), target="openvino"))
    (tmp_path / "runs" / "notes.json").write_text('{"not": "a report"}')
    (tmp_path / "runs" / "sweep.json").write_text('{"schema": "deploykit.sweep", "spec": {}}')  # another kind
    df = res.read_results(tmp_path / "runs")
    assert sorted(df["target"]) == ["openvino", "ort"]
    assert sorted(df["report"]) == ["a.json", "deeper/b.json"]
    both = res.read_results(a, tmp_path / "runs", absolute_reports=True)
    assert len(both) == 3 and both.loc[0, "report"] == str(a.resolve())


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        res.read_results(tmp_path / "nope.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no results table"):
        res.read_results(tmp_path / "empty")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(InputError, match="not a readable results table"):
        res.read_results(tmp_path / "bad.parquet")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a deploykit results table"):
        res.read_results(tmp_path / "other.csv")
    (tmp_path / "broken.json").write_text('{"schema": "deploykit.report", ')
    with pytest.raises(InputError, match="not valid JSON"):
        res.read_results(tmp_path / "broken.json")
    r = make_report(samples(1.0))
    del r["stats"]
    write_report(tmp_path / "invalid.json", r)
    with pytest.raises(InputError, match="schema"):
        res.read_results(tmp_path / "invalid.json")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(InputError, match="expected a results table"):
        res.read_results(tmp_path / "x.txt")


# ------------------------------------------------------------------------------------------ LoadGen reports

MEMORY = {"rss_before_load_mb": 100.0, "rss_after_load_mb": 150.0, "rss_peak_mb": 180.0, "rss_increase_mb": 80.0,
          "gpu_peak_mb": None, "gpu_method": None, "artifact_mb": 44.6, "method": "VmHWM"}


def test_row_from_a_loadgen_report_uses_loadgens_numbers_and_nan_for_the_model_columns():
    from deploykit.report.loadgen import results_fields

    r = make_loadgen_report(samples(6.0, n=300), qps=20.0, achieved=19.1, valid=False, memory=MEMORY,
                            model="deit_tiny", family="vit", target="openvino", resolution=96)
    row = res.row_from_report(r, report_path="cells/x/r.json")
    assert list(row) == res.COLUMN_NAMES
    assert row["cell"] == "deit_tiny|openvino|fp32|b1|r96|t2|server@qps=20"
    assert (row["model"], row["family"], row["target"], row["precision"], row["batch"], row["resolution"],
            row["threads"], row["scenario"]) == ("deit_tiny", "vit", "openvino", "fp32", 1, 96, 2, "server")
    assert (row["status"], row["reason"], row["exit_code"]) == ("ok", "", 0)  # INVALID is a result, not a failure
    fields = results_fields(r)
    for col in ("p50_ms", "ci_low_ms", "ci_high_ms", "p90_ms", "p99_ms", "mean_ms", "cv_pct", "items_per_s",
                "iterations", "fidelity", "qps_achieved", "loadgen_valid", "rss_peak_mb", "artifact_mb"):
        assert row[col] == fields[col], col
    assert row["p99_ms"] == r["loadgen"]["latency_ms"]["p99"] and row["iterations"] == 300
    assert (row["qps_achieved"], row["loadgen_valid"], row["items_per_s"]) == (19.1, False, 19.1)
    # scheduled: the rate LoadGen was asked for (the cell's), not its Poisson draw's realised rate
    assert row["qps_scheduled"] == 20.0 and r["loadgen"]["qps_scheduled"] == pytest.approx(19.4)
    for col in ("params_m", "gmacs", "gmacs_attention", "gflops", "peak_share", "j_per_item", "gpu_peak_mb"):
        assert math.isnan(row[col]), col
    assert row["peak_kind"] == "" and row["git_rev"] == "f" * 40 and row["report"] == "cells/x/r.json"


def test_loadgen_rows_of_the_other_scenarios_and_in_a_table(tmp_path):
    offline = make_loadgen_report(samples(40.0, n=1), scenario="offline", qps=None)
    single = make_loadgen_report(samples(5.0, n=200), scenario="singlestream", qps=None, percentile=90.0)
    rows = [res.row_from_report(r) for r in (offline, single)]
    assert [r["cell"] for r in rows] == ["resnet18|ort|fp32|b1|r64|t2|offline",
                                         "resnet18|ort|fp32|b1|r64|t2|singlestream"]
    assert all(math.isnan(r["qps_scheduled"]) and r["qps_achieved"] > 0 for r in rows)
    # a sweep cell names the row: its key, and its QPS even where the report had none
    cell = {"cell": "resnet18|ort|fp32|b1|r64|tauto|server@qps=5", "model": "resnet18", "target": "ort",
            "precision": "fp32", "batch": 1, "resolution": 64, "threads": None, "scenario": "server",
            "qps_scheduled": 5.0}
    server = res.row_from_report(make_loadgen_report(samples(5.0), qps=5.0), cell)
    assert server["cell"] == cell["cell"] and server["qps_scheduled"] == 5.0
    failed = res.failed_row(cell, "failed", "target trt cannot keep requests in flight", exit_code=2)
    assert (failed["scenario"], failed["qps_scheduled"], failed["cell"]) == ("server", 5.0, cell["cell"])
    df = res.read_results(*res.write_results(rows + [server, failed], tmp_path)[:1])
    assert list(df["scenario"]) == ["offline", "singlestream", "server", "server"]
    assert df["loadgen_valid"].iloc[:3].tolist() == [True, True, True] and pd.isna(df.loc[3, "loadgen_valid"])
    assert df.loc[2, "qps_scheduled"] == 5.0 and df.loc[3, "status"] == "failed"


def test_loadgen_reports_read_from_files_are_validated_against_their_schema(tmp_path):
    good = write_report(tmp_path / "runs" / "lg.json", make_loadgen_report(samples(5.0), qps=8.0))
    write_report(tmp_path / "runs" / "bench.json", make_report(samples(4.0)))
    df = res.read_results(tmp_path / "runs")
    assert sorted(df["scenario"]) == ["latency", "server"]
    assert res.load_report(good)["schema"] == "deploykit.loadgen"
    broken = make_loadgen_report(samples(5.0))
    del broken["loadgen"]["valid"]
    write_report(tmp_path / "broken.json", broken)
    with pytest.raises(InputError, match="does not match the LoadGen report schema"):
        res.read_results(tmp_path / "broken.json")
    with pytest.raises(InputError, match="does not match the LoadGen report schema"):
        res.load_report(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text('{"schema": "deploykit.sweep"}')
    with pytest.raises(InputError, match="not a deploykit report of a kind with results rows"):
        res.load_report(tmp_path / "other.json")
