"""deploykit tune --executor slurm against the real one-node Slurm of tests/slurm_cluster.py (skipped, with the
reason printed, where it cannot start): every candidate's cells run as Slurm jobs on the node, the search and
its answer are the same as a local tune's."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.slurm_cluster import running_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from running_cluster(tmp_path_factory, "the Slurm tune test")


def test_tune_through_slurm(cluster, tmp_path):
    env = {**cluster.env, "DEPLOYKIT_MODELS": str(tmp_path / "models"), "DEPLOYKIT_REPORTS": str(tmp_path / "r"),
           "COLUMNS": "200"}
    out = tmp_path / "t"
    p = run_cli("tune", "resnet18", "--resolution", "32", "--threads", "2", "-t", "ort", "--calib-size", "8",
                "--calib-method", "minmax", "--budget", "150s", "--executor", "slurm", "--slurm-partition", "bench",
                "-o", str(out), env=env, timeout=900)
    print(p.stderr[-3000:])
    assert p.returncode == 0, p.stderr
    doc = json.loads((out / "tune.json").read_text())
    ok = [r for r in doc["rows"].values() if r["status"] == "ok"]
    assert ok and all(r["executor"] == "slurm" and r["job_id"] and r["node"] == cluster.node for r in ok)
    assert any(k.startswith("rung") for k in doc["rows"]) and doc["winner"] is not None
    assert doc["settings"]["executor"] == "slurm"
