"""deploykit sweep --executor slurm against a real one-node Slurm (tests/slurm_cluster.py: munged, slurmctld and
slurmd from Debian's packages, started under a temporary folder and stopped by their PIDs, also when a test fails):
a study through Slurm whose table matches the same study run locally (keys, statuses), each row with its node and
job id, and each job with its target's sbatch options; --resume --retry-failed resubmitting only the failed cell
(through Slurm, then locally); a cell stopped at its Slurm time limit recorded as timeout; a job cancelled in
Slurm recorded as killed with Slurm's reason; Ctrl-C cancelling the sweep's own jobs and no other; --resume
picking up the jobs of a submitting process that was killed outright."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deploykit.report.results import read_results
from deploykit.runtimes.base import get_runtime
from tests.conftest import run_cli
from tests.slurm_cluster import running_cluster

pytestmark = pytest.mark.slow

FAST = ["--min-time", "0.1", "--max-time", "1", "--min-iters", "20", "--warmup", "2", "--no-peak"]
TARGETS = ["ort", "openvino"] if get_runtime("openvino").availability().available else ["ort"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from running_cluster(tmp_path_factory, "the Slurm tests")


@pytest.fixture(scope="module")
def env(cluster, tmp_path_factory):
    """The cluster's SLURM_CONF and one artifact store for the module (each model exported once)."""
    return {**cluster.env, "DEPLOYKIT_MODELS": str(tmp_path_factory.mktemp("slurm-models")), "COLUMNS": "250"}


def squeue(cluster, fmt: str = "%i|%T|%j", *args: str) -> list[str]:
    p = subprocess.run(["squeue", "-h", "-r", "-o", fmt, *args], env={**os.environ, **cluster.env},
                       capture_output=True, text=True, timeout=60)
    return [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]


def scontrol_job(cluster, job_id: str) -> dict:
    p = subprocess.run(["scontrol", "show", "job", "-o", job_id], env={**os.environ, **cluster.env},
                       capture_output=True, text=True, timeout=60)
    return dict(kv.split("=", 1) for kv in p.stdout.split() if "=" in kv)


def wait_idle(cluster, timeout: float = 60) -> None:
    """Until no job is pending or running (the next test's jobs start at once)."""
    deadline = time.monotonic() + timeout
    while squeue(cluster, "%i") and time.monotonic() < deadline:
        time.sleep(0.5)


def study(tmp_path, corrupt=None) -> str:
    f = tmp_path / "fleet.toml"
    extra = f'[[matrix]]\nmodels = ["{corrupt}"]\ntargets = ["ort"]\n' if corrupt else ""
    f.write_text(f'[[matrix]]\nmodels = ["resnet18", "deit_tiny"]\ntargets = {json.dumps(TARGETS)}\n'
                 f'resolution = 64\n{extra}'
                 '[slurm]\npartition = "bench"\n'
                 '[slurm.targets.ort]\nconstraint = "cpu"\n[slurm.targets.openvino]\nconstraint = "intel"\n')
    return str(f)


def test_a_study_through_slurm_gives_the_local_table_with_nodes_and_job_ids(cluster, env, tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    spec = study(tmp_path, corrupt=bad)
    fleet, local = tmp_path / "fleet", tmp_path / "local"
    p = run_cli("sweep", "--study", spec, "--executor", "slurm", "--cell-timeout", "120", *FAST, "-o", str(fleet),
                "--json", env=env, timeout=400)
    assert p.returncode == 0, p.stderr
    print(p.stderr)
    assert "Traceback" not in p.stderr and "sacct" not in p.stderr  # submitit's polling warnings stay quiet
    n = 2 * len(TARGETS) + 1
    summary = json.loads(p.stdout)
    assert summary["counts"]["ok"] == n - 1 and summary["counts"]["failed"] == 1
    q = run_cli("sweep", "--study", spec, "--cell-timeout", "120", *FAST, "-o", str(local), env=env, timeout=400)
    assert q.returncode == 0, q.stderr

    df, ref = read_results(fleet), read_results(local)
    print(df[["cell", "status", "p50_ms", "node", "job_id", "executor", "wall_s", "reason"]].to_string())
    assert df["cell"].tolist() == ref["cell"].tolist() and df["status"].tolist() == ref["status"].tolist()
    assert set(df["executor"]) == {"slurm"} and set(ref["executor"]) == {"local"}
    assert set(df["node"]) == {cluster.node} and df["job_id"].map(bool).all() and df["job_id"].is_unique
    failed = df[df["status"] == "failed"].iloc[0]
    assert "not a valid ONNX file" in failed["reason"] and failed["model"] == "corrupt"
    for r in df[df["status"] == "ok"].to_dict("records"):
        report = json.loads((fleet / r["report"]).read_text())  # written by the job, in the shared folder
        assert report["environment"]["host"] == cluster.node and r["p50_ms"] > 0
        job = scontrol_job(cluster, r["job_id"])  # each job: its target's sbatch options, the node to itself
        assert job["Partition"] == "bench" and job["OverSubscribe"] == "NO" and job["TimeLimit"] == "00:05:00"
        assert job["Features"] == {"ort": "cpu", "openvino": "intel"}[r["target"]]
    arrays = {j.split("_")[0] for j in df["job_id"]}
    assert len(arrays) == 2 and "job array" in p.stderr  # one array per target (sbatch options)

    # the same compare as for local sweeps, across the two
    cmp = run_cli("compare", str(local), str(fleet), "--json", env=env)
    assert cmp.returncode == 0, cmp.stderr
    assert len(json.loads(cmp.stdout)["rows"]) == n - 1

    # --resume --retry-failed: only the failed cell goes to Slurm again; then locally (resume across executors)
    before = df.set_index("cell")
    again = run_cli("sweep", "--study", spec, "--executor", "slurm", "--cell-timeout", "120", *FAST, "-o",
                    str(fleet), "--resume", "--retry-failed", env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "slurm: job " in again.stderr and ": 1 cell (ort)" in again.stderr
    after = read_results(fleet).set_index("cell")
    changed = [c for c in after.index if after.loc[c, "job_id"] != before.loc[c, "job_id"]]
    assert changed == [failed["cell"]] and after.loc[failed["cell"], "status"] == "failed"
    kept = [c for c in after.index if c != failed["cell"]]
    assert (after.loc[kept, "created"] == before.loc[kept, "created"]).all()
    here = run_cli("sweep", "--study", spec, "--cell-timeout", "120", *FAST, "-o", str(fleet), "--resume",
                   "--retry-failed", env=env, timeout=300)
    assert here.returncode == 0, here.stderr
    last = read_results(fleet).set_index("cell")
    assert last.loc[failed["cell"], "executor"] == "local" and last.loc[failed["cell"], "job_id"] == ""
    assert (last.loc[kept, "executor"] == "slurm").all()


def test_a_cell_stopped_at_its_slurm_time_limit_is_a_timeout(cluster, env, tmp_path):
    wait_idle(cluster)
    out = tmp_path / "sweep"
    t0 = time.monotonic()
    p = run_cli("sweep", "resnet18", "--resolution", "64", "--executor", "slurm", "--slurm-time-limit", "1",
                "--cell-timeout", "0", "--min-time", "300", "--max-time", "300", "--no-peak", "-o", str(out),
                env=env, timeout=200)
    assert p.returncode == 0, p.stderr
    # Slurm warns the job (USR2) before its 1 min are up and it stops the cell, long before the 300 s it asked for;
    # slurmctld checks limits every 30 s or so, so allow for that (once 91 s on a loaded machine)
    assert time.monotonic() - t0 < 150
    (row,) = read_results(out).to_dict("records")
    print(row["job_id"], row["status"], row["reason"])
    assert row["status"] == "timeout" and "Slurm time limit of 1 min" in row["reason"]
    assert row["job_id"] and row["node"] == cluster.node and (out / row["report"]).name == "bench.log"
    assert "1 cells: 0 ok, 1 failed (1 timeout)" in p.stdout


def _start_sweep(env, out, *models, seconds: int = 100):
    argv = [sys.executable, "-m", "deploykit", "sweep", *models, "--resolution", "64", "--executor", "slurm",
            "--min-time", str(seconds), "--max-time", str(seconds), "--cell-timeout", "200", "--no-peak", "-o",
            str(out)]
    return subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_running(cluster, name: str, proc, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        running = [ln.split("|")[0] for ln in squeue(cluster) if ln.endswith(f"|RUNNING|{name}")]
        if running:
            return running[0]
        time.sleep(0.3)
    raise AssertionError(f"no job of {name} ran: {squeue(cluster)}")


def test_a_job_cancelled_in_slurm_is_killed_with_slurms_reason(cluster, env, tmp_path):
    wait_idle(cluster)
    out = tmp_path / "cancelled"
    proc = _start_sweep(env, out, "resnet18")
    try:
        job = _wait_running(cluster, "deploykit-cancelled", proc)
        subprocess.run(["scancel", job], env={**os.environ, **env}, check=True, timeout=60)  # as an administrator
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    (row,) = read_results(out).to_dict("records")
    print(row["job_id"], row["status"], row["reason"])
    assert (row["status"], row["job_id"]) == ("killed", job)
    assert row["reason"].startswith("cancelled in Slurm") and f"JOB {job} ON {cluster.node} CANCELLED" in row["reason"]


def test_ctrl_c_cancels_the_sweeps_own_jobs_and_no_other(cluster, env, tmp_path):
    wait_idle(cluster)
    out = tmp_path / "interrupted"
    proc = _start_sweep(env, out, "resnet18", "deit_tiny")
    other = None
    try:
        first = _wait_running(cluster, "deploykit-interrupted", proc)
        # someone else's job, queued behind the sweep's on the one node
        other = subprocess.run(["sbatch", "--parsable", "-p", "bench", "--exclusive", "-J", "unrelated", "-o",
                                "/dev/null", "--wrap", "sleep 120"], env={**os.environ, **env}, capture_output=True,
                               text=True, check=True, timeout=60).stdout.strip().split(";")[0]
        ours = [ln.split("|")[0] for ln in squeue(cluster) if ln.endswith("|deploykit-interrupted")]
        assert first in ours and len(ours) == 2
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    try:
        assert proc.returncode == 130, stderr
        assert stderr.strip().splitlines()[-1].startswith("error: sweep interrupted by SIGINT") and "Traceback" not in stderr
        assert f"slurm: cancelled the 2 jobs of this sweep that had not finished: {' '.join(sorted(ours))}" in stderr
        # a running job being killed passes through COMPLETING first (slow on a loaded node): wait for it to settle
        deadline = time.monotonic() + 60
        while True:
            states = dict(ln.split("|")[::2] for ln in squeue(cluster, "%i|%j|%T", "--states=all"))
            if not any(states.get(j) in ("COMPLETING", "RUNNING", "PENDING") for j in ours) or \
                    time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert all(states.get(j, "CANCELLED") == "CANCELLED" for j in ours), {j: states.get(j) for j in ours}
        assert states[other] in ("PENDING", "RUNNING"), states  # the other job lives on
        assert not out.joinpath("results.parquet").exists() or len(read_results(out)) == 0
    finally:
        if other:
            subprocess.run(["scancel", other], env={**os.environ, **env}, timeout=60)


def test_resume_picks_up_the_jobs_of_a_submitting_process_that_died(cluster, env, tmp_path):
    """A submitting process killed outright (SIGKILL, a lost login session) cancels nothing: its jobs run on, and
    --resume waits for them instead of submitting their cells again."""
    wait_idle(cluster)
    out = tmp_path / "orphaned"
    proc = _start_sweep(env, out, "resnet18", seconds=5)
    try:
        job = _wait_running(cluster, "deploykit-orphaned", proc)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert any(ln.startswith(f"{job}|") for ln in squeue(cluster))  # still there
    p = run_cli("sweep", "resnet18", "--resolution", "64", "--executor", "slurm", "--min-time", "5", "--max-time",
                "5", "--cell-timeout", "200", "--no-peak", "-o", str(out), "--resume", env=env, timeout=200)
    assert p.returncode == 0, p.stderr
    assert f"slurm: 1 cell picked up from jobs an earlier run submitted: {job}" in p.stderr
    assert "slurm: job " not in p.stderr  # nothing submitted again
    (row,) = read_results(out).to_dict("records")
    assert (row["status"], row["job_id"], row["executor"]) == ("ok", job, "slurm")
