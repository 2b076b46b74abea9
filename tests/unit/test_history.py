"""The history store (SQLite), report import, series, change-point detection and the 'deploykit history' command.

Reports are hand-built by tests/sample_reports.py (statistics by deploykit's own stats module, schema-valid);
the store, the detector and the command are the real ones. Concurrency: real processes appending at once, one of
them SIGKILLed in the middle of a transaction."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deploykit.history.detect import detect
from deploykit.history.records import import_folder, machine_class, rows_from_report
from deploykit.history.store import SCHEMA_VERSION, Row, Store
from deploykit.history.view import markdown, select
from deploykit.runtimes.options import RuntimeOptions
from deploykit.spec.run import RunSpec
from tests.conftest import assert_clean_error, run_cli
from tests.sample_reports import make_report, samples, write_report


def _report(median: float, *, i: int = 0, model: str = "resnet18", target: str = "ort", cpu: str = "Test CPU",
            rel: float | None = None) -> dict:
    spec = RunSpec(model=model, target=target, resolution=64, options=RuntimeOptions(threads=2))
    r = make_report(samples(median, n=60, seed=i), model=model, target=target,
                    created=f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00+0000", extra={"run_spec": spec.to_dict()})
    if rel is not None:  # the part of a --reference-workload section history reads
        r["reference_workload"] = {"name": "refnet-v1", "relative": {"p50": rel}}
    r["environment"]["cpu"]["model"] = cpu
    r["environment"]["deploykit"]["sha"] = _sha(i)
    return r


def _sha(i: int) -> str:
    return f"{i:02x}" + "a" * 38


def test_store_schema_append_dedup_and_reopen(tmp_path):
    path = tmp_path / "h" / "history.sqlite"
    rows = rows_from_report(_report(10.0), path="r.json")
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        assert s.append(rows) == 1
        assert s.append(rows) == 0  # same content hash: skipped
    with Store(path, create=False) as s:
        (got,) = s.rows()
    assert got.spec_key == RunSpec(model="resnet18", resolution=64, options=RuntimeOptions(threads=2)).key
    assert got.machine == machine_class(_report(10.0)["environment"]) and "Test CPU" in got.machine
    assert got.commit_sha == _sha(0) and got.report_path == "r.json"
    assert got.ci_lo <= got.p50 <= got.ci_hi and got.n == 60
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_refuses_newer_schema_and_missing_file(tmp_path):
    path = tmp_path / "h.sqlite"
    with Store(path):
        pass
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(Exception, match="schema version 99"):
        Store(path)
    with pytest.raises(Exception, match="no history store"):
        Store(tmp_path / "absent.sqlite", create=False)


def test_import_folder_skips_duplicates_and_foreign_json(tmp_path):
    for i in range(3):
        write_report(tmp_path / "reports" / f"r{i}.json", _report(10.0 + i, i=i))
    (tmp_path / "reports" / "other.json").write_text('{"not": "a report"}')
    (tmp_path / "reports" / "broken.json").write_text("{")
    with Store(tmp_path / "h.sqlite") as s:
        n, added, problems = import_folder(s, tmp_path / "reports")
        assert (n, added) == (3, 3) and [p.name for p, _ in problems] == ["broken.json"]
        assert import_folder(s, tmp_path / "reports")[1] == 0


def test_series_are_kept_apart_by_machine_or_normalised(tmp_path):
    rows = []
    for i in range(4):
        rows += rows_from_report(_report(10.0, i=i, cpu="CPU A", rel=0.5))
        rows += rows_from_report(_report(20.0, i=i, cpu="CPU B", rel=0.5))
        rows += rows_from_report(_report(5.0, i=i, model="deit_tiny", cpu="CPU A"))
    apart = select(rows, model="resnet*")
    assert len(apart) == 2 and {len(s.rows) for s in apart} == {4}
    assert {s.machine.split(" [")[0] for s in apart} == {"CPU A", "CPU B"}
    together = select(rows, model="resnet18", normalize=True)
    assert len(together) == 1 and len(together[0].rows) == 8 and set(together[0].values) == {0.5}
    assert select(rows, target="openvino") == [] and len(select(rows, machine="cpu b")) == 1


def _series(rng, n: int, noise: float, step: float, at: int) -> np.ndarray:
    base = np.full(n, 10.0)
    base[at:] *= 1 + step
    return base * np.exp(rng.normal(0.0, noise, n))


def test_detector_finds_injected_steps_and_rarely_alarms_on_clean_series():
    """40-point series, 1% noise: a +10% step at 20 is found within 1 point in nearly every series; clean series
    rarely get a step. (benchmarks/history_detection.py prints the whole grid over noise and step size.)"""
    rng = np.random.default_rng(7)
    found = sum(any(abs(s.index - 20) <= 1 and 0.05 < s.change < 0.15 for s in detect(_series(rng, 40, 0.01,
                                                                                                  0.10, 20)))
                for _ in range(30))
    alarms = sum(len(detect(_series(rng, 40, 0.01, 0.0, 20))) for _ in range(30))
    assert found >= 28 and alarms <= 3, (found, alarms)


def test_detector_reports_commit_range_magnitude_and_significance():
    rng = np.random.default_rng(3)
    v = np.concatenate([_series(rng, 15, 0.01, 0, 0), _series(rng, 15, 0.01, 0.15, 0), _series(rng, 10, 0.01, -0.2,
                                                                                                 0)])
    steps = detect(v)
    assert [s.index for s in steps] == [15, 30]
    up, down = steps
    assert up.kind == "regression" and up.ci[0] < 0.15 < up.ci[1] and up.p_value < 1e-6
    assert down.kind == "improvement" and down.ci[0] < 0.8 / 1.15 - 1 < down.ci[1]  # 10 -> 11.5 -> 8
    assert detect(v[:5]) == []  # too short for two segments


def test_history_command_table_json_markdown_html(tmp_path):
    store = tmp_path / "h.sqlite"
    for i in range(24):
        write_report(tmp_path / "reports" / f"r{i:02d}.json", _report(10.0 * (1.15 if i >= 12 else 1.0), i=i))
    p = run_cli("history", "import", str(tmp_path / "reports"), "--history", str(store))
    assert p.returncode == 0 and "24 run(s) added" in p.stdout, p.stderr
    p = run_cli("history", "resnet18", "--history", str(store), "--json")
    assert p.returncode == 0, p.stderr
    (series,) = json.loads(p.stdout)
    (step,) = series["steps"]
    assert step["index"] == 12 and step["from"] == _sha(11) and step["to"] == _sha(12)
    assert 0.13 < step["change"] < 0.17
    summary = tmp_path / "summary.md"
    p = run_cli("history", "--history", str(store), "--github-summary", "--html", str(tmp_path / "t.html"),
                "--fail-on-step", env={"GITHUB_STEP_SUMMARY": str(summary), "COLUMNS": "200"})
    assert p.returncode == 4, p.stderr  # the last step is a regression
    assert "resnet18" in p.stdout and "+15" in p.stdout and "detected steps" in p.stdout
    assert "regression +1" in summary.read_text() and "`0baaaaaa` and `0caaaaaa`" in summary.read_text()
    page = (tmp_path / "t.html").read_text()
    assert page.count("<svg") == 1 and "<script" not in page and "regression" in page
    assert_clean_error(run_cli("history", "--history", str(tmp_path / "none.sqlite")), 2, "no history store")


def test_markdown_without_series():
    assert "No runs" in markdown([], detected=True)


# ---------------------------------------------------------------------------------------------- concurrency

WRITER = """
import sys, time
from deploykit.history.store import Row, Store
path, tag, n, per_tx, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
def row(i):
    return Row(content_hash=f"{tag}-{i}", spec_key="m|ort|fp32|b1|r64|t2", machine="cpu", model="m", target="ort",
               precision="fp32", batch=1, resolution=64, commit_sha=None, created="2026-01-01T00:00:00+0000",
               created_ts=float(i), kind="test", p50=1.0 + i)
with Store(path) as s:
    if hold:  # open a transaction, write, announce, and wait to be killed before COMMIT
        s.db.execute("BEGIN IMMEDIATE")
        for i in range(n):
            s.db.execute("INSERT INTO runs (content_hash, spec_key, machine, model, target, precision, created, "
                         "created_ts, kind, p50, inserted_ts) VALUES (?, 'k', 'cpu', 'm', 'ort', 'fp32', '', 0, "
                         "'test', 1, 0)", (f"{tag}-{i}",))
        print("in-transaction", flush=True)
        time.sleep(hold)
        sys.exit(3)
    for start in range(0, n, per_tx):
        s.append(row(i) for i in range(start, min(n, start + per_tx)))
"""


def _writer(path: Path, tag: str, n: int, per_tx: int = 5, hold: float = 0.0) -> subprocess.Popen:
    root = str(Path(__file__).resolve().parents[2])
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), tag, str(n), str(per_tx), str(hold)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": root})


def test_concurrent_writers_and_a_killed_one_lose_nothing(tmp_path):
    path = tmp_path / "history.sqlite"
    with Store(path):
        pass
    killed = _writer(path, "killed", 200, hold=60)
    assert killed.stdout.readline().strip() == "in-transaction"  # it holds the write lock, rows written, no COMMIT
    a, b = _writer(path, "a", 400), _writer(path, "b", 400)
    time.sleep(0.5)  # a and b wait on the lock (busy timeout) while the killed writer holds it
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(30) == -signal.SIGKILL
    assert a.wait(120) == 0 and b.wait(120) == 0
    with Store(path, create=False) as s:
        hashes = [r.content_hash for r in s.rows()]
        assert s.integrity() == "ok"
    assert len(hashes) == 800 == len(set(hashes))
    assert {h.split("-")[0] for h in hashes} == {"a", "b"}  # nothing of the killed writer's open transaction


def test_row_series_identity():
    r = rows_from_report(_report(10.0))[0]
    assert isinstance(r, Row) and r.series == (r.spec_key, r.machine)


# ------------------------------------------------------------------------------------ bisect: refusals, clean-up

def test_bisect_refuses_bad_revisions_and_a_failing_gate_and_leaves_the_repository_as_found(tmp_path):
    from tests.history_repo import build_repo, git

    repo = tmp_path / "repo"
    c = build_repo(repo, n_commits=4, plan={2: (+1, "one more conv")}, base=2, channels=4, size=8)
    state = lambda: (git(repo, "rev-parse", "HEAD"), git(repo, "worktree", "list"),  # noqa: E731
                     git(repo, "status", "--porcelain"), git(repo, "for-each-ref", "refs/bisect"))
    before = state()
    assert_clean_error(run_cli("bisect", c[3].sha, c[0].sha, "--model", "model.onnx", cwd=repo), 2,
                       "not an ancestor")
    assert_clean_error(run_cli("bisect", "nope", c[3].sha, "--model", "model.onnx", cwd=repo), 2, "'nope' not found")
    assert_clean_error(run_cli("bisect", c[0].sha, c[3].sha, "--model", "absent.onnx", cwd=repo), 2,
                       "not tracked at good")
    # the gate refuses its options at every step: the bisect stops with the gate's own error line
    p = run_cli("bisect", c[0].sha, c[3].sha, "--model", "model.onnx", "--gate-arg=--metric", "--gate-arg=bogus",
                cwd=repo)
    line = assert_clean_error(p, 2, "git bisect run did not finish", "bogus", alone=False)
    assert line.count("error:") == 1
    assert state() == before


NO_RUPTURES = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ruptures":
            raise ModuleNotFoundError("No module named 'ruptures'", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["deploykit", *sys.argv[1:]]
from deploykit.cli import main
main()
"""


def test_history_without_the_extra_shows_the_series_and_says_how_to_get_steps(tmp_path):
    store = tmp_path / "h.sqlite"
    with Store(store) as s:
        s.append(rows_from_report(_report(10.0)))
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    p = subprocess.run([sys.executable, "-c", NO_RUPTURES, "history", "--history", str(store)], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0 and "resnet18" in p.stdout, p.stderr
    assert "ruptures is not installed" in p.stderr and "[history]" in p.stderr
    p = subprocess.run([sys.executable, "-c", NO_RUPTURES, "history", "--history", str(store), "--steps"],
                       capture_output=True, text=True, env=env)
    assert_clean_error(p, 3, "ruptures is not installed", "[history]")
