"""deploykit sweep end to end, as subprocesses with real cells (deploykit bench children on real models at 64 px):
a 2x2 sweep (after deploykit peak) interrupted by SIGINT after its first cell and resumed without re-running it,
then compared; a corrupt model file recorded as failed while the sweep finishes; a cell past --cell-timeout
recorded as timeout; LoadGen server cells (deploykit loadgen children) at two QPS, and the report's latency vs QPS
plot drawn from them."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from deploykit.report.results import read_results
from deploykit.runtimes.base import get_runtime
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

FAST = ["--resolution", "64", "--min-time", "0.1", "--max-time", "1", "--min-iters", "20", "--warmup", "2"]
TARGETS = "ort,openvino" if get_runtime("openvino").availability().available else "ort"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One artifact store for the module: each model is exported once, by the first cell that needs it."""
    return {"DEPLOYKIT_MODELS": str(tmp_path_factory.mktemp("sweep-models")), "COLUMNS": "200"}


def _ok_rows(out):
    try:
        df = read_results(out / "results.parquet")
    except Exception:  # not written yet
        return []
    return df[df["status"] == "ok"].to_dict("records")


def test_interrupted_sweep_resumes_without_rerunning_finished_cells_then_compare(tmp_path, env):
    out = tmp_path / "sweep"
    args = ["sweep", "resnet18", "deit_tiny", "-t", TARGETS, *FAST, "-o", str(out)]
    n_cells = 2 * len(TARGETS.split(","))
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not _ok_rows(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: sweep interrupted by SIGINT:") and "--resume" in last, stderr
    assert "Traceback" not in stderr
    done = _ok_rows(out)
    assert 1 <= len(done) < n_cells
    first = {r["cell"]: (r["report"], (out / r["report"]).stat().st_mtime_ns, r["created"]) for r in done}

    resumed = run_cli(*args, "--resume", env=env, timeout=400)
    assert resumed.returncode == 0, resumed.stderr
    ran = [ln for ln in resumed.stderr.splitlines() if ln.startswith("[")]
    assert len(ran) == n_cells - len(done), resumed.stderr  # only the cells left
    assert not any(key in ln for ln in ran for key in first)
    df = read_results(out)
    assert list(df["status"]) == ["ok"] * n_cells
    assert df["cell"].tolist()[0] == "resnet18|ort|fp32|b1|r64|tauto"
    for r in df.to_dict("records"):
        if r["cell"] in first:  # the finished cells were kept, not measured again
            report, mtime, created = first[r["cell"]]
            assert (r["report"], r["created"]) == (report, created)
            assert (out / report).stat().st_mtime_ns == mtime
        assert (out / r["report"]).is_file() and r["p50_ms"] > 0 and r["family"] in ("cnn", "vit")
        # the reports' memory, complexity and efficiency sections (deploykit peak ran before the cells)
        assert r["rss_peak_mb"] > 0 and r["params_m"] > 0 and r["gflops"] > 0
        assert r["peak_kind"] in ("measured", "theoretical") and r["peak_share"] > 0
    assert (out / "cells" / "peak.log").is_file() and "sweep.json" in {f.name for f in out.iterdir()}
    assert "results: " in resumed.stdout and f"{n_cells} ok" in resumed.stdout

    cmp = run_cli("compare", str(out), "--by", "target" if "," in TARGETS else "model", "--json", env=env)
    assert cmp.returncode == 0, cmp.stderr
    result = json.loads(cmp.stdout)
    assert len(result["rows"]) == (2 if "," in TARGETS else 1)
    assert all(len(r["values"]) == len(result["columns"]) for r in result["rows"])
    assert {v["test"] for r in result["rows"] for v in r["values"].values()} <= {"baseline", "bootstrap"}


def test_a_corrupt_model_file_fails_its_cells_and_the_sweep_finishes(tmp_path, env):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    out = tmp_path / "sweep"
    dry = run_cli("sweep", str(bad), "resnet18", *FAST, "-o", str(out), "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert [c["action"] for c in json.loads(dry.stdout)["cells"]] == ["run", "run"] and not out.exists()
    p = run_cli("sweep", str(bad), "resnet18", *FAST, "-o", str(out), "--json", "--no-peak", env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["counts"]["ok"] == 1 and summary["counts"]["failed"] == 1
    failed = next(r for r in summary["rows"] if r["status"] == "failed")
    assert failed["model"] == "corrupt" and "not a valid ONNX file" in failed["reason"]
    assert (out / failed["report"]).name == "bench.log"
    df = read_results(out / "results.csv")
    assert list(df["status"]) == ["failed", "ok"] and df.loc[0, "exit_code"] == 2


def test_a_cell_past_the_cell_timeout_is_recorded_as_timeout(tmp_path, env):
    out = tmp_path / "sweep"
    t0 = time.monotonic()
    p = run_cli("sweep", "resnet18", "--resolution", "64", "--min-time", "60", "--max-time", "60",
                "--cell-timeout", "3", "--no-peak", "-o", str(out), env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 60
    (row,) = read_results(out).to_dict("records")
    assert row["status"] == "timeout" and "cell timeout of 3 s" in row["reason"]
    assert "1 cells: 0 ok, 1 failed (1 timeout)" in p.stdout


def test_server_cells_one_per_qps_and_the_report_plots_latency_vs_qps(tmp_path, env):
    pytest.importorskip("mlperf_loadgen")
    out = tmp_path / "serving"
    study = tmp_path / "serving.toml"  # LoadGen's early-stopping default (690 queries at p99) would take minutes
    study.write_text('[loadgen]\nmin_queries = 20\n\n[[matrix]]\nmodels = ["resnet18"]\ntargets = ["ort"]\n'
                     'resolution = [64]\nthreads = [1]\nscenario = ["server"]\nqps = [5, 10]\n')
    p = run_cli("sweep", "--study", str(study), "--duration", "2", "-o", str(out), "--json", env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["counts"]["ok"] == 2
    assert not (out / "cells" / "peak.log").exists()  # no bench cell to give a share of the peak
    df = read_results(out)
    assert list(df["cell"]) == ["resnet18|ort|fp32|b1|r64|t1|server@qps=5", "resnet18|ort|fp32|b1|r64|t1|server@qps=10"]
    assert list(df["status"]) == ["ok", "ok"] and list(df["scenario"]) == ["server", "server"]
    assert list(df["qps_scheduled"]) == [5.0, 10.0]
    for r in df.to_dict("records"):
        report = json.loads((out / r["report"]).read_text())
        assert report["schema"] == "deploykit.loadgen" and report["settings"]["duration_s"] == 2.0
        lg = report["loadgen"]
        assert r["loadgen_valid"] is lg["valid"] and r["qps_achieved"] == lg["qps_achieved"] > 0
        assert r["p99_ms"] == lg["latency_ms"]["p99"] >= r["p50_ms"] > 0 and r["iterations"] == lg["query_count"]
        assert math.isnan(r["gmacs"]) and math.isnan(r["gflops"]) and r["fidelity"] == "pass"
        assert (out / r["report"]).parent.joinpath("loadgen.log").is_file()
    rep = run_cli("report", str(out), "--plots", str(tmp_path / "plots"), "--n-boot", "100", env=env)
    assert rep.returncode == 0, rep.stderr
    assert "latency_vs_qps" not in rep.stderr  # drawn, not listed among the plots not drawn
    assert (tmp_path / "plots" / "latency_vs_qps.svg").is_file()
    page = (out / "report.html").read_text(encoding="utf-8")
    serving = page[page.index('<h2 id="serving">'):page.index('<h2 id="results">')]
    assert serving.count("<tr>") == 3 and "100 (p99)" in serving  # header + 2 cells; LoadGen's default bound
