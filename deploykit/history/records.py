"""Reports -> history rows: a bench report (``deploykit.report``, also a sweep cell's) is one row; a gate report
(``deploykit.gate``) gives one row per check, the candidate side's latency. Every row carries the run spec's key
(``RunSpec.key``), the machine class, the commit and the time."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

from deploykit.core.errors import InputError
from deploykit.history.store import Row

BENCH_SCHEMA = "deploykit.report"  # report/schema.py SCHEMA
GATE_SCHEMA = "deploykit.gate"  # gate/output.py GATE_SCHEMA (history sits beside the gate: no import of it)


def machine_class(env: dict) -> str:
    """``<CPU model> [<ISA flags hash>] <isa list> t<threads>``: what has to match for two latencies of a series to
    be compared (the host name does not: two runners of one kind are one class)."""
    cpu = env.get("cpu") or {}
    threads = env.get("threads") or cpu.get("usable_cores")
    isa = ",".join(cpu.get("isa") or [])
    return f"{cpu.get('model') or 'unknown CPU'} [{cpu.get('flags_sha256') or '-'}] {isa} t{threads or '?'}".strip()


def content_hash(doc: dict, extra: str = "") -> str:
    return hashlib.sha256((json.dumps(doc, sort_keys=True, default=str) + extra).encode()).hexdigest()[:32]


def current_commit(cwd: Path | None = None) -> str | None:
    """The commit the runs belong to: $DEPLOYKIT_COMMIT, $GITHUB_SHA, else ``git rev-parse HEAD`` here."""
    for var in ("DEPLOYKIT_COMMIT", "GITHUB_SHA"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        p = subprocess.run(["git", "--no-optional-locks", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 and p.stdout.strip() else None


def _time(created: str | None, fallback: float) -> tuple[str, float]:
    if created:
        try:
            return created, datetime.strptime(created, "%Y-%m-%dT%H:%M:%S%z").timestamp()
        except ValueError:
            pass
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(fallback)), fallback


def _spec_fields(spec: dict | None, fallback: dict) -> dict:
    """key, model, target, precision, batch, resolution from the report's run spec (``RunSpec.from_dict``)."""
    if spec:
        from deploykit.spec.run import RunSpec

        try:
            s = RunSpec.from_dict(spec)
            return {"spec_key": s.key, "model": s.model, "target": s.target, "precision": s.precision_label,
                    "batch": s.batch, "resolution": s.resolution}
        except InputError:
            pass
    f = fallback
    return {"spec_key": "|".join(str(f.get(k)) for k in ("model", "target", "precision")) + f"|b{f.get('batch')}",
            **f}


def rows_from_report(doc: dict, *, path: str | None = None, kind: str | None = None, commit: str | None = None,
                     mtime: float | None = None) -> list[Row]:
    """The history rows of one report document (empty for a document of another kind, or one without numbers).
    ``commit``: overrides the commit recorded in the report (deploykit's own sha when nothing else is known)."""
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema == BENCH_SCHEMA:
        return [_bench_row(doc, path=path, kind=kind or "bench", commit=commit, mtime=mtime)]
    if schema == GATE_SCHEMA:
        return _gate_rows(doc, path=path, kind=kind or "gate", commit=commit, mtime=mtime)
    return []


def _commit_of(doc: dict, commit: str | None) -> tuple[str | None, bool | None]:
    if commit:
        return commit, None
    dk = (doc.get("environment") or {}).get("deploykit") or {}
    return dk.get("sha"), dk.get("dirty")


def _bench_row(doc: dict, *, path, kind, commit, mtime) -> Row:
    stats, tp, target = doc.get("stats") or {}, doc.get("throughput") or {}, doc.get("target") or {}
    env = doc.get("environment") or {}
    settings = doc.get("settings") or {}
    ci = stats.get("median_ci95") or [None, None]
    fields = _spec_fields(doc.get("run_spec"), {
        "model": (doc.get("model") or {}).get("label"), "target": target.get("name"),
        "precision": target.get("precision"), "batch": tp.get("batch") or settings.get("batch"),
        "resolution": settings.get("resolution")})
    rel = ((doc.get("reference_workload") or {}).get("relative") or {}).get("p50")
    created, ts = _time(doc.get("created"), mtime or time.time())
    sha, dirty = _commit_of(doc, commit)
    return Row(content_hash=content_hash(doc), machine=machine_class(env), commit_sha=sha,
               dirty=dirty, created=created, created_ts=ts, kind=kind, p50=float(stats["p50"]),
               p90=stats.get("p90"), p99=stats.get("p99"), ci_lo=ci[0], ci_hi=ci[1], n=stats.get("n"),
               items_per_s=tp.get("items_per_s"), rel_cost=rel, report_path=path, **fields)


def _gate_rows(doc: dict, *, path, kind, commit, mtime) -> list[Row]:
    env = doc.get("environment") or {}
    created, ts = _time(doc.get("created"), mtime or time.time())
    sha, dirty = _commit_of(doc, commit)
    out = []
    for i, c in enumerate(doc.get("checks") or []):
        side = ((c.get("stats_ms") or {}).get("b")) or {}  # b = the candidate (gate/output.py SIDE_NAMES)
        if not side.get("p50") or c.get("error"):
            continue
        a = ((c.get("stats_ms") or {}).get("a")) or {}
        rel = side["p50"] / a["p50"] if c.get("mode") == "baseline" and a.get("p50") else None
        fields = _spec_fields(c.get("spec"), {"model": c.get("candidate", {}).get("label")
                                              if isinstance(c.get("candidate"), dict) else c.get("name"),
                                              "target": c.get("target"), "precision": c.get("precision"),
                                              "batch": None, "resolution": None})
        out.append(Row(content_hash=content_hash(c, str(i)),
                       machine=machine_class({**env, "threads": (c.get("options") or {}).get("threads")
                                              or env.get("threads")}),
                       commit_sha=sha, dirty=dirty, created=created, created_ts=ts, kind=kind,
                       p50=float(side["p50"]), p90=side.get("p90"), n=side.get("n"), rel_cost=rel,
                       report_path=path, **fields))
    return out


def report_path(doc: dict, reports_dir: Path | None) -> str | None:
    """The file in ``reports_dir`` that holds ``doc`` (just written by the command): among the newest JSON files
    there, the one of the same schema with the same statistics."""
    if reports_dir is None:
        return None
    try:
        recent = sorted(Path(reports_dir).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[:40]
    except OSError:
        return None
    for f in recent:
        try:
            got = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(got, dict) and got.get("schema") == doc.get("schema") and _numbers(got) == _numbers(doc):
            return str(f)
    return None


def _numbers(doc: dict) -> object:
    """What identifies a run's document whatever its time stamp: the statistics (a gate's: per check)."""
    if doc.get("schema") == GATE_SCHEMA:
        return [(c.get("name"), c.get("stats_ms")) for c in doc.get("checks") or []]
    return doc.get("stats")


def rows_from_file(path: Path, *, kind: str | None = None, commit: str | None = None) -> list[Row]:
    """Rows of one report file; [] for JSON that is no deploykit report; InputError for unreadable JSON."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read report {path}: {exc}") from None
    try:
        return rows_from_report(doc, path=str(path), kind=kind, commit=commit, mtime=Path(path).stat().st_mtime)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"report {path} has no usable numbers ({type(exc).__name__}: {exc})") from None


def report_files(folder: Path) -> list[Path]:
    """Every ``*.json`` under ``folder`` (a reports folder, a sweep folder with its cells), in name order."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise InputError(f"no such folder: {folder}")
    return sorted(p for p in folder.rglob("*.json") if not p.name.startswith(".dk-tmp-"))


def import_folder(store, folder: Path, *, kind: str | None = None, commit: str | None = None) -> tuple[int, int, list]:
    """Append every report under ``folder``: (files read, rows added, [(file, problem)] skipped)."""
    rows, problems, n = [], [], 0
    for f in report_files(folder):
        try:
            got = rows_from_file(f, kind=kind, commit=commit)
        except InputError as exc:
            problems.append((f, str(exc)))
            continue
        n += bool(got)
        rows.extend(got)
    return n, store.append(rows), problems
