"""Latency history across the commits of a test repository (tests/history_repo.py: 32 commits, each with its own
model.onnx; +1 conv at c10 ~+5%, +3 convs at c20 ~+15%, -4 convs at c27): every commit measured for real
(interleaved with the c00 model, ONNX Runtime, one thread), the series stored and run through the change-point
detector, and 'deploykit bisect' (real gates, one child process per step) naming c20 as the first bad commit.

Set DEPLOYKIT_HISTORY_EVIDENCE=DIR to keep the series, the steps, the bisect result and the HTML trend plot."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from deploykit.history.detect import detect
from deploykit.history.records import machine_class
from deploykit.history.store import Row, Store
from tests.conftest import run_cli
from tests.history_repo import build_repo, git, measure_relative

pytestmark = pytest.mark.slow
GATE = ["--threads", "1", "--tolerance", "5%", "--min-blocks", "6", "--max-blocks", "20", "--block-time", "0.1"]


def _state(repo: Path) -> tuple:
    return (git(repo, "rev-parse", "HEAD"), git(repo, "symbolic-ref", "HEAD"), git(repo, "worktree", "list"),
            git(repo, "status", "--porcelain"), git(repo, "for-each-ref", "refs/bisect"))


def test_history_steps_and_bisect_on_a_32_commit_repository(tmp_path):
    repo = tmp_path / "repo"
    commits = build_repo(repo)
    assert len(commits) == 32 and [c.convs for c in commits[9:11]] == [20, 21] and commits[20].convs == 24
    series = measure_relative(repo, commits, commits[0].sha, tmp_path / "m", rounds=10, block_time=0.05)

    from deploykit.bench.fingerprint import fingerprint

    machine = machine_class(fingerprint(threads=1))
    rows = [Row(content_hash=p["commit"].sha, spec_key="model.onnx|ort|fp32|b1|rauto|t1", machine=machine,
                model="model.onnx", target="ort", precision="fp32", batch=1, resolution=None,
                commit_sha=p["commit"].sha, created=f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00+0000",
                created_ts=float(i), kind="test", p50=p["p50"], n=p["n"], rel_cost=p["rel"])
            for i, p in enumerate(series)]
    store = tmp_path / "history.sqlite"
    with Store(store) as s:
        assert s.append(rows) == 32
    rel_steps = detect([p["rel"] for p in series])  # the real series: reported (evidence), not asserted -- on a
    raw_steps = detect([p["p50"] for p in series])  # loaded 2-core VM a load change can move a point by 40%
    for st in rel_steps + raw_steps:
        assert 3 <= st.index <= 29 and st.ci[0] <= st.change <= st.ci[1] and st.p_value < 0.01
    # levels measured for real (the median over each segment's commits resists the few points a load burst moved),
    # point-to-point noise from a noise model (2% lognormal, seeded): the detector must place the big steps
    levels = {}
    for lo, hi in ((0, 10), (10, 20), (20, 27), (27, 32)):
        levels[lo] = float(np.median([p["rel"] for p in series[lo:hi]]))
    level = [levels[max(k for k in levels if k <= i)] for i in range(32)]
    hybrid = [v * float(np.exp(e)) for v, e in zip(level, np.random.default_rng(0).normal(0, 0.02, 32))]
    hyb_steps = detect(hybrid)
    # the real levels moved the right way (their size is load-dependent here: about half the MAC design)
    assert levels[20] > levels[10] and levels[27] < levels[20], levels
    assert any(abs(st.index - 20) <= 1 and st.change > 0 for st in hyb_steps), (levels, hyb_steps)
    assert any(abs(st.index - 27) <= 1 and st.change < 0 for st in hyb_steps), (levels, hyb_steps)
    assert all(min(abs(st.index - k) for k in (10, 20, 27)) <= 1 for st in hyb_steps), hyb_steps  # no false alarm
    keep = os.environ.get("DEPLOYKIT_HISTORY_EVIDENCE")
    evidence = {"series": [{"commit": p["commit"].index, "convs": p["commit"].convs, "p50": p["p50"], "rel": p["rel"]}
                           for p in series], "levels": levels, "hybrid": hybrid,
                "rel_steps": [st.__dict__ for st in rel_steps], "raw_steps": [st.__dict__ for st in raw_steps],
                "hybrid_steps": [st.__dict__ for st in hyb_steps]}

    before = _state(repo)
    p = run_cli("bisect", commits[10].sha, commits[26].sha, "--model", "model.onnx", *GATE, "--json", cwd=repo)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["first_bad"] == commits[20].sha, (result, p.stderr)
    assert "c20: three more trunk convs" in result["subject"]
    assert 2 <= result["gate_runs"] <= 12
    assert _state(repo) == before and "bisect" not in " ".join(os.listdir(repo / ".git"))  # left as found

    html = tmp_path / "trend.html"
    p = run_cli("history", "--history", str(store), "--normalize", "--html", str(html))
    assert p.returncode == 0 and html.read_text().count("<svg") == 1, p.stderr

    if keep:
        out = Path(keep)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(html, out / "trend_test.html")
        shutil.copy(store, out / "history_test.sqlite")
        evidence.update({"bisect": {k: v for k, v in result.items() if k != "steps"}, "bisect_steps": result["steps"],
                         "commit_index": {c.sha: c.index for c in commits}})
        (out / "test_result.json").write_text(json.dumps(evidence, indent=1))


def test_bench_gate_and_sweep_append_to_the_store_and_import_skips_what_they_wrote(tmp_path):
    from tests.samples import tiny_onnx

    model = tiny_onnx(tmp_path / "tiny.onnx")
    store, reports = tmp_path / "h.sqlite", tmp_path / "reports"
    env = {"DEPLOYKIT_COMMIT": "c0ffee" * 6 + "abcd"}
    quick = ["-t", "ort", "--threads", "1"]
    p = run_cli("bench", str(model), *quick, "--min-time", "0.2", "--warmup", "2", "--report-dir", str(reports),
                "--history", str(store), env=env)
    assert p.returncode == 0 and "history: 1 run(s) appended" in p.stderr, p.stderr
    p = run_cli("gate", str(model), "--against", str(model), *quick, "--min-blocks", "6", "--max-blocks", "6",
                "--block-time", "0.05", "--report-dir", str(reports), env={**env, "DEPLOYKIT_HISTORY": str(store)})
    assert p.returncode == 0 and "history: 1 run(s) appended" in p.stderr, p.stderr
    p = run_cli("sweep", str(model), *quick, "--min-time", "0.2", "--no-peak", "-o", str(tmp_path / "sweep"),
                "--history", str(store), env=env)
    assert p.returncode == 0 and "history: 1 run(s) appended" in p.stderr, p.stderr
    with Store(store, create=False) as s:
        rows = s.rows()
    assert sorted(r.kind for r in rows) == ["bench", "gate", "sweep"]
    assert {r.commit_sha for r in rows} == {env["DEPLOYKIT_COMMIT"]} and len({r.machine for r in rows}) == 1
    bench_row = next(r for r in rows if r.kind == "bench")
    assert bench_row.report_path and Path(bench_row.report_path).parent == reports and bench_row.ci_lo is not None
    assert next(r for r in rows if r.kind == "gate").report_path.endswith("-gate.json")
    p = run_cli("history", "import", str(reports), "--history", str(store))
    assert p.returncode == 0 and "0 run(s) added, 3 in" in p.stdout, (p.stdout, p.stderr)
