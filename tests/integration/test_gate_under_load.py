"""Real gates on a real model (ResNet-18 at 64 px, ONNX Runtime, short blocks) while a bursty background load that
the test starts and stops itself (benchmarks/background_load.py: busy/idle spells of 0.2-1.5 s on every core)
competes for the CPU. What must hold under load: identical artifacts are never a REGRESSION (nor an
IMPROVEMENT); a candidate with twice the multiply-accumulates is caught or INCONCLUSIVE, never PASS."""

import json

import pytest

from benchmarks.background_load import BurstLoad
from deploykit.cli import cli
from tests.integration.test_gate_cli import FAST, slow_2x  # noqa: F401  (the fixture)

# the load these tests start must not slow the tests of the parallel part: run with no other test beside them
pytestmark = pytest.mark.serial


def gate_json(cli_runner, *args) -> dict:
    r = cli_runner.invoke(cli, ["gate", *args, *FAST, "--json", "--no-save"])
    assert r.exit_code in (0, 4), r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("seed", [0, 1])
def test_aa_gate_under_bursty_load_is_never_a_verdict_of_change(cli_runner, resnet18_64, seed):
    with BurstLoad(workers=2, seed=seed):
        doc = gate_json(cli_runner, str(resnet18_64.path), "--against", str(resnet18_64.path))
    (res,) = doc["checks"][0]["results"]
    assert res["outcome"] in ("PASS", "INCONCLUSIVE"), res
    assert doc["exit_code"] == 0


def test_ab_gate_under_bursty_load_never_passes_a_real_slowdown(cli_runner, resnet18_64, slow_2x):  # noqa: F811
    with BurstLoad(workers=2, seed=7):
        doc = gate_json(cli_runner, str(slow_2x), "--against", str(resnet18_64.path))
    (res,) = doc["checks"][0]["results"]
    assert res["outcome"] in ("REGRESSION", "INCONCLUSIVE"), res
    assert res["estimate"] > 0.2 or res["outcome"] == "INCONCLUSIVE", res
