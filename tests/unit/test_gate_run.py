"""What the gate says before it measures (gate/run.py): tolerances a stored baseline cannot certify, and
baselines written without this machine's paths. Uses the committed example baseline; measures nothing."""

import json
from pathlib import Path

import pytest

from deploykit.core.errors import UsageError
from deploykit.gate.config import GateCheck, GateConfig, GateMetric
from deploykit.gate.run import certification_warnings, load_baseline, portable_paths

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "reports" / "baselines" / "resnet18-r64-ort.json"


def check(*tolerances, metrics=("p50",), mode="baseline"):
    return GateCheck(name="c", candidate="resnet18", mode=mode, reference=str(BASELINE),
                     metrics=tuple(GateMetric(m, t) for m, t in zip(metrics, tolerances)))


def test_a_tolerance_at_or_under_the_drift_is_said_up_front_and_refused_with_strict():
    (w,) = certification_warnings([check(0.05)], GateConfig())  # the defaults: 5% under a 10% drift allowance
    assert "p50 tolerance 5.0%" in w and "never PASS" in w and "--tolerance" in w and "--baseline-drift" in w
    with pytest.raises(UsageError, match="--strict"):
        certification_warnings([check(0.05)], GateConfig(strict=True))
    (noise,) = certification_warnings([check(0.05)], GateConfig(baseline_drift=0.0))  # no drift: the noise alone
    assert "never PASS" not in noise and "INCONCLUSIVE" in noise
    assert certification_warnings([check(0.05, mode="against")], GateConfig(strict=True)) == []


def test_a_tolerance_under_the_baselines_noise_floor_is_said_and_one_above_is_not():
    from deploykit.bench.interleave import Round, log_ratios
    from deploykit.gate.decision import baseline_floor

    rounds = [Round.from_json(b) for b in load_baseline(BASELINE)["reference_workload"]["blocks"]]
    floor = baseline_floor(log_ratios(rounds, "p50"), drift=0.10, level=0.95)
    assert 0.10 < floor < 1
    (w,) = certification_warnings([check(floor - 0.01)], GateConfig())
    assert f"about {floor:.1%}" in w and "INCONCLUSIVE" in w
    assert certification_warnings([check(floor + 0.01)], GateConfig()) == []
    # three metrics: each is judged at the corrected (stricter) level, whose floor is higher
    assert baseline_floor(log_ratios(rounds, "p50"), drift=0.10, level=1 - 0.05 / 3) > floor + 0.01
    assert len(certification_warnings([check(floor + 0.01, floor + 0.01, floor + 0.01,
                                             metrics=("p50", "p90", "throughput"))], GateConfig())) >= 1


def test_portable_paths_keep_no_path_of_this_machine(tmp_path):
    store, work = tmp_path / "store", tmp_path / "repo"
    rep = {"model": {"path": str(store / "resnet18" / "fp32.onnx")},
           "quantization": {"source": {"fp32_artifact": str(work / "models" / "x.onnx")}},
           "notes": ["/dev/null", "plain text"], "n": 3}
    out = portable_paths(rep, store, cwd=work)
    assert out["model"]["path"] == "<models-dir>/resnet18/fp32.onnx"
    assert out["quantization"]["source"]["fp32_artifact"] == "models/x.onnx"
    assert out["notes"] == ["/dev/null", "plain text"] and out["n"] == 3


def test_committed_baselines_hold_no_absolute_path():
    def strings(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from strings(x)
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, str):
            yield v

    for f in sorted((REPO / "reports" / "baselines").glob("*.json")):
        bad = [s for s in strings(json.loads(f.read_text())) if s.startswith(("/home/", "/tmp/", "/work/", "/Users/"))]
        assert bad == [], f"{f.name}: {bad}"
