"""deploykit sweep: the cross product of models x targets x precision x batch x resolution x threads (x LoadGen
scenario x QPS), one child process per cell (here) or one Slurm job per cell (--executor slurm), one results table
(Parquet + CSV)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from deploykit.cli.common import (POSITIVE, FiniteFloatRange, models_dir_option, print_json, stderr_console,
                                  stdout_console)
from deploykit.cli.history_cmd import history_option, record

LIST = "LIST"


def _executor_names() -> list[str]:
    from deploykit.sweep.executor import executor_names

    return executor_names()


def axis_options(f):
    """A LIST flag for every option a target declares (besides --threads, --precision) and every model option a
    family declares with a flag (--parc-impl): each value one cell (a study file takes the same names as keys).
    Flags that only turn something off (--no-cache) are study-file keys only."""
    from deploykit.models.registry import model_options_declared
    from deploykit.runtimes.options import declared_options

    opts = [(s.flag, s.name, f"Values of {s.flag} ({s.help.rstrip('.') if s.help else s.name}), one cell each.")
            for s in declared_options() if s.flag and s.type is not bool and s.name not in ("threads", "precision")]
    opts += [(o.flag, o.name, f"{o.label or o.name} values ({', '.join(o.choices)}): one cell each for the models that "
              "have the option; other models ignore it [default: the model's].")
             for o in model_options_declared() if o.flag]
    for flag, name, text in reversed(opts):
        f = click.option(flag, name, multiple=True, metavar=LIST, help=text)(f)
    return f


@click.command("sweep")
@click.argument("models", nargs=-1)
@click.option("-t", "--target", "targets", multiple=True, metavar=LIST,
              help="Targets, comma-separated or repeated ('deploykit targets' lists them) [default: ort].")
@click.option("--precision", multiple=True, metavar=LIST, help="fp32 and/or int8 [default: fp32].")
@click.option("--batch", multiple=True, metavar=LIST, help="Batch sizes [default: 1].")
@click.option("--resolution", multiple=True, metavar=LIST,
              help="Input sizes (height = width) [default: the model's / the file's].")
@click.option("--threads", multiple=True, metavar=LIST, help="Thread counts [default: the target's].")
@axis_options
@click.option("--scenario", multiple=True, metavar=LIST,
              help="latency (a 'deploykit bench' cell) and/or LoadGen scenarios server, offline, multistream, "
                   "singlestream (a 'deploykit loadgen' cell) [default: latency].")
@click.option("--qps", multiple=True, metavar=LIST,
              help="Server cells: arrival rates in queries/s, one cell each (other scenarios ignore it) [default: "
                   "LoadGen's, from a calibration].")
@click.option("--study", type=click.Path(path_type=Path), default=None,
              help="A study file (TOML): [[matrix]] blocks with the keys above, [bench] and [loadgen] settings (see "
                   "docs/sweeps.md). Flags below override its settings.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="The sweep's folder: results.parquet, results.csv, cells/<cell>/ reports [default: the study's "
                   "'out', else reports/sweep-<time> under $DEPLOYKIT_REPORTS or ./reports].")
@click.option("--cell-timeout", type=FiniteFloatRange(min=0), default=None,
              help="Seconds a cell may take, export and quantization included; 0 = no limit [default: 1800].")
@click.option("--min-time", type=FiniteFloatRange(min=0), default=None, help="Per cell: bench --min-time [default: 5].")
@click.option("--max-time", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Per cell: bench --max-time [default: 60].")
@click.option("--min-iters", type=POSITIVE, default=None, help="Per cell: bench --min-iters [default: 20].")
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Per cell: bench --warmup [default: 10].")
@click.option("--calib-data", default=None, metavar="DIR|synthetic",
              help="Calibration data of int8 cells [default: synthetic].")
@click.option("--eval-data", default=None, metavar="DIR",
              help="Labelled images (one sub-folder per class) every bench cell runs after its timed loop: top-1 "
                   "on the cell's runtime; int8 cells also the drop against fp32 with a paired 95% CI.")
@click.option("--latency-bound", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="MS",
              help="Server cells: loadgen --latency-bound, at its percentile [default: 100].")
@click.option("--duration", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="S",
              help="LoadGen cells: loadgen --duration, LoadGen's minimum duration [default: 10].")
@models_dir_option
@click.option("--resume", is_flag=True,
              help="Continue the sweep in --out: cells already ok in its table are not run again (nor failed ones, "
                   "without --retry-failed).")
@click.option("--force-resume", is_flag=True,
              help="With --resume: continue even though the bench settings differ from the ones the folder's cells "
                   "were measured with (its sweep.json); the table then mixes both.")
@click.option("--retry-failed", is_flag=True, help="With --resume: run the failed, timed-out and killed cells again.")
@click.option("--remeasure-noisy", is_flag=True,
              help="With --resume: run again the cells the table flags noisy (CV above 10%, or the run's two halves at "
                   "different speeds: a load came or went).")
@click.option("--dry-run", is_flag=True, help="List the cells and what would happen to each; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary (or the --dry-run list) as JSON.")
@click.option("--no-peak", is_flag=True,
              help="Do not run 'deploykit peak' before the cells (it measures this machine's GEMM peak once and caches "
                   "it; the cells' reports give their share of it).")
@click.option("--executor", type=click.Choice(_executor_names()), default="local", show_default=True,
              help="Where cells run: local = one child process per cell on this machine, one at a time; slurm = "
                   "each cell a Slurm job on a node of its own (--exclusive; see docs/fleet.md), -o a folder every "
                   "node sees.")
@click.option("--slurm-partition", metavar="NAME", default=None,
              help="--executor slurm: the partition of the cell jobs [default: the study's [slurm] partition, else "
                   "the cluster's default].")
@click.option("--slurm-time-limit", type=click.IntRange(min=1), metavar="MINUTES", default=None,
              help="--executor slurm: the time limit of each cell job [default: the study's, else the cell timeout "
                   "+ 3 min (+ 15 min for deploykit peak)].")
@click.option("--slurm-sbatch", multiple=True, metavar="OPTION",
              help="--executor slurm: an extra sbatch option for every cell job, in long form (repeat): "
                   "--slurm-sbatch=--account=perf.")
@click.option("--slurm-array/--slurm-job-per-cell", default=None,
              help="--executor slurm: the cells of a target as one job array, or one job per cell [default: the "
                   "study's, else arrays].")
@history_option("Append every finished cell's report to this history store ('deploykit history') [default: "
                "$DEPLOYKIT_HISTORY if set].")
def command(models, targets, precision, batch, resolution, threads, scenario, qps, study, out,
            cell_timeout, min_time, max_time, min_iters, warmup, calib_data, eval_data, latency_bound, duration,
            models_dir, resume, force_resume, retry_failed, remeasure_noisy, dry_run, as_json, no_peak, executor,
            slurm_partition, slurm_time_limit, slurm_sbatch, slurm_array, history, **axes):
    """Run MODELS (names, globs such as 'resnet*', timm:NAME / tv:NAME, .onnx files) on every combination of
    targets, precisions, batch sizes, resolutions and thread counts: each cell is one 'deploykit bench' in its own
    child process, so a crash, a hang past --cell-timeout or an out-of-memory kill is recorded as that cell's
    failure and the sweep goes on. With --scenario server (offline, ...) the cells are 'deploykit loadgen' runs
    instead: serving under MLPerf LoadGen's load, one server cell per --qps value.

    \b
    deploykit sweep resnet18 deit_tiny -t ort,openvino --resolution 64,96 -o reports/sweeps/demo
    deploykit sweep resnet18 -t ort --resolution 64 --scenario server --qps 10,20,40
    deploykit sweep --study studies/example.toml --dry-run
    deploykit sweep --study studies/example.toml --resume
    deploykit sweep --study studies/fleet.toml --executor slurm -o /shared/sweeps/fleet

    The results table (OUT/results.parquet and OUT/results.csv, one row per cell, see docs/sweeps.md) is rewritten
    after every finished cell: Ctrl-C or SIGTERM stops the running cell and keeps every finished one (exit 130 /
    143); --resume then runs only the rest. Cells a model's architecture or this machine cannot run are listed as
    skipped with the reason. With --executor slurm each cell is a Slurm job (the study's [slurm] table maps
    targets to partitions, constraints and GRES); the node decides whether it can run its target.
    """
    from deploykit.core.errors import UsageError
    from deploykit.sweep.executor import EXECUTORS
    from deploykit.sweep.run import plan, prelude_commands, sweep_folder
    from deploykit.sweep.spec import spec_from

    slurm_flags = {"--slurm-partition": slurm_partition, "--slurm-time-limit": slurm_time_limit,
                   "--slurm-sbatch": slurm_sbatch or None, "--slurm-array/--slurm-job-per-cell": slurm_array}
    given = [k for k, v in slurm_flags.items() if v is not None]
    if given and executor != "slurm":
        raise UsageError(f"{given[0]} is a setting of the Slurm executor: add --executor slurm")

    spec = spec_from(models, targets=targets, precision=precision, batch=batch, resolution=resolution,
                     threads=threads, scenario=scenario, qps=qps, study=study, **axes,
                     bench={"min_time": min_time, "max_time": max_time, "min_iters": min_iters, "warmup": warmup,
                            "cell_timeout": cell_timeout, "calib_data": calib_data, "eval_data": eval_data,
                            "latency_bound": latency_bound,
                            "duration": duration})
    out = sweep_folder(spec, out, resume)
    if force_resume and not resume:
        raise UsageError("--force-resume goes with --resume")
    if resume:
        from deploykit.sweep.run import check_resume_settings

        check_resume_settings(out, spec, force=force_resume)
    p = plan(spec, out, resume=resume, retry_failed=retry_failed, targets_here=EXECUTORS.get(executor).runs_here,
             remeasure_noisy=remeasure_noisy)
    prelude = [] if no_peak else prelude_commands(p, models_dir)
    options = {}
    jobs = None
    if executor == "slurm":
        from deploykit.sweep.executor import make_executor
        from deploykit.sweep.sbatch import with_flags

        options["settings"] = with_flags(spec.slurm, partition=slurm_partition, time_limit=slurm_time_limit,
                                         sbatch=slurm_sbatch, array=slurm_array)
        probe = make_executor(executor, spec.bench, out, models_dir=models_dir, **options)
        for args in prelude:
            probe.prelude(args)
        jobs = probe.describe_jobs(p.todo)  # the jobs' sbatch options: a bad setting fails here, before any work
    if dry_run:
        _print_plan(p, out, as_json, jobs)
        return
    from deploykit.core.atomic import ensure_dir
    from deploykit.core.guarded import folder_lock

    ensure_dir(out)
    with folder_lock(out, "sweep folder"):  # a second sweep into it is refused, naming this one
        _run(p, spec, out, executor, models_dir, options, prelude, as_json)
    record(history, folder=out / "cells", kind="sweep")  # the history store, after the folder's lock is released


def _run(p, spec, out: Path, executor: str, models_dir, options: dict, prelude, as_json: bool) -> None:
    from deploykit.sweep.executor import make_executor
    from deploykit.sweep.run import record_run, run_sweep

    record_run(out, spec, sys.argv[1:])
    err = stderr_console()
    show = _Progress(err, p)

    def say(msg: str) -> None:
        from rich.markup import escape

        err.print(f"[dim]{escape(msg)}[/]", soft_wrap=True)

    ex = make_executor(executor, spec.bench, out, models_dir=models_dir, on_start=show.start, say=say, **options)
    started = time.monotonic()
    with show:
        rows = run_sweep(p, ex, out, on_row=show.done, prelude=prelude, say=say)
    _print_summary(rows, p, out, time.monotonic() - started, as_json)


class _Progress:
    """A progress bar on a terminal (cells done / failed / left, ETA), else one line per finished cell."""

    def __init__(self, console, p):
        self.console = console
        self.total = len(p.todo)
        self.progress = None
        self.n = 0
        if console.is_terminal and self.total:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            # one refresh a second: the cells measure on the same cores
            self.progress = Progress(TextColumn("sweep"), BarColumn(bar_width=20),
                                     TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                                     TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.description}"),
                                     console=console, refresh_per_second=1, transient=True)
            self.task = self.progress.add_task("", total=self.total,
                                               counts=f"0 ok, 0 failed, {self.total} left")
        kept = p.count("done") + p.count("kept")
        console.print(f"[dim]sweep: {len(p.cells)} cells: {self.total} to run, {p.count('skip')} skipped"
                      + (f", {kept} already in the table" if kept else "") + "[/]")

    def __enter__(self):
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def start(self, cell) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=f"running {cell.key}")

    def done(self, row: dict, counts) -> None:
        self.n += 1
        text = _row_text(row)
        if self.progress is not None:
            self.progress.update(self.task, advance=1,
                                 counts=f"{counts.ok} ok, {counts.failed} failed, {counts.left} left")
            self.progress.console.print(f"{_status_markup(row['status'])} {row['cell']}  {text}", highlight=False)
        else:
            self.console.print(f"[{self.n}/{self.total}] {row['status']} {row['cell']}  {text}", markup=False,
                               highlight=False)


def _status_markup(status: str) -> str:
    color = {"ok": "green", "skipped": "dim"}.get(status, "red")
    return f"[{color}]{status}[/]"


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _row_text(row: dict) -> str:
    wall = _num(row.get("wall_s"))
    tail = f" ({wall:.1f} s)" if wall is not None else ""
    if row["status"] == "ok":
        if row.get("scenario") not in (None, "", "latency"):  # a LoadGen cell
            return f"p50 {_num_text(row.get('p50_ms'))} ms, p99 {_num_text(row.get('p99_ms'))} ms, " \
                   f"{_num_text(row.get('qps_achieved'))} QPS achieved, {_verdict(row.get('loadgen_valid'))}{tail}"
        return f"p50 {_num(row['p50_ms']):.3f} ms{tail}"
    return f"{row.get('reason') or ''}{tail}"


def _num_text(v) -> str:
    f = _num(v)
    return "-" if f is None else f"{f:.3f}" if abs(f) < 100 else f"{f:.1f}"


def _verdict(valid) -> str:
    valid = _plain(valid)
    return "-" if valid is None else "VALID" if valid else "INVALID"


def _scenario_text(scenario: str, qps) -> str:
    q = _num(qps)
    return scenario + (f" @ {q:g} QPS" if q is not None else "")


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 05 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    h, m = divmod(round(seconds / 60), 60)
    return f"{h} h {m:02d} min"


def _print_plan(p, out: Path, as_json: bool, jobs: list[dict] | None = None) -> None:
    cells = p.listing()
    est = p.estimate()
    if as_json:
        counts = {a: p.count(a) for a in ("run", "skip", "done", "kept")}
        listing = {"out": str(out), "cells": cells, "counts": counts, "estimate": est}
        if jobs is not None:
            listing["slurm_jobs"] = jobs
        print_json(listing)
        return
    from deploykit.cli.tables import Col, print_fitted

    loadgen = any(c["scenario"] != "latency" for c in cells)
    cols = [Col("model", "model", priority=1), Col("target", "target", priority=2),
            Col("precision", "precision", priority=3), Col("batch", "batch", right=True, priority=6),
            Col("resolution", "resolution", right=True, priority=4), Col("threads", "threads", right=True, priority=7),
            Col("options", "options", priority=8), *((Col("scenario", "scenario", priority=5),) if loadgen else ()),
            Col("action", "action", priority=2), Col("reason", "reason", priority=9, wrap=20)]
    rows = [{"model": str(c["model"]), "target": c["target"], "precision": c["precision"], "batch": str(c["batch"]),
             "resolution": str(c["resolution"] or "auto"), "threads": str(c["threads"] or "auto"),
             "options": ",".join(o for o in (c["model_options"], c.get("target_options")) if o),
             "scenario": _scenario_text(c["scenario"], c["qps"]), "action": c["action"], "reason": c["reason"]}
            for c in cells]
    con = stdout_console()
    print_fitted(con, cols, rows, title=f"deploykit sweep --dry-run: {len(cells)} cells, {p.count('run')} to run "
                                        f"-> {out}", hidden_note="--json shows them")
    if est["cells"]:
        con.print(f"estimated time: {_duration(est['low_s'])} to {_duration(est['high_s'])} -- an estimate: "
                  f"{est['basis']}", markup=False, highlight=False)
    for job in jobs or []:
        n = len(job["cells"])
        con.print(f"slurm {'job array' if job['array'] else 'job'}: {n} cell{'s' if n > 1 else ''} "
                  f"({', '.join(job['targets'])}): sbatch {' '.join(job['sbatch'])}", markup=False, highlight=False,
                  soft_wrap=True)


def _print_summary(rows: list[dict], p, out: Path, wall: float, as_json: bool) -> None:
    from deploykit.report.results import RESULTS_CSV, RESULTS_PARQUET

    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("ok", "failed", "timeout", "killed", "skipped")}
    if as_json:
        keep = ("cell", "model", "model_options", "target", "precision", "batch", "resolution", "threads",
                "scenario", "status", "reason", "p50_ms", "ci_low_ms", "ci_high_ms", "p99_ms", "items_per_s",
                "qps_scheduled", "qps_achieved", "loadgen_valid", "wall_s", "node", "job_id", "executor", "report")
        print_json({"results": str(out / RESULTS_PARQUET), "csv": str(out / RESULTS_CSV), "counts": counts,
                    "ran": len(p.todo), "wall_s": wall,
                    "rows": [{k: _plain(r.get(k)) for k in keep} for r in rows]})
        return
    from rich.markup import escape
    from rich.table import Table

    from rich import box

    keys = {"target": "target", "prec": "precision", "batch": "batch", "res": "resolution", "thr": "threads",
            "options": "model_options", "scenario": "scenario"}
    shown = {"target": lambda v: v, "prec": lambda v: v, "batch": lambda v: f"batch {v}",
             "res": lambda v: f"{v} px", "thr": lambda v: f"{v} threads", "options": lambda v: v,
             "scenario": lambda v: "" if v == "latency" else f"LoadGen {v}"}
    constant = {c: _int_text(rows[0][k]) if c in ("batch", "res", "thr") else str(rows[0][k] or "")
                for c, k in keys.items() if len({str(r.get(k)) for r in rows}) == 1}
    title = "deploykit sweep: p50 = median batch latency (ms), CI = its bootstrap 95% CI"
    common = [t for t in (shown[c](v) for c, v in constant.items() if v) if t]
    if common:
        title += "; all cells: " + ", ".join(common)
    table = Table(title=title, box=box.SIMPLE_HEAD)
    loadgen = any(r.get("scenario") not in (None, "", "latency") for r in rows)
    cols = ["model", *(c for c in keys if c not in constant), "status", "p50 ms", "95% CI",
            *(("p99 ms", "QPS", "LoadGen") if loadgen else ()), "items/s", "wall s", "node", "job", "reason"]
    if not any(r.get("job_id") for r in rows):  # cells that ran here: the node is this machine
        cols.remove("node")
        cols.remove("job")
    if not any(r.get("reason") for r in rows):
        cols.remove("reason")
    for col in cols:
        table.add_column(col, justify="right" if col in ("batch", "res", "thr", "p50 ms", "p99 ms", "QPS", "items/s",
                                                         "wall s") else "left", no_wrap=col != "reason")
    for r in rows:
        ok = r["status"] == "ok"
        p50, lo, hi, ips, w = (_num(r.get(k)) for k in ("p50_ms", "ci_low_ms", "ci_high_ms", "items_per_s", "wall_s"))
        cells = {"model": escape(str(r["model"])), "target": r["target"], "prec": r["precision"],
                 "batch": _int_text(r["batch"]), "res": _int_text(r["resolution"]), "thr": _int_text(r["threads"]),
                 "options": ",".join(o for o in (r.get("model_options"), r.get("target_options")) if o),
                 "status": _status_markup(r["status"]),
                 "p50 ms": f"{p50:.3f}" if ok and p50 is not None else "-",
                 "95% CI": f"{lo:.3f}-{hi:.3f}" if ok and lo is not None else "-",
                 "items/s": f"{ips:.1f}" if ok and ips is not None else "-",
                 "wall s": f"{w:.1f}" if w is not None else "-", "node": escape(str(r.get("node") or "")),
                 "job": str(r.get("job_id") or ""), "reason": escape(str(r.get("reason") or "")),
                 "scenario": r.get("scenario") or "", "p99 ms": _num_text(r.get("p99_ms")) if ok else "-",
                 "QPS": _qps_text(r), "LoadGen": _verdict(r.get("loadgen_valid")) if ok else "-"}
        table.add_row(*[cells[c] for c in cols])
    con = stdout_console()
    con.print(table)
    failed = counts["failed"] + counts["timeout"] + counts["killed"]
    con.print(f"{len(rows)} cells: {counts['ok']} ok, {failed} failed"
              + "".join(f" ({counts[s]} {s})" for s in ("timeout", "killed") if counts[s])
              + f", {counts['skipped']} skipped; ran {len(p.todo)} in {wall:.0f} s", highlight=False)
    con.print(f"results: {out / RESULTS_PARQUET} (and {RESULTS_CSV})", highlight=False, soft_wrap=True)


def _qps_text(row: dict) -> str:
    """A LoadGen row's scheduled -> achieved QPS ("" for a bench row)."""
    if row.get("scenario") in (None, "", "latency"):
        return ""
    sched, got = _num(row.get("qps_scheduled")), _num(row.get("qps_achieved"))
    return " -> ".join(t for t in (f"{sched:g}" if sched is not None else "",
                                   _num_text(got) if got is not None else "") if t)


def _int_text(v) -> str:
    f = _num(v)
    return str(int(f)) if f is not None else "auto"


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    if v is None or str(v) == "<NA>" or (isinstance(v, float) and v != v):
        return None
    return v
