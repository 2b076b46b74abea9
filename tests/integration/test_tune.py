"""deploykit tune on real models (ResNet-18 at 32 px, trained on the built-in digits for the accuracy checks), real
ONNX Runtime / OpenVINO sessions and real child processes, with budgets of a minute or two: the whole answer
(tune.json, spec.json, a gate file 'deploykit gate -c' accepts, report.html), a candidate over the accuracy
constraint dropped before any timing with its numbers, a crashing candidate recorded while the search goes on,
the budget kept, the A/B of one artifact against itself a tie, and a resume after Ctrl-C that loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, assert_clean_error, run_cli, train_on_digits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Digits at 32 px and a ResNet-18 trained on them (seconds on 2 cores), and a store for the module."""
    root = tmp_path_factory.mktemp("tune")
    data, _ = train_on_digits(root, epochs=2)
    return root, data


def _env(root: Path) -> dict:
    return {"DEPLOYKIT_MODELS": str(root / "models"), "DEPLOYKIT_REPORTS": str(root / "reports"), "COLUMNS": "200"}


def _tune(root: Path, data: Path, out: Path, *extra: str, timeout: float = 900):
    return run_cli("tune", "resnet18", "--weights", str(root / "r18.pt"), "--resolution", "32", "--threads", "2",
                   "--calib-data", str(data / "train"), "--calib-size", "16", "--eval-data", str(data / "val"),
                   "--eval-size", "120", "-o", str(out), *extra, env=_env(root), timeout=timeout)


def test_tune_answers_with_a_winner_proven_ab_and_a_gate_file(trained, tmp_path):
    root, data = trained
    out = tmp_path / "t"
    p = _tune(root, data, out, "-t", "ort", "--calib-method", "minmax", "--max-drop", "100", "--budget", "150s")
    assert p.returncode == 0, p.stderr
    doc = json.loads((out / "tune.json").read_text())
    assert doc["schema"] == "deploykit.tune" and doc["winner"] is not None
    ids = {c["id"] for c in doc["candidates"]}
    roles = {c["role"] for c in doc["candidates"]}
    assert {"fp32-default", "int8-default"} <= roles
    # every candidate's check is decided, with its accuracy numbers (labelled data given)
    checks = [d for d in doc["decisions"] if d["stage"] == "check"]
    assert {d["candidate"] for d in checks} == ids
    for d in checks:
        if d["decision"] == "kept":
            assert d["top1"] is not None and d["drop_points"] is not None and d["fidelity"] == "pass"
    fp32 = next(c for c in doc["candidates"] if c["role"] == "fp32-default")
    assert next(d for d in checks if d["candidate"] == fp32["id"])["drop_points"] == 0.0
    # timed after the checks only; the front and the wall time against the budget
    assert any(d["stage"].startswith("rung") for d in doc["decisions"])
    assert doc["front"] and set(doc["front"]) <= ids
    assert doc["budget_s"] == 150 and doc["wall_s"] > 0 and "within_budget" in doc
    # the A/B verdicts: three outcomes (plus inconclusive); against the default fp32 always
    verdicts = {a["what"]: a for a in doc["ab"]}
    vs = verdicts["winner vs default fp32 (same target)"]
    assert vs["verdict"] in ("faster", "tie", "slower", "inconclusive")
    if doc["winner"]["id"] == fp32["id"]:
        assert vs["verdict"] == "tie"  # the same run on both sides
    assert "win " not in p.stdout.replace("winner", "")  # a tie is never called a win
    assert "winner:" in p.stdout and "budget" in p.stdout
    # the chosen run spec runs as it is
    from deploykit.spec.run import read_spec

    spec = read_spec(out / "spec.json")
    assert spec.to_dict() == doc["winner"]["spec"]
    # the gate file is one 'deploykit gate' accepts, and the choice holds against its reference
    g = run_cli("gate", "-c", str(out / "gate.toml"), "--max-blocks", "20", env=_env(root))
    assert g.returncode == 0, g.stderr + g.stdout
    html = (out / "report.html").read_text()
    assert "<script" not in html and "Every decision" in html and "<svg" in html


def test_a_candidate_over_the_accuracy_limit_is_dropped_before_timing(trained, tmp_path):
    root, data = trained
    out = tmp_path / "t"
    # calibrated on 2 images: the int8 candidates lose accuracy; none may lose any
    p = run_cli("tune", "resnet18", "--weights", str(root / "r18.pt"), "--resolution", "32", "--threads", "2",
                "-t", "ort", "--calib-data", str(data / "train"), "--calib-size", "2", "--calib-method", "minmax",
                "--eval-data", str(data / "val"), "--max-drop", "0", "--budget", "90s", "-o", str(out),
                env=_env(root), timeout=900)
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads((out / "tune.json").read_text())
    checks = {d["candidate"]: d for d in doc["decisions"] if d["stage"] == "check"}
    int8 = [c for c in doc["candidates"] if c["precision"] == "int8"]
    assert int8
    dropped = 0
    for c in int8:
        d = checks[c["id"]]
        assert d["drop_points"] is not None and d["drop_basis"] == "paired against its fp32 source"
        if d["drop_points"] > 0:  # over the limit: dropped with its numbers, and never timed
            dropped += 1
            assert d["decision"] == "dropped" and "above --max-drop 0" in d["reason"]
            assert not any(k.endswith(":" + c["id"]) and k.startswith("rung") for k in doc["rows"])
        else:
            assert d["decision"] == "kept"
    print(f"{dropped} of {len(int8)} int8 candidates dropped on accuracy")


def test_a_crash_is_a_result_and_the_search_goes_on(trained, tmp_path, monkeypatch):
    from dataclasses import replace

    from deploykit.spec.run import RunSpec
    from deploykit.tune.search import TuneSettings, run_tune
    from deploykit.tune.space import Candidate, SpaceSettings, candidate_id, generate

    root, data = trained
    for k, v in _env(root).items():
        monkeypatch.setenv(k, v)
    empty = tmp_path / "no-images"
    empty.mkdir()
    base = RunSpec(model="resnet18", resolution=32)
    space = SpaceSettings(targets=("ort",), threads=2, calib_methods=("minmax",))
    cands = [c for c in generate(base, space) if c.role in ("fp32-default", "int8-default")]
    bad_spec = replace(cands[1].spec, quantize=replace(cands[1].spec.quantize, calib_data=str(empty)))
    bad = Candidate(candidate_id(bad_spec), bad_spec)
    res = run_tune(base, space, TuneSettings(budget_s=240, max_rung_s=1.0), tmp_path / "t",
                   candidates=[cands[0], bad, cands[1]])
    d = {x["candidate"]: x for x in res.state.decisions if x["stage"] == "check"}
    assert d[bad.cid]["decision"] == "dropped" and d[bad.cid]["reason"].startswith("failed: ")
    assert "no-images" in d[bad.cid]["reason"] or "image" in d[bad.cid]["reason"]
    assert d[cands[0].cid]["decision"] == "kept" and d[cands[1].cid]["decision"] == "kept"
    assert res.winner is not None and res.winner.cid != bad.cid


def test_ab_of_one_artifact_against_itself_is_never_a_win(trained, monkeypatch):
    from deploykit.spec.run import RunSpec
    from deploykit.tune.search import TuneSettings, ab
    from deploykit.tune.space import Candidate, SpaceSettings, generate

    root, _ = trained
    for k, v in _env(root).items():
        monkeypatch.setenv(k, v)
    fp32 = generate(RunSpec(model="resnet18", resolution=32), SpaceSettings(targets=("ort",), threads=2))[0]
    st = TuneSettings(budget_s=60, ab_tolerance=0.25)
    same = ab(fp32, fp32, st, 10, print)
    assert same["verdict"] == "tie" and same["same_artifact"] is True
    # two candidates that are the same run under two names: measured, and never faster or slower
    twin = Candidate("twin", fp32.spec)
    measured = ab(fp32, twin, st, 20, print)
    assert measured["rounds"] >= 8 and measured["same_artifact"] is True
    assert measured["verdict"] in ("tie", "inconclusive"), measured["reason"]


def test_budget_is_kept_and_what_did_not_fit_is_said(trained, tmp_path):
    root, data = trained
    out = tmp_path / "t"
    p = run_cli("tune", "resnet18", "--resolution", "32", "--threads", "2", "-t", "ort", "--calib-size", "8",
                "--budget", "25s", "-o", str(out), env=_env(root), timeout=900)
    assert p.returncode == 0, p.stderr
    doc = json.loads((out / "tune.json").read_text())
    mandatory = {c["id"] for c in doc["candidates"] if c["role"] in ("fp32-default", "int8-default")}
    unchecked = [d for d in doc["decisions"] if d["decision"] == "not checked"]
    assert unchecked and all("budget" in d["reason"] for d in unchecked)
    assert not mandatory & {d["candidate"] for d in unchecked}  # the references are always checked
    must = sum(r["wall_s"] for k, r in doc["rows"].items() if k.startswith("check:") and k[6:] in mandatory)
    # over the budget only by what the references' checks cost beyond it, and the least A/B
    assert doc["wall_s"] <= max(doc["budget_s"], must) + 30, (doc["wall_s"], must)


def test_resume_after_an_interrupt_loses_nothing_finished(trained, tmp_path):
    root, data = trained
    out = tmp_path / "t"
    # a budget the first cells cannot nearly spend, even on a loaded runner: the interrupt lands mid-search (with
    # 120 s, two checks on a busy machine took most of it and the tune could end before the signal arrived)
    args = [sys.executable, "-m", "deploykit", "tune", "resnet18", "--resolution", "32", "--threads", "2", "-t",
            "ort", "--calib-size", "8", "--calib-method", "minmax", "--budget", "300s", "-o", str(out)]
    env = {**os.environ, **_env(root), "PYTHONPATH": str(REPO)}
    # started as a script's background job is (SIGINT ignored, and inherited): a Ctrl-C / kill -INT still stops it
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 600
    rows: dict = {}
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            rows = json.loads((out / "tune.json").read_text()).get("rows", {})
        except (OSError, ValueError):
            rows = {}
        if len(rows) >= 2:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the tune ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    before = json.loads((out / "tune.json").read_text())["rows"]
    assert len(before) >= 2
    again = run_cli("tune", "resnet18", "--resolution", "32", "--threads", "2", "-t", "ort", "--calib-size", "8",
                    "--calib-method", "minmax", "--budget", "300s", "-o", str(out), env=_env(root), timeout=900)
    assert_clean_error(again, 2, "--resume")
    again = run_cli("tune", "resnet18", "--resolution", "32", "--threads", "2", "-t", "ort", "--calib-size", "8",
                    "--calib-method", "minmax", "--budget", "300s", "-o", str(out), "--resume", env=_env(root),
                    timeout=900)
    assert again.returncode == 0, again.stderr
    after = json.loads((out / "tune.json").read_text())
    for key, row in before.items():  # every finished cell kept as it was, not run again
        assert after["rows"][key] == row
    assert len(after["runs"]) == 2 and after["runs"][1]["resumed"] is True
    ran_again = [ln for ln in again.stderr.splitlines() if any(ln.startswith(k + ":") for k in before)]
    assert not ran_again, ran_again


def test_server_objective_ranks_by_loadgen_peak_qps_within_the_latency_bound(trained, tmp_path):
    """--objective server: every timed cell is a LoadGen peak search under the bound, the ranking and the answer are
    by peak QPS (higher is better), and the A/B compares throughput."""
    pytest.importorskip("mlperf_loadgen")
    root, data = trained
    out = tmp_path / "t"
    p = run_cli("tune", "resnet18", "--weights", str(root / "r18.pt"), "--resolution", "32", "--threads", "2",
                "-t", "ort", "--calib-size", "8", "--calib-method", "minmax", "--objective", "server",
                "--latency-bound", "200", "--no-fallback", "--budget", "150s", "-o", str(out), env=_env(root),
                timeout=900)
    assert p.returncode == 0, p.stderr
    doc = json.loads((out / "tune.json").read_text())
    assert doc["settings"]["objective"] == "server" and doc["settings"]["latency_bound"] == 200
    timed = {k: r for k, r in doc["rows"].items() if k.startswith("rung") and r.get("status") == "ok"}
    assert timed
    for key, r in timed.items():  # a LoadGen server run: its peak, a valid run within the bound
        assert r["scenario"] == "server" and r["qps_achieved"] > 0 and r["loadgen_valid"] is True, (key, r)
    pts = {x["id"]: x for x in doc["points"]}
    ranked = [pts[cid]["objective"] for cid in doc["ranked"] if cid in pts and pts[cid]["stage"] == pts[
        doc["ranked"][0]]["stage"]]
    assert ranked == sorted(ranked, reverse=True)  # the best first: the highest QPS of the last rung
    for x in pts.values():
        row = doc["rows"][f"{x['stage']}:{x['id']}"]
        assert x["objective"] == pytest.approx(row["qps_achieved"])
    assert doc["ab"] and all(a["metric"] == "throughput" for a in doc["ab"])
    assert "server" in p.stdout


def test_user_errors_are_one_line(tmp_path):
    p = run_cli("tune", "resnet18", "--max-drop", "1", "-o", str(tmp_path / "x"))
    assert_clean_error(p, 2, "--eval-data")
    p = run_cli("tune", "resnet18", "--budget", "soon", "-o", str(tmp_path / "x"))
    assert_clean_error(p, 2, "--budget")
    p = run_cli("tune", "no_such_model", "-t", "ort", "-o", str(tmp_path / "x"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
