"""deploykit tune without measuring: the candidates per target and ISA, the budget flag, the Pareto front, the
three A/B outcomes, successive halving's selection over given rows, the HTML report's escaping."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from deploykit.core.errors import UsageError
from deploykit.runtimes.base import get_runtime
from deploykit.spec.run import RunSpec
from deploykit.tune.space import FLOAT_ISA, SpaceSettings, float_precisions, generate, machine_isa


def _space(*targets: str, **kw) -> SpaceSettings:
    return SpaceSettings(targets=targets, threads=2, **kw)


def test_bf16_only_where_the_isa_has_it():
    base = RunSpec(model="resnet18", resolution=32)
    without = generate(base, _space("ort", "openvino"), isa={"avx2", "fma"})
    assert {c.precision for c in without} == {"fp32", "int8"}
    with_bf16 = generate(base, _space("ort", "openvino"), isa={"avx2", "avx512_bf16"})
    bf16 = [c for c in with_bf16 if c.precision == "bf16"]
    assert [c.target for c in bf16] == ["openvino"]  # ONNX Runtime's CPU target declares no bf16
    # this machine: bf16 candidates exactly where its fingerprint's ISA flags have bf16 units
    here = machine_isa()
    has = bool(here & set(FLOAT_ISA["bf16"]))
    assert ("bf16" in float_precisions(get_runtime("openvino"), here)) == has


def test_defaults_first_softmax_paths_for_attention_models_only():
    cnn = generate(RunSpec(model="resnet18", resolution=32), _space("ort"), isa=set())
    assert [c.role for c in cnn[:2]] == ["fp32-default", "int8-default"]
    assert {c.softmax for c in cnn} == {""}  # no attention, no softmax variants
    assert {c.spec.quantize.calib_method for c in cnn if c.spec.int8} == {"minmax", "percentile"}
    vit = generate(RunSpec(model="deit_tiny", resolution=32), _space("ort", "openvino"), isa=set())
    ort_int8 = [c for c in vit if c.target == "ort" and c.spec.int8]
    # ORT's default softmax for a ViT is int8: the default and "softmax int8" are one candidate, not two
    assert sorted((c.softmax, c.spec.quantize.calib_method) for c in ort_int8) == [
        ("float", "minmax"), ("float", "percentile"), ("int8", "minmax"), ("int8", "percentile")]
    assert len({c.cid for c in vit}) == len(vit)
    nncf = [c for c in vit if c.spec.quantize is not None and c.spec.quantize.quantizer == "nncf"]
    assert nncf and {c.target for c in nncf} == {"openvino"}
    assert all(c.spec.options.threads == 2 for c in vit)


def test_throughput_objective_adds_requests_in_flight_and_batches():
    cands = generate(RunSpec(model="resnet18", resolution=32), _space("openvino", objective="throughput"),
                     isa=set())
    assert all(c.spec.options.mode == "throughput" for c in cands)
    assert {c.spec.batch for c in cands} == {1, 4}
    assert any(c.spec.target_settings().get("streams") == 2 for c in cands)


def test_budget_flag():
    from deploykit.cli.tune_cmd import parse_budget

    assert parse_budget("20m") == 1200 and parse_budget("1h30m") == 5400 and parse_budget("90") == 90
    assert parse_budget("45s") == 45
    for bad in ("", "20x", "m", "-5", "0"):
        with pytest.raises(UsageError):
            parse_budget(bad)


def test_settings_refuse_max_drop_without_labels_and_server_without_bound():
    from deploykit.tune.search import TuneSettings

    with pytest.raises(UsageError, match="--eval-data"):
        TuneSettings(max_drop=1.0)
    with pytest.raises(UsageError, match="--latency-bound"):
        TuneSettings(objective="server")
    with pytest.raises(UsageError):
        TuneSettings(budget_s=0)


def test_pareto_front():
    from deploykit.tune.search import pareto

    pts = [{"id": "a", "cost": 1.0, "drop": 2.0}, {"id": "b", "cost": 2.0, "drop": 0.0},
           {"id": "c", "cost": 2.0, "drop": 2.0}, {"id": "d", "cost": 3.0, "drop": float("nan")}]
    assert pareto(pts, ("cost", "drop")) == ["a", "b"]


def test_a_tie_is_never_a_win():
    from deploykit.gate.decision import IMPROVEMENT, INCONCLUSIVE, PASS, REGRESSION
    from deploykit.tune.search import outcome_word

    assert outcome_word(PASS) == "tie"
    assert outcome_word(IMPROVEMENT) == "faster" and outcome_word(REGRESSION) == "slower"
    assert outcome_word(INCONCLUSIVE) == "inconclusive"


class _Rows:
    """Stands in for the executor (not what is tested): each cell's row carries a given p50."""

    def __init__(self, state, p50: dict[str, float]):
        self.state, self.p50, self.ran = state, p50, []

    def run(self, cells, *, limit_s):
        for c in cells:
            self.ran.append(c.key)
            self.state.rows[c.key] = {"cell": c.key, "status": "ok", "p50_ms": self.p50[c.cid], "wall_s": 1.0,
                                      "ci_low_ms": self.p50[c.cid] * 0.99, "ci_high_ms": self.p50[c.cid] * 1.01}


def test_halving_keeps_the_best_half_and_the_references(tmp_path: Path):
    from deploykit.tune.search import State, TuneSettings, halving

    cands = generate(RunSpec(model="deit_tiny", resolution=32), _space("ort", "openvino"), isa=set())
    state = State(out=tmp_path, candidates=cands)
    # the fp32 defaults slowest, one int8 variant per target fastest
    p50 = {c.cid: 10.0 + i for i, c in enumerate(cands)}
    for c in cands:
        if c.role == "fp32-default":
            p50[c.cid] = 100.0 + len(c.target)
    best = cands[-1]
    p50[best.cid] = 1.0
    runner = _Rows(state, p50)
    ranked = halving(state, runner, TuneSettings(budget_s=10_000), cands)
    assert ranked[0] is best
    rung0 = [d for d in state.decisions if d["stage"] == "rung0"]
    dropped = [d for d in rung0 if d["decision"] == "dropped"]
    assert dropped and all("outside the better half" in d["reason"] and d["value"] > 0 for d in dropped)
    kept_refs = [d for d in rung0 if "kept as a reference" in d["reason"]]
    assert {state.by_id(d["candidate"]).role for d in kept_refs} >= {"fp32-default"}
    # every fp32 default reaches the last rung (the verdicts' reference)
    assert {c.cid for c in ranked} >= {c.cid for c in cands if c.role == "fp32-default"}
    # rungs are longer than the one before
    times = [s["seconds"] for s in state.stages]
    assert len(times) >= 2


def test_report_escapes_what_it_did_not_write(tmp_path: Path):
    from deploykit.tune.output import write_report
    from deploykit.tune.search import State, TuneResult, TuneSettings

    cands = generate(RunSpec(model="resnet18", resolution=32), _space("ort"), isa=set())
    state = State(out=tmp_path, candidates=cands)
    state.decide(cands[0], "check", "dropped", "failed: <script>alert(1)</script> & more")
    state.result = {"points": []}
    res = TuneResult(state=state, winner=None, runner_up=None, reason="no <b>winner</b>", wall_s=1.0,
                     budget_s=10.0, out=tmp_path)
    text = write_report(state, res, TuneSettings(budget_s=10), "<img src=x>").read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "<img src=x>" not in text and "<b>winner" not in text
    assert "default-src 'none'" in text and not math.isnan(res.wall_s)


def test_a_space_too_big_is_sampled_keeping_the_references():
    from deploykit.tune.space import sample

    cands = generate(RunSpec(model="deit_tiny", resolution=32), _space("ort", "openvino"), isa={"avx512_bf16"})
    kept, out = sample(cands, 6, seed=0)
    refs = {c.cid for c in cands if c.role in ("fp32-default", "int8-default")}
    assert len(kept) == 6 and refs <= {c.cid for c in kept}
    assert {c.cid for c in kept} | {c.cid for c in out} == {c.cid for c in cands} and not set(kept) & set(out)
    assert [c.cid for c in sample(cands, 6, seed=0)[0]] == [c.cid for c in kept]  # seeded
    assert sample(cands, None)[0] == cands


def test_a_winner_slower_than_its_own_fp32_gives_way_to_the_next_best_not_blindly_to_that_fp32(tmp_path: Path):
    """As MobileViT-S at 224 px did: OpenVINO+NNCF int8 first in the last rung, tied with ORT fp32, but slower than
    OpenVINO fp32 in their A/B -- the answer is ORT fp32 (the next best of the ranking), not the slower OpenVINO
    fp32. The A/B verdicts are given as records (a resumed tune reuses them): nothing is measured here."""
    from deploykit.tune.search import State, TuneSettings, finish

    cands = generate(RunSpec(model="deit_tiny", resolution=32), _space("ort", "openvino"), isa=set())
    ort_fp32 = next(c for c in cands if c.role == "fp32-default" and c.target == "ort")
    ov_fp32 = next(c for c in cands if c.role == "fp32-default" and c.target == "openvino")
    nncf = next(c for c in cands if c.spec.quantize is not None and c.spec.quantize.quantizer == "nncf")
    state = State(out=tmp_path, candidates=cands)
    state.runs.append({"started": "now"})

    def rec(what, a, b, verdict, outcome):
        return {"what": what, "a": a.cid, "a_label": a.label(), "b": b.cid, "b_label": b.label(),
                "verdict": verdict, "outcome": outcome, "reason": verdict}

    state.ab = [rec("winner vs runner-up", ort_fp32, nncf, "tie", "PASS"),
                rec("winner vs default fp32 (same target)", ov_fp32, nncf, "slower", "REGRESSION")]
    res = finish(state, TuneSettings(budget_s=10_000), [nncf, ort_fp32, ov_fp32], lambda m: None)
    assert res.winner is ort_fp32 and res.state.result["ranked"][-1] == nncf.cid
    d = {(x["candidate"], x["decision"]) for x in state.decisions if x["stage"] == "ab"}
    assert (nncf.cid, "replaced") in d and (ort_fp32.cid, "chosen") in d
    # the new winner proven against its own fp32: itself, a tie by construction (nothing measured)
    last = [a for a in state.ab if a["what"] == "winner vs default fp32 (same target)"][-1]
    assert last["b"] == ort_fp32.cid and last["verdict"] == "tie"
    assert res.state.result["per_target"]["openvino"]["answer"] == ov_fp32.cid


def test_demotions_go_on_until_the_answer_is_not_slower_than_its_own_fp32(tmp_path: Path):
    """Three winners in a row each slower than their own target's fp32 in the A/B: the answer ends at a candidate no
    A/B found slower than its fp32 (here ORT fp32), however many turns that takes."""
    from deploykit.tune.search import State, TuneSettings, finish

    cands = generate(RunSpec(model="deit_tiny", resolution=32), _space("ort", "openvino"), isa=set())
    fp32 = {t: next(c for c in cands if c.role == "fp32-default" and c.target == t) for t in ("ort", "openvino")}
    nncf = next(c for c in cands if c.spec.quantize is not None and c.spec.quantize.quantizer == "nncf")
    ov_qdq = next(c for c in cands if c.target == "openvino" and c.spec.int8 and c.spec.quantize.quantizer == "ort")
    ort_int8 = next(c for c in cands if c.target == "ort" and c.spec.int8)
    state = State(out=tmp_path, candidates=cands)
    state.runs.append({"started": "now"})

    def rec(what, a, b, verdict, outcome):
        return {"what": what, "a": a.cid, "a_label": a.label(), "b": b.cid, "b_label": b.label(),
                "verdict": verdict, "outcome": outcome, "reason": verdict}

    w = "winner vs default fp32 (same target)"
    state.ab = [rec("winner vs runner-up", ov_qdq, nncf, "tie", "PASS"),
                rec(w, fp32["openvino"], nncf, "slower", "REGRESSION"),
                rec(w, fp32["openvino"], ov_qdq, "slower", "REGRESSION"),
                rec(w, fp32["ort"], ort_int8, "slower", "REGRESSION")]
    res = finish(state, TuneSettings(budget_s=10_000), [nncf, ov_qdq, ort_int8, fp32["ort"], fp32["openvino"]],
                 lambda m: None)
    assert res.winner is fp32["ort"]
    replaced = [x["candidate"] for x in state.decisions if x["decision"] == "replaced"]
    assert replaced == [nncf.cid, ov_qdq.cid, ort_int8.cid]
