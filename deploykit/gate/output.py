"""What a latency gate leaves behind for people and CI systems.

* ``gate_document``: the JSON (schema ``deploykit.gate`` v1) -- settings, environment, and per check every
  block's raw per-iteration samples of both sides, the per-round log-ratios and each metric's decision.
* ``junit_xml``: JUnit XML, one <testcase> per (check, metric); REGRESSION is a <failure>, INCONCLUSIVE a
  <skipped> (a <failure> with --strict), a check that could not run an <error>. The shape follows the common
  JUnit XSD (Jenkins junit-10 / Ant): testsuites > testsuite > testcase > failure | error | skipped | system-out.
* ``markdown_summary``: a table for ``$GITHUB_STEP_SUMMARY``.
* ``annotations``: GitHub workflow commands (``::error``, ``::warning``, ``::notice``).
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict

from deploykit.gate.decision import IMPROVEMENT, INCONCLUSIVE, OUTCOMES, PASS, REGRESSION

GATE_SCHEMA = "deploykit.gate"
GATE_SCHEMA_VERSION = 1
SIDE_NAMES = {"against": ("baseline artifact", "candidate"), "against_rev": ("baseline artifact", "candidate"),
              "baseline": ("reference workload", "candidate")}


def _counts(result) -> dict:
    counts = {o: 0 for o in OUTCOMES}
    for d in result.decisions:
        counts[d.outcome] += 1
    counts["ERROR"] = sum(len(c.check.metrics) for c in result.checks if c.error)
    return counts


def verdict(result) -> str:
    """The gate's one-word result: REGRESSION (exit 4), INCONCLUSIVE (exit 5 with --strict, and also exit 0
    without it -- a gate that could not decide is not called a pass), PASS, or ERROR."""
    code = result.exit_code
    if code == 0 and any(d.outcome == INCONCLUSIVE for c in result.checks for d in c.decisions):
        return "INCONCLUSIVE"
    return {0: "PASS", 4: "REGRESSION", 5: "INCONCLUSIVE"}.get(code, "ERROR")


def gate_document(result) -> dict:
    from deploykit.bench.interleave import summarize_side

    checks = []
    for c in result.checks:
        ck = c.check
        entry = {
            "name": ck.name,
            "mode": ck.mode,
            "target": ck.target,
            "precision": ck.precision,
            "candidate": c.candidate,
            "reference": c.reference,
            "sides": dict(zip(("a", "b"), SIDE_NAMES[ck.mode])),
            "options": c.options,
            "spec": c.spec,
            "target_info": c.target_info,
            "load": c.load,
            "wall_s": c.wall_s,
            "fingerprint_mismatches": c.fingerprint_mismatches,
            "warnings": c.warnings,
            "error": c.error,
            "results": [],
        }
        if c.run is not None:
            entry.update({
                "blocks_per_side": len(c.run.rounds),
                "stop_reason": c.run.stop_reason,
                "measure_wall_s": c.run.wall_s,
                "stats_ms": {"a": summarize_side(c.run.rounds, "a"), "b": summarize_side(c.run.rounds, "b")},
            })
        for m, ev, d in zip(ck.metrics, c.evidence, c.decisions):
            entry["results"].append({"metric": m.metric, **d.to_json(), "log_ratios": list(ev.log_ratios),
                                     "baseline_log_ratios": list(ev.baseline_log_ratios)
                                     if ev.baseline_log_ratios is not None else None})
        if c.run is not None:
            entry["blocks"] = [r.to_json() for r in c.run.rounds]
        checks.append(entry)
    return {
        "schema": GATE_SCHEMA,
        "schema_version": GATE_SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": result.source,
        "verdict": verdict(result),
        "exit_code": result.exit_code,
        "counts": _counts(result),
        "settings": asdict(result.config),
        "wall_s": result.wall_s,
        "checks": checks,
        "environment": result.environment,
    }


def _pct(x: float) -> str:
    return f"{x:+.1%}"


def describe(c, metric, d) -> str:
    """One line for logs and failure messages."""
    return (f"{c.check.name} [{metric.metric}]: {d.outcome}: change {_pct(d.estimate)} "
            f"({d.level:.1%} CI {_pct(d.ci[0])} to {_pct(d.ci[1])}), tolerance {d.tolerance:.1%}, "
            f"MDE {d.mde:.1%}, {d.n} blocks; {d.reason}")


def _details(c, metric, d) -> str:
    lines = [describe(c, metric, d)]
    lines += [f"note: {n}" for n in d.notes]
    if c.run is not None:
        lines.append(f"stopped: {c.run.stop_reason} after {len(c.run.rounds)} blocks per side in {c.run.wall_s:.1f} s")
    lines += [f"fingerprint mismatch: {m}" for m in c.fingerprint_mismatches]
    lines += [f"warning: {w}" for w in c.warnings]
    return "\n".join(lines)


def junit_xml(result) -> str:
    strict = result.config.strict
    cases = []
    failures = errors = skipped = 0
    for c in result.checks:
        per = c.wall_s / max(1, len(c.check.metrics))
        if c.error:
            for m in c.check.metrics:
                tc = ET.Element("testcase", name=f"{c.check.name} [{m.metric}]",
                                classname=f"deploykit.gate.{c.check.target}", time=f"{per:.3f}")
                ET.SubElement(tc, "error", message=c.error, type="DeployKitError").text = c.error
                errors += 1
                cases.append(tc)
            continue
        for m, d in zip(c.check.metrics, c.decisions):
            tc = ET.Element("testcase", name=f"{c.check.name} [{m.metric}]",
                            classname=f"deploykit.gate.{c.check.target}", time=f"{per:.3f}")
            text = _details(c, m, d)
            if d.outcome == REGRESSION or (strict and d.outcome == INCONCLUSIVE):
                ET.SubElement(tc, "failure", message=f"{d.outcome}: {d.reason}", type=d.outcome).text = text
                failures += 1
            elif d.outcome == INCONCLUSIVE:
                ET.SubElement(tc, "skipped", message=f"INCONCLUSIVE: {d.reason}")
                skipped += 1
            ET.SubElement(tc, "system-out").text = text
            cases.append(tc)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    total = f"{result.wall_s:.3f}"
    root = ET.Element("testsuites", name="deploykit gate", tests=str(len(cases)), failures=str(failures),
                      errors=str(errors), skipped=str(skipped), time=total)
    suite = ET.SubElement(root, "testsuite", name="deploykit gate", tests=str(len(cases)), failures=str(failures),
                          errors=str(errors), skipped=str(skipped), time=total, timestamp=stamp,
                          hostname=socket.gethostname() or "localhost")
    props = ET.SubElement(suite, "properties")
    cfg = result.config
    for k, v in (("alpha", cfg.alpha), ("correction", cfg.correction), ("strict", cfg.strict),
                 ("min_blocks", cfg.min_blocks), ("max_blocks", cfg.max_blocks), ("block_time", cfg.block_time),
                 ("cpu", result.environment.get("cpu", {}).get("model")), ("source", result.source)):
        ET.SubElement(props, "property", name=k, value=str(v))
    suite.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


_ICON = {PASS: "✅ PASS", IMPROVEMENT: "🚀 IMPROVEMENT", INCONCLUSIVE: "⚠️ INCONCLUSIVE", REGRESSION: "❌ REGRESSION"}


def _cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def markdown_summary(result) -> str:
    v = verdict(result)
    out = [f"## deploykit latency gate: {v}", ""]
    out += ["| check | metric | outcome | change | interval | tolerance | MDE | blocks |",
            "|---|---|---|---:|---|---:|---:|---:|"]
    for c in result.checks:
        if c.error:
            out.append(f"| {_cell(c.check.name)} | {', '.join(m.metric for m in c.check.metrics)} | 💥 ERROR | | "
                       f"{_cell(c.error)} | | | |")
            continue
        for m, d in zip(c.check.metrics, c.decisions):
            out.append(f"| {_cell(c.check.name)} | {m.metric} | {_ICON[d.outcome]} | {_pct(d.estimate)} | "
                       f"{_pct(d.ci[0])} to {_pct(d.ci[1])} ({d.level:.1%}) | {d.tolerance:.1%} | {d.mde:.1%} | "
                       f"{d.n} |")
    out.append("")
    notes = []
    for c in result.checks:
        for m, d in zip(c.check.metrics, c.decisions):
            if d.outcome != PASS or d.notes:
                notes.append(f"- **{c.check.name} [{m.metric}]**: {d.reason}" + "".join(f"; {n}" for n in d.notes))
        for mm in c.fingerprint_mismatches:
            notes.append(f"- ⚠️ **{c.check.name}: fingerprint mismatch with the baseline**: {mm}")
        for w in c.warnings:
            notes.append(f"- {c.check.name}: {w}")
    out += notes + ([""] if notes else [])
    cfg = result.config
    out.append(f"<sub>Interleaved ABBA blocks; bootstrap intervals over blocks; {cfg.correction} correction at "
               f"alpha {cfg.alpha} over {len(result.decisions)} comparisons; {'strict' if cfg.strict else 'not strict'}"
               f" (INCONCLUSIVE {'fails' if cfg.strict else 'passes'}); {result.wall_s:.0f} s.</sub>")
    return "\n".join(out) + "\n"


def _esc_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _esc_prop(s: str) -> str:
    return _esc_data(s).replace(":", "%3A").replace(",", "%2C")


def workflow_command(kind: str, message: str, title: str | None = None) -> str:
    props = f" title={_esc_prop(title)}" if title else ""
    return f"::{kind}{props}::{_esc_data(message)}"


def annotations(result) -> list[str]:
    strict = result.config.strict
    out = []
    for c in result.checks:
        if c.error:
            out.append(workflow_command("error", c.error, f"deploykit gate: {c.check.name} could not run"))
            continue
        for mm in c.fingerprint_mismatches:
            out.append(workflow_command("warning", f"{c.check.name}: the baseline was measured on a different "
                                        f"machine/software: {mm}", "deploykit gate: fingerprint mismatch"))
        for m, d in zip(c.check.metrics, c.decisions):
            line = describe(c, m, d)
            if d.outcome == REGRESSION:
                out.append(workflow_command("error", line, f"Latency regression: {c.check.name} {m.metric}"))
            elif d.outcome == INCONCLUSIVE:
                out.append(workflow_command("error" if strict else "warning", line,
                                            f"Latency gate inconclusive: {c.check.name} {m.metric}"))
            elif d.outcome == IMPROVEMENT:
                hint = " (refresh the baseline with 'deploykit baseline update')" if c.check.mode == "baseline" else ""
                out.append(workflow_command("notice", line + hint, f"Latency improvement: {c.check.name} {m.metric}"))
    return out


def write_outputs(result, *, reports_dir=None, junit=None, github: bool | None = None,
                  environ=None) -> tuple[list[str], list[str]]:
    """Write what a gate leaves behind: its report JSON (``<stamp>-gate.json`` in ``reports_dir``, never over
    another), JUnit XML (``junit``) and, on GitHub Actions (``github``; None: when GITHUB_ACTIONS=true), the job
    summary. Returns (notes for the log, GitHub annotation lines for stdout)."""
    import os
    from pathlib import Path

    from deploykit.core.atomic import write_json, write_text

    environ = os.environ if environ is None else environ
    notes: list[str] = []
    if reports_dir is not None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path, n = Path(reports_dir) / f"{stamp}-gate.json", 1
        while path.exists():
            n += 1
            path = Path(reports_dir) / f"{stamp}-gate-{n}.json"
        write_json(path, gate_document(result))
        notes.append(f"gate report: {path}")
    if junit is not None:
        write_text(junit, junit_xml(result))
        notes.append(f"JUnit XML: {junit}")
    if github is None:
        github = environ.get("GITHUB_ACTIONS") == "true"
    if not github:
        return notes, []
    summary = environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(markdown_summary(result))
        except OSError as exc:
            notes.append(f"warning: cannot append to $GITHUB_STEP_SUMMARY ({summary}): {exc}")
    return notes, annotations(result)
