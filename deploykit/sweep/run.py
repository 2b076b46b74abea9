"""Running a sweep: plan the cells against the existing table (resume), hand them to an executor, write the
results table after every finished cell, and stop cleanly on Ctrl-C / SIGTERM.

The table on disk is always valid and holds every finished cell: it is rewritten (atomically) after each one, and
an interrupt that arrives while it is being written waits until the write is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from deploykit.core.errors import EXIT_INTERRUPTED, DeployKitError, UsageError
from deploykit.models.select import is_model_name
from deploykit.spec.loadgen import DEFAULT_PERCENTILE, default_min_queries
from deploykit.sweep.spec import BenchSettings, Cell, SweepSpec

FAILED = ("failed", "timeout", "killed")


class SweepInterrupted(DeployKitError):
    """The sweep was stopped by a signal; every finished cell is in the table. Exit code 128 + the signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum if signum else EXIT_INTERRUPTED


# what the --dry-run estimate assumes (measured on a 2-core runner: resnet18 at 64 px exports and verifies in ~18 s)
CELL_START_S = 5.0  # a cell's child: interpreter start, imports, session load, warm-up
EXPORT_S = 20.0  # one export with its verification against PyTorch
QUANTIZE_S = 30.0  # one int8 build (calibration and quantization)
LOADGEN_MIN_DURATION_S = 10.0  # LoadGen's default minimum duration


@dataclass
class Plan:
    """What a sweep will do: every cell, each with an action (run, skip, keep)."""

    cells: list[Cell]
    actions: dict[str, str]  # key -> "run" | "skip" | "done" (ok in the table) | "kept" (failed in the table)
    existing: dict[str, dict] = field(default_factory=dict)  # rows of the table found in the out folder

    @property
    def todo(self) -> list[Cell]:
        return [c for c in self.cells if self.actions[c.key] == "run"]

    def count(self, action: str) -> int:
        return sum(1 for a in self.actions.values() if a == action)

    def estimate(self) -> dict:
        """A rough wall-time range of the cells to run (an estimate, not a promise): each cell's measuring time
        (latency: --min-time to --max-time; LoadGen: its duration, LoadGen's 10 s minimum by default) plus
        ``CELL_START_S`` for the child's start, session load and warm-up; plus ``EXPORT_S`` per distinct export and
        ``QUANTIZE_S`` per distinct int8 build when nothing is in the artifact store yet."""
        low = high = 0.0
        exports, builds = set(), set()
        for c in self.todo:
            st = c.settings or BenchSettings()
            if c.loadgen:
                dur = st.duration if st.duration is not None else LOADGEN_MIN_DURATION_S
                if c.scenario == "server" and c.qps:  # LoadGen also waits for its minimum query count
                    pct = st.percentile if st.percentile is not None else DEFAULT_PERCENTILE["server"]
                    dur = max(dur, (st.min_queries or default_min_queries(pct)) / c.qps)
                low, high = low + dur + CELL_START_S, high + dur * 2 + CELL_START_S  # find-peak steps: more
            else:
                low, high = low + st.min_time + CELL_START_S, high + st.max_time + CELL_START_S
            if is_model_name(c.model):
                exports.add((c.model, c.batch, c.resolution, c.options))
                if c.precision == "int8":
                    builds.add((c.model, c.batch, c.resolution, c.options))
        first = len(exports) * EXPORT_S + len(builds) * QUANTIZE_S
        return {"low_s": low, "high_s": high + first, "cells": len(self.todo), "exports": len(exports),
                "int8_builds": len(builds),
                "basis": f"{len(self.todo)} cells x (measuring time + ~{CELL_START_S:g} s start, load and warm-up)"
                         + (f" + up to {len(exports)} exports x ~{EXPORT_S:g} s" if exports else "")
                         + (f" + {len(builds)} int8 builds x ~{QUANTIZE_S:g} s" if builds else "")
                         + " when the artifact store has none of them"}

    def listing(self) -> list[dict]:
        """The cells as dicts (for --dry-run): key columns, action, and the reason of a skip / kept failure."""
        out = []
        for c in self.cells:
            d = c.describe()
            action = self.actions[c.key]
            reason = c.skip or ""
            if action in ("done", "kept"):
                row = self.existing[c.key]
                reason = f"{row['status']} in the existing table" + (f": {row['reason']}" if row.get("reason") else "")
            out.append({"cell": d["cell"], "model": d["model"], "model_options": d["model_options"],
                        "target_options": d["target_options"],
                        "family": d["family"], "target": d["target"], "precision": d["precision"],
                        "batch": d["batch"], "resolution": d["resolution"], "threads": d["threads"],
                        "scenario": d["scenario"], "qps": d["qps_scheduled"], "action": action, "reason": reason})
        return out


def prelude_commands(p: Plan, models_dir: Path | None) -> list[list[str]]:
    """``deploykit peak`` before the cells where the sweep has bench cells to run (only they report a share of the
    peak): per thread count of the sweep when it has several (its result is cached per machine, so this is quick
    after the first time)."""
    if not any(not c.loadgen for c in p.todo):
        return []
    threads = sorted({c.threads for c in p.todo if c.threads and not c.loadgen})
    extra = ["--models-dir", str(models_dir)] if models_dir is not None else []
    return [["peak", "--threads", str(t), *extra] for t in threads] or [["peak", *extra]]


def sweep_folder(spec: SweepSpec, out: Path | None, resume: bool) -> Path:
    """The sweep's folder: ``-o``, else the study's ``out``, else a new ``sweep-<time>`` in the reports folder
    (not with --resume, which continues a folder that must be named)."""
    import time

    from deploykit.core.config import default_reports_dir

    if out is None and spec.bench.out:
        out = Path(spec.bench.out)
    if out is None:
        if resume:
            raise UsageError("--resume needs the sweep's folder: -o OUT (or a study file with out = ...)")
        out = default_reports_dir() / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(out)


def existing_rows(out: Path) -> dict[str, dict]:
    from deploykit.report.results import RESULTS_CSV, RESULTS_PARQUET, read_results

    if not ((out / RESULTS_PARQUET).is_file() or (out / RESULTS_CSV).is_file()):
        return {}
    df = read_results(out)
    return {r["cell"]: r for r in df.to_dict("records")}


def plan(spec: SweepSpec, out: Path, *, resume: bool = False, retry_failed: bool = False,
         targets_here: bool = True, remeasure_noisy: bool = False) -> Plan:
    """Each cell's action. Without ``resume`` an out folder that already holds a table is refused (nothing is
    overwritten by accident); with it, cells ok in the table are kept, failed ones too unless ``retry_failed``
    (whichever executor ran them), ok ones flagged noisy too unless ``remeasure_noisy``. ``targets_here``: cells
    run on this machine, so a target unavailable here skips its cells (an executor whose cells run elsewhere
    passes False: ``Executor.runs_here``)."""
    cells = spec.cells(targets_here=targets_here)
    rows = existing_rows(out)
    if retry_failed and not resume:
        raise UsageError("--retry-failed re-runs the failed cells of an existing sweep: use it with --resume")
    if remeasure_noisy and not resume:
        raise UsageError("--remeasure-noisy re-runs the noisy cells of an existing sweep: use it with --resume")
    if rows and not resume:
        raise UsageError(f"{out} already holds a sweep's results ({len(rows)} cells): pass --resume to continue it, "
                         "or choose another -o folder")
    if not resume and ((out / SWEEP_FILE).exists() or (out / SWEEP_FILE).is_symlink()):
        raise UsageError(f"{out} already holds a sweep ({SWEEP_FILE}): pass --resume to continue it, or choose "
                         "another -o folder")
    actions = {}
    for c in cells:
        row = rows.get(c.key)
        if c.skip:
            actions[c.key] = "skip"
        elif row is not None and row["status"] == "ok" and not (remeasure_noisy and _flagged(row.get("noisy"))):
            actions[c.key] = "done"
        elif row is not None and row["status"] in FAILED and not retry_failed:
            actions[c.key] = "kept"
        else:
            actions[c.key] = "run"
    return Plan(cells=cells, actions=actions, existing=rows)


def _flagged(v) -> bool:
    """A table's nullable boolean (True, numpy True, pandas NA, None) as a plain bool."""
    try:
        return bool(v) if v is not None and str(v) != "<NA>" else False
    except (TypeError, ValueError):
        return False


@dataclass
class Counts:
    total: int  # cells this run handles (to run)
    ok: int = 0
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def left(self) -> int:
        return self.total - self.ok - self.failed


class _Signals:
    """SIGINT / SIGTERM raise SweepInterrupted, except inside ``critical()`` (a table write), after which a
    pending one is raised. Installed on the main thread only (signal handlers live there)."""

    def __init__(self):
        self.pending: int | None = None
        self.depth = 0
        self.message: Callable[[int], str] = lambda signum: "interrupted"

    def handler(self, signum, frame):
        if self.depth:
            self.pending = signum
            return
        raise SweepInterrupted(self.message(signum), signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, self.handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending is not None:
                signum, self.pending = self.pending, None
                raise SweepInterrupted(self.message(signum), signum)


SWEEP_FILE = "sweep.json"


def read_sweep_file(out: Path) -> dict | None:
    """``out/sweep.json`` as a dict, or None where there is none or it is unusable (a link, a FIFO, a device, not
    JSON): read through the guarded boundary."""
    from deploykit.core.validate import read_cache_json

    data = read_cache_json(out / SWEEP_FILE, max_bytes=16 * 1024 * 1024)
    return data if isinstance(data, dict) else None


def check_resume_settings(out: Path, spec: SweepSpec, force: bool = False) -> None:
    """With --resume: refuse settings other than the ones ``out``'s cells were measured with (the bench settings
    recorded in its sweep.json; the folder and the cell timeout may change), unless ``force``: a resumed sweep
    never mixes cells measured two ways without being told to."""
    from dataclasses import asdict

    old = read_sweep_file(out)
    recorded = (old or {}).get("spec", {}).get("bench") if isinstance((old or {}).get("spec"), dict) else None
    if not isinstance(recorded, dict) or force:
        return
    now = asdict(spec.bench)
    changed = [k for k in now if k not in ("out", "cell_timeout") and k in recorded and recorded[k] != now[k]]
    if changed:
        what = ", ".join(f"{k} {recorded[k]!r} -> {now[k]!r}" for k in changed)
        raise UsageError(f"--resume with other settings than {out}'s cells were measured with ({what}): run with the "
                         "same settings, choose another -o folder, or pass --force-resume to mix them")


def record_run(out: Path, spec: SweepSpec, argv: list[str]) -> Path:
    """Write ``out/sweep.json``: the sweep's spec (study name, matrices, bench settings) as last run, and every
    run of it so far (start time, command line, deploykit version)."""
    import sys

    from deploykit import __version__
    from deploykit.core.atomic import write_json
    from deploykit.sweep.spec import spec_dict

    path = out / SWEEP_FILE
    runs = []
    old = read_sweep_file(out)
    if old is not None:
        runs = [r for r in old.get("runs", []) if isinstance(r, dict)]
    runs.append({"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": list(argv),
                 "python": sys.executable, "deploykit": __version__})
    return write_json(path, {"schema": "deploykit.sweep", "spec": spec_dict(spec), "runs": runs})


def run_sweep(p: Plan, executor, out: Path, *, on_row: Callable[[dict, Counts], None] | None = None,
              prelude: list[list[str]] | None = None, say: Callable[[str], None] | None = None) -> list[dict]:
    """Run the plan's cells with ``executor``; write ``out/results.{parquet,csv}`` after every finished cell;
    return the rows of the plan's cells (in cell order). ``prelude``: deploykit commands run once before the
    cells, their failure only reported through ``say`` (e.g. ``["peak"]``)."""
    from deploykit.report.results import failed_row, write_results

    say = say or (lambda msg: None)
    on_row = on_row or (lambda row, counts: None)
    keys = [c.key for c in p.cells]
    rows: dict[str, dict] = dict(p.existing)  # rows of other cells in the table are kept as they are
    for c in p.cells:
        if p.actions[c.key] == "skip":
            rows[c.key] = failed_row(c.describe(), "skipped", c.skip or "skipped")
    counts = Counts(total=len(p.todo))
    sig = _Signals()

    def ordered() -> list[dict]:
        return [rows[k] for k in keys if k in rows] + [r for k, r in rows.items() if k not in set(keys)]

    def interrupted(signum: int) -> str:
        name = signal.Signals(signum).name
        return (f"sweep interrupted by {name}: {counts.ok + counts.failed} of {counts.total} cells finished this run, "
                f"every finished cell is in {out / 'results.parquet'}; run the same command with --resume to do the "
                f"{counts.left} left")

    sig.message = interrupted
    with sig.installed():
        with sig.critical():
            write_results(ordered(), out)
        for args in prelude or []:
            say(f"{executor.prelude_where}: deploykit {' '.join(args)}")
            limit = executor.bench.cell_timeout
            ok, why = executor.prelude(args, timeout=max(limit, 900) if limit else None)
            if not ok:
                say(f"'deploykit {' '.join(args)}' did not run: {why}")
        finished = iter(executor.run(p.todo))
        try:
            for row in finished:
                with sig.critical():
                    rows[row["cell"]] = row
                    if row["status"] == "ok":
                        counts.ok += 1
                    else:
                        counts.failed += 1
                    write_results(ordered(), out)
                on_row(row, counts)
        finally:  # an interrupt raised here rather than inside the executor's generator: it stops its work too
            close = getattr(finished, "close", None)
            if close is not None:
                close()
    return [rows[k] for k in keys if k in rows]
