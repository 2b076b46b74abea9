"""deploykit/sweep/executor.py: the local executor runs each cell as a real child process in its own process
group and turns how it ended into a row: ok (from the report it wrote), failed (its last stderr line), killed (by a
signal; SIGKILL named as a possible out-of-memory kill), timeout (its whole group killed). The children here are
small Python programs standing in for ``deploykit bench`` (the executor's ``command`` hook); the integration tests
run the real one."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from deploykit.sweep.executor import EXECUTORS, LocalExecutor, classify, last_line, make_executor
from deploykit.sweep.spec import BenchSettings, Cell
from tests.sample_reports import make_loadgen_report, make_report, samples

CELL = Cell(model="resnet18", target="ort", precision="fp32", batch=1, resolution=64, label="resnet18", family="cnn")


def program(code: str):
    """A ``command`` hook: the cell's child runs ``code`` with its report folder as sys.argv[1]."""
    return lambda cell, report_dir: [sys.executable, "-c", code, str(report_dir)]


def run(tmp_path, code: str, timeout: float = 60, cell: Cell = CELL) -> dict:
    ex = LocalExecutor(BenchSettings(cell_timeout=timeout), tmp_path / "sweep", command=program(code))
    (row,) = list(ex.run([cell]))
    return row


def test_a_cell_that_writes_its_report_is_ok_and_its_row_comes_from_the_report(tmp_path):
    report = make_report(samples(7.0), resolution=64)
    src = tmp_path / "staged.json"
    src.write_text(json.dumps(report))
    started = []
    ex = LocalExecutor(BenchSettings(), tmp_path / "sweep", on_start=started.append, command=program(
        f"import shutil, sys; print('measuring', file=sys.stderr); shutil.copy({str(src)!r}, sys.argv[1] + '/r.json')"))
    (row,) = list(ex.run([CELL]))
    assert started == [CELL]
    assert row["status"] == "ok" and row["reason"] == "" and row["exit_code"] == 0
    assert row["cell"] == CELL.key and row["p50_ms"] == pytest.approx(report["stats"]["p50"])
    assert row["report"] == f"cells/{CELL.safe_key}/r.json"
    assert row["executor"] == "local" and row["host"] and row["job_id"] == "" and row["wall_s"] > 0
    assert (tmp_path / "sweep" / "cells" / CELL.safe_key / "bench.log").read_text() == "measuring\n"


def test_a_loadgen_cell_is_ok_from_its_loadgen_report_and_logs_to_loadgen_log(tmp_path):
    cell = Cell(model="resnet18", target="ort", resolution=64, label="resnet18", family="cnn", scenario="server",
                qps=5.0)
    report = make_loadgen_report(samples(4.0), qps=5.0, valid=False, resolution=64)
    src = tmp_path / "staged.json"
    src.write_text(json.dumps(report))
    cdir = tmp_path / "sweep" / "cells" / cell.safe_key
    (row,) = list(LocalExecutor(BenchSettings(), tmp_path / "sweep", command=program(
        f"import shutil, sys; print('LoadGen Server at 5 QPS', file=sys.stderr); "
        f"shutil.copy({str(src)!r}, sys.argv[1] + '/lg.json')")).run([cell]))
    assert (row["status"], row["cell"], row["scenario"], row["qps_scheduled"]) == ("ok", cell.key, "server", 5.0)
    assert row["loadgen_valid"] is False and row["p99_ms"] == report["loadgen"]["latency_ms"]["p99"]
    assert row["report"] == f"cells/{cell.safe_key}/lg.json"
    assert (cdir / "loadgen.log").read_text() == "LoadGen Server at 5 QPS\n" and not (cdir / "bench.log").exists()
    row = run(tmp_path, "import sys; print('error: target x cannot serve', file=sys.stderr); sys.exit(2)", cell=cell)
    assert (row["status"], row["reason"], row["report"]) == ("failed", "target x cannot serve",
                                                             f"cells/{cell.safe_key}/loadgen.log")
    assert (row["scenario"], row["qps_scheduled"]) == ("server", 5.0)
    row = run(tmp_path, "pass", cell=cell)
    assert "deploykit loadgen exited 0 but wrote no report" in row["reason"]


def test_a_failing_cell_records_its_last_stderr_line_and_exit_code(tmp_path):
    row = run(tmp_path, "import sys; print('exporting', file=sys.stderr); "
                        "print('error: model.onnx is not a valid ONNX file', file=sys.stderr); sys.exit(2)")
    assert (row["status"], row["reason"], row["exit_code"]) == ("failed", "model.onnx is not a valid ONNX file", 2)
    assert row["report"] == f"cells/{CELL.safe_key}/bench.log"
    assert row["model"] == "resnet18" and row["resolution"] == 64 and row["git_rev"] is not None
    row = run(tmp_path, "raise SystemExit(5)")
    assert row["reason"] == "exit code 5 with no message"
    row = run(tmp_path, "pass")  # exit 0 without a report
    assert row["status"] == "failed" and "wrote no report" in row["reason"]


def test_a_cell_killed_by_a_signal_is_killed_and_sigkill_is_named_a_possible_oom(tmp_path):
    row = run(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert (row["status"], row["reason"], row["exit_code"]) == ("killed", "killed by SIGKILL (possibly out of memory)",
                                                                -9)
    row = run(tmp_path, "import os, signal, sys; print('in the OpenVINO plugin', file=sys.stderr); sys.stderr.flush(); "
                        "os.kill(os.getpid(), signal.SIGSEGV)")
    assert (row["status"], row["reason"]) == ("killed", "killed by SIGSEGV: in the OpenVINO plugin")


def test_a_cell_past_its_timeout_is_killed_with_everything_it_started(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    t0 = time.monotonic()
    row = run(tmp_path, timeout=1.5, code=(
        "import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); "
        f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)"))
    assert time.monotonic() - t0 < 20
    assert row["status"] == "timeout" and row["exit_code"] is None
    assert row["reason"] == "no result within the cell timeout of 1.5 s (killed)"
    assert 1.4 < row["wall_s"] < 20
    assert not _alive(int(pidfile.read_text()))  # the child's own child went with its process group


def _alive(pid: int) -> bool:
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("Z", "X"):  # killed; waiting for its new parent to reap it
            return False
        time.sleep(0.1)
    return True


def test_rerunning_a_cell_starts_from_an_empty_folder(tmp_path):
    cdir = tmp_path / "sweep" / "cells" / CELL.safe_key
    cdir.mkdir(parents=True)
    (cdir / "old-report.json").write_text("{}")
    (cdir / "leftover").mkdir()
    row = run(tmp_path, "import sys; sys.exit(1)")
    assert row["status"] == "failed" and sorted(p.name for p in cdir.iterdir()) == ["bench.log", "spec.json"]


def test_executors_are_a_registry_and_the_prelude_runs_deploykit_commands(tmp_path):
    assert "local" in EXECUTORS.names()
    ex = make_executor("local", BenchSettings(), tmp_path / "s")
    assert isinstance(ex, LocalExecutor)
    ok, why = ex.prelude(["no-such-command"], timeout=120)  # a real deploykit child: an unknown command
    assert not ok and "no-such-command" in why
    assert (tmp_path / "s" / "cells" / "no-such-command.log").is_file()


def test_classify_and_last_line(tmp_path):
    log = tmp_path / "log"
    log.write_text("a\n\nerror: the last words  \n\n")
    assert last_line(log) == "the last words"
    assert last_line(tmp_path / "none") == ""
    assert classify(0, False, log, 5) == ("ok", "")
    assert classify(3, False, log, 5) == ("failed", "the last words")
    assert classify(None, True, log, 5)[0] == "timeout"
    assert classify(-15, False, log, 5) == ("killed", "killed by SIGTERM: the last words")


def test_children_import_the_deploykit_the_sweep_runs_from(monkeypatch):
    import deploykit
    from deploykit.sweep.executor import child_env

    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = child_env()
    assert env["PYTHONPATH"].split(os.pathsep) == [str(Path(deploykit.__file__).resolve().parents[1]), "/elsewhere"]
