"""What the gate leaves for CI systems: JUnit XML (checked against the common JUnit XSD's shape), the Markdown step
summary, GitHub workflow-command annotations and the JSON document with every block's raw numbers."""

import json
import re
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from deploykit.bench.fingerprint import fingerprint
from deploykit.bench.interleave import Block, Interleaved, Round, block_config
from deploykit.gate.config import GateCheck, GateConfig, GateMetric
from deploykit.gate.decision import IMPROVEMENT, INCONCLUSIVE, PASS, REGRESSION, Evidence, decide_all
from deploykit.gate.output import (annotations, gate_document, junit_xml, markdown_summary, verdict,
                                          workflow_command)
from deploykit.gate.run import CheckResult, GateResult

# --- the common JUnit XSD (Jenkins junit-10.xsd / Ant), as a structural check -------------------------------
SUITES_ATTRS = {"name", "time", "tests", "failures", "errors", "skipped", "disabled"}
SUITE_ATTRS = {"name", "tests", "failures", "errors", "time", "disabled", "skipped", "timestamp", "hostname", "id",
               "package", "file", "log", "url", "version", "group"}
SUITE_REQUIRED = {"name", "tests"}
SUITE_CHILDREN = {"properties", "testcase", "testsuite", "system-out", "system-err"}
CASE_ATTRS = {"name", "assertions", "time", "classname", "status", "file", "line", "group"}
CASE_CHILDREN = {"skipped", "error", "failure", "system-out", "system-err", "properties"}
RESULT_ATTRS = {"message", "type"}
INT_ATTRS = {"tests", "failures", "errors", "skipped", "disabled", "assertions"}


def validate_junit(text: str) -> ET.Element:
    """Raise AssertionError unless ``text`` has the shape the common JUnit XSD describes; return the root."""
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(text.encode("utf-8"))
    assert root.tag == "testsuites", root.tag
    assert set(root.attrib) <= SUITES_ATTRS, set(root.attrib) - SUITES_ATTRS
    suites = list(root)
    assert suites and all(s.tag == "testsuite" for s in suites)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for s in suites:
        assert SUITE_REQUIRED <= set(s.attrib) <= SUITE_ATTRS, s.attrib
        for k in INT_ATTRS & set(s.attrib):
            assert s.attrib[k].isdigit(), (k, s.attrib[k])
        assert float(s.attrib["time"]) >= 0
        kids = [c.tag for c in s]
        assert set(kids) <= SUITE_CHILDREN, kids
        assert kids.count("properties") <= 1 and (not kids or kids[0] == "properties" or "properties" not in kids)
        for prop in s.iter("property"):
            assert set(prop.attrib) == {"name", "value"}
        cases = s.findall("testcase")
        counts = {"failures": 0, "errors": 0, "skipped": 0}
        for c in cases:
            assert "name" in c.attrib and set(c.attrib) <= CASE_ATTRS, c.attrib
            assert float(c.attrib.get("time", "0")) >= 0
            tags = [x.tag for x in c]
            assert set(tags) <= CASE_CHILDREN, tags
            outcome = [t for t in tags if t in ("skipped", "error", "failure")]
            assert len(outcome) <= 1, tags  # one verdict per case
            # XSD sequence: skipped | error* | failure*, then system-out, then system-err
            order = {"properties": 0, "skipped": 1, "error": 1, "failure": 1, "system-out": 2, "system-err": 3}
            assert [order[t] for t in tags] == sorted(order[t] for t in tags), tags
            for x in c:
                if x.tag in ("skipped", "error", "failure"):
                    assert set(x.attrib) <= RESULT_ATTRS, x.attrib
                    if x.tag != "skipped":
                        assert x.attrib.get("message")
            counts["failures"] += tags.count("failure")
            counts["errors"] += tags.count("error")
            counts["skipped"] += tags.count("skipped")
        assert int(s.attrib["tests"]) == len(cases)
        for k, v in counts.items():
            assert int(s.attrib.get(k, "0")) == v, (k, s.attrib.get(k), v)
            totals[k] += v
        totals["tests"] += len(cases)
    for k, v in totals.items():
        if k in root.attrib:
            assert int(root.attrib[k]) == v, (k, root.attrib[k], v)
    return root


# --- synthetic results --------------------------------------------------------------------------------------

def _rounds(ratio: float, noise: float, n: int, seed: int) -> list[Round]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        base = 10e6 * (1 + 0.2 * rng.random())  # the machine's speed drifts between rounds
        a = [int(base * (1 + 0.01 * rng.standard_normal())) for _ in range(9)]
        f = ratio * math.exp(noise * rng.standard_normal())
        b = [int(x * f) for x in a]
        out.append(Round(i, "AB" if i % 2 == 0 else "BA", Block(a, sum(a) + 1000, [a[0]], 1),
                         Block(b, sum(b) + 1000, [b[0]], 1)))
    return out


def make_result(strict: bool = False, *, with_error: bool = True) -> GateResult:
    specs = [("same", 1.0, 0.01, "against"), ("slower", 1.3, 0.01, "against"), ("noisy", 1.0, 0.4, "against"),
             ("faster", 0.7, 0.01, "baseline")]
    checks = []
    for k, (name, ratio, noise, mode) in enumerate(specs):
        gc = GateCheck(name=f"{name} check: resnet18, 50%", candidate="c.onnx", mode=mode, reference="r.onnx",
                       metrics=(GateMetric("p50", 0.05),))
        rounds = _rounds(ratio, noise, 12, k)
        cr = CheckResult(check=gc, candidate={"label": name}, reference={"kind": mode}, wall_s=3.0,
                         run=Interleaved(rounds=rounds, stop_reason="decided", wall_s=2.5, block=block_config()))
        cr.evidence = [Evidence(tuple(r.log_ratio("p50") for r in rounds), 0.05)]
        if mode == "baseline":
            cr.fingerprint_mismatches = ["cpu: AMD EPYC vs Intel Xeon"]
        checks.append(cr)
    decisions = decide_all([c.evidence[0] for c in checks], alpha=0.05, correction="bonferroni")
    for c, d in zip(checks, decisions):
        c.decisions = [d]
    if with_error:
        checks.append(CheckResult(check=GateCheck(name="broken", candidate="x.onnx", mode="against", reference="y",
                                                  metrics=(GateMetric("p50", 0.05), GateMetric("p90", 0.1))),
                                  error="ONNX Runtime cannot load x.onnx: bad graph", error_code=2))
    return GateResult(config=GateConfig(strict=strict), checks=checks, environment=fingerprint(threads=1), wall_s=12.0,
                      source="test")


@pytest.fixture(scope="module")
def result():
    return make_result()


def test_synthetic_outcomes(result):
    assert [c.decisions[0].outcome for c in result.checks[:4]] == [PASS, REGRESSION, INCONCLUSIVE, IMPROVEMENT]
    assert result.exit_code == 2  # a check that could not run wins: the gate itself is broken
    assert make_result(with_error=False).exit_code == 4
    assert verdict(make_result(with_error=False)) == "REGRESSION"


def test_junit_matches_the_xsd_shape(result):
    root = validate_junit(junit_xml(result))
    suite = root.find("testsuite")
    assert suite.attrib["tests"] == "6"  # one test case per (check, metric): 4 + the broken check's 2 metrics
    assert (suite.attrib["failures"], suite.attrib["errors"], suite.attrib["skipped"]) == ("1", "2", "1")
    cases = {c.attrib["name"]: c for c in suite.findall("testcase")}
    reg = cases["slower check: resnet18, 50% [p50]"].find("failure")
    assert reg.attrib["type"] == "REGRESSION" and "slower by" in reg.attrib["message"]
    assert "fingerprint mismatch" in cases["faster check: resnet18, 50% [p50]"].find("system-out").text
    skipped = cases["noisy check: resnet18, 50% [p50]"].find("skipped")
    assert skipped.attrib["message"].startswith("INCONCLUSIVE")
    assert cases["broken [p90]"].find("error").attrib["message"].startswith("ONNX Runtime cannot load")
    props = {p.attrib["name"]: p.attrib["value"] for p in suite.iter("property")}
    assert props["correction"] == "bonferroni" and props["alpha"] == "0.05"


def test_junit_strict_makes_inconclusive_a_failure():
    root = validate_junit(junit_xml(make_result(strict=True)))
    suite = root.find("testsuite")
    assert (suite.attrib["failures"], suite.attrib["skipped"]) == ("2", "0")
    types = sorted(f.attrib["type"] for f in suite.iter("failure"))
    assert types == ["INCONCLUSIVE", "REGRESSION"]


def test_junit_validator_rejects_bad_shapes():
    good = junit_xml(make_result())
    with pytest.raises(AssertionError):
        validate_junit(good.replace('failures="1"', 'failures="0"', 1))
    with pytest.raises(AssertionError):
        validate_junit(good.replace("<testsuites", "<suites").replace("</testsuites>", "</suites>"))
    with pytest.raises(AssertionError):
        validate_junit(good.replace("<system-out>", "<stdout>", 1).replace("</system-out>", "</stdout>", 1))


def test_markdown_summary(result):
    md = markdown_summary(result)
    assert md.startswith("## deploykit latency gate: ERROR")
    assert re.search(r"\| slower check: resnet18, 50% \| p50 \| ❌ REGRESSION \| \+(29|30)\.\d%", md)
    assert "🚀 IMPROVEMENT" in md and "⚠️ INCONCLUSIVE" in md and "💥 ERROR" in md
    assert "fingerprint mismatch with the baseline**: cpu: AMD EPYC vs Intel Xeon" in md
    assert "bonferroni correction at alpha 0.05 over 4 comparisons" in md


def test_annotations(result):
    lines = annotations(result)
    errors = [ln for ln in lines if ln.startswith("::error ")]
    warnings = [ln for ln in lines if ln.startswith("::warning ")]
    notices = [ln for ln in lines if ln.startswith("::notice ")]
    assert any("title=Latency regression%3A slower check%3A resnet18%2C 50%25 p50::" in ln for ln in errors)
    assert any("could not run" in ln for ln in errors)
    assert any("fingerprint mismatch" in ln for ln in warnings)
    assert any("inconclusive" in ln for ln in warnings)
    assert len(notices) == 1 and "deploykit baseline update" in notices[0]
    assert all("\n" not in ln for ln in lines)
    strict = annotations(make_result(strict=True))
    assert any(ln.startswith("::error ") and "inconclusive" in ln for ln in strict)


def test_workflow_command_escaping():
    assert workflow_command("error", "50% slower\nsee: a, b", "t: x, y") == \
        "::error title=t%3A x%2C y::50%25 slower%0Asee: a, b"
    assert workflow_command("warning", "plain") == "::warning::plain"


def test_gate_document_keeps_every_block(result):
    doc = json.loads(json.dumps(gate_document(result)))
    assert doc["schema"] == "deploykit.gate" and doc["schema_version"] == 1
    assert doc["verdict"] == "ERROR" and doc["exit_code"] == 2
    assert doc["counts"] == {"PASS": 1, "IMPROVEMENT": 1, "INCONCLUSIVE": 1, "REGRESSION": 1, "ERROR": 2}
    slower = doc["checks"][1]
    assert len(slower["blocks"]) == 12 and slower["blocks"][1]["order"] == "BA"
    raw = slower["blocks"][0]["a"]["samples_ms"]
    assert len(raw) == 9 and all(x > 0 for x in raw)
    res = slower["results"][0]
    assert res["outcome"] == "REGRESSION" and len(res["log_ratios"]) == 12
    assert res["log_ratios"][0] == pytest.approx(math.log(slower["blocks"][0]["b"]["median_ms"]
                                                          / slower["blocks"][0]["a"]["median_ms"]), abs=1e-6)
    assert doc["checks"][4]["error"].startswith("ONNX Runtime") and doc["checks"][4]["results"] == []
    assert doc["settings"]["correction"] == "bonferroni"


def test_block_json_round_trip():
    r = _rounds(1.1, 0.01, 2, 0)[1]
    back = Round.from_json(json.loads(json.dumps(r.to_json())))
    assert back.order == "BA" and back.a.samples_ns == r.a.samples_ns and back.b.wall_ns == r.b.wall_ns
    assert back.log_ratio("p50") == pytest.approx(r.log_ratio("p50"))
    for metric in ("p50", "p90", "throughput"):
        assert r.b.cost(metric) > r.a.cost(metric) > 0
