"""deploykit bench: latency / throughput / fidelity of models on targets, written as reports."""

from __future__ import annotations

import re

import click

from deploykit.cli.common import (POSITIVE, batch_option, calibration_options, model_opt_option, model_option_flags,
                                  models_dir_option, opset_option, preprocess_options, print_json, reports_dir_option,
                                  resolution_option, resolve_models_dir, resolve_reports_dir, seed_option,
                                  stderr_console, stdout_console, weights_options)
from deploykit.cli.common import FiniteFloatRange  # nan / inf refused
from deploykit.cli.history_cmd import history_option, record
from deploykit.cli.runtime_options import runtime_option, target_option, target_options
from deploykit.cli.specs import specs_from_flags


def hardware_options(f):
    """The targets' own options (device, precision, throughput mode, GPU timing, caches: every runtime option
    the targets declare, but --threads/--graph-opt placed above), then the energy options."""
    return target_options(energy_options(f), exclude=("threads", "graph_opt"))


def energy_options(f):
    """How energy is measured (BenchConfig)."""
    opts = [
        click.option("--energy", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
                     help="Measure energy with every meter readable here (NVML, RAPL) or not at all."),
        click.option("--idle-time", type=FiniteFloatRange(min=0), default=2.0, show_default=True,
                     help="Seconds of idle power measured before warm-up (when a meter is readable)."),
        click.option("--energy-estimate-watts", type=FiniteFloatRange(min=0, min_open=True), default=None,
                     help="Add an energy ESTIMATE from this constant power (labelled estimated; never used silently)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command("bench")
@click.argument("models", nargs=-1)
@target_option(multiple=True, help="Target(s) to run on; repeat or comma-separate ('deploykit targets' lists them).")
@batch_option()
@resolution_option(help="Input height = width [default: the model's / the file's].")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Warm-up iterations.")
@click.option("--min-time", type=FiniteFloatRange(min=0), default=5.0, show_default=True,
              help="Stop rule: measure this many seconds ...")
@click.option("--min-iters", type=POSITIVE, default=20, show_default=True,
              help="... and past them until at least this many iterations (20: the fewest that give the median 10 "
                   "samples on each side) ...")
@click.option("--max-time", type=FiniteFloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="... but never more seconds than this.")
@seed_option(help="Seed of the input tensor (the same for every target).")
@runtime_option("threads")
@runtime_option("graph_opt")
@weights_options()
@model_opt_option()
@model_option_flags
@opset_option()
@models_dir_option
@reports_dir_option
@click.option("--format", "formats", default="json,md,csv", show_default=True, help="Report files to write.")
@click.option("--no-save", is_flag=True, help="Write no report files.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the reports to stdout as a JSON list (one element per model x target, also for one).")
@click.option("--wide", is_flag=True,
              help="Show every column of the table, however wide [default: the columns that fit the terminal].")
@click.option("--reference-workload", is_flag=True,
              help="Also measure the fixed reference workload (refnet-v1) interleaved with the model, for comparisons "
                   "across machines ('deploykit gate --baseline').")
@click.option("--reference-blocks", type=click.IntRange(min=2), default=12, show_default=True,
              help="ABBA blocks per side of the reference-workload step.")
@click.option("--per-layer", is_flag=True,
              help="After the timed loop, profile each layer with the runtime's own profiler (ONNX Runtime profiling, "
                   "OpenVINO performance counters, TensorRT IProfiler) in a separate session: time per node and per "
                   "op type and the precision each layer ran in, in the report and as a table.")
@click.option("--top", type=POSITIVE, default=15, show_default=True,
              help="--per-layer: slowest nodes and op types shown.")
@click.option("--eval-data", type=click.Path(), default=None, metavar="DIR",
              help="After the timed loop, run these labelled images (one sub-folder per class, e.g. 'deploykit data "
                   "digits' val/) through the same session: top-1/top-5 on the runtime that ran it; for --int8 also "
                   "the fp32 model on the same images, the drop with a paired 95% CI and McNemar's p.")
@click.option("--eval-size", type=POSITIVE, default=None, help="--eval-data: at most this many images (seeded sample).")
@preprocess_options
@hardware_options
@click.option("--int8", is_flag=True,
              help="Benchmark the int8 (QDQ) variant: quantized on demand with the calibration options below and "
                   "cached like any artifact (see 'deploykit quantize').")
@calibration_options
@history_option("Append the runs to this history store (SQLite; 'deploykit history') [default: "
                "$DEPLOYKIT_HISTORY if set].")
def command(models, targets, formats, no_save, as_json, wide, models_dir, report_dir, history, **params):
    """Measure MODELS on each target: model names (from 'deploykit models', any timm:NAME or tv:NAME, globs of
    names such as 'parc_*'), or .onnx files.

    Every target gets the same input tensor (from --seed) and the same measurement: session load and the
    first inference are timed apart, then --warmup iterations, then the measured loop: --min-time seconds,
    past them only until --min-iters iterations, never beyond --max-time. Reports: p50/p90/p95/p99, mean,
    stdev, CV, min/max, a bootstrap 95% CI of the median, throughput, outputs compared with the PyTorch fp32
    reference, and the machine's fingerprint, written to <report-dir>/<stamp>-<model>-<target>.{json,md,csv}.
    The table shows the columns that fit the terminal (--wide: all of them).
    """
    from deploykit.bench.plan import plan_runs
    from deploykit.core.config import BenchConfig

    fmt_list = report_formats(formats)
    eval_data = params.pop("eval_data")
    measure = BenchConfig(**{k: params.pop(k) for k in BENCH_PARAMS}, eval_data=str(eval_data) if eval_data else None,
                          per_layer_top=params.pop("top"), reference_blocks=params.pop("reference_blocks"))
    specs = specs_from_flags(models, targets, params, measure=measure, models_dir=models_dir,
                             example=example_command)
    reports_dir = None if no_save else resolve_reports_dir(report_dir)
    reports = execute(plan_runs(specs), models_dir=models_dir, reports_dir=reports_dir, formats=fmt_list,
                      as_json=as_json, wide=wide)
    record(history, reports, reports_dir=reports_dir, kind="bench")


# bench's flags that are the latency measurement's (BenchConfig) under the same names
BENCH_PARAMS = ("batch", "resolution", "warmup", "min_time", "min_iters", "max_time", "seed", "energy", "idle_time",
                "energy_estimate_watts", "reference_workload", "per_layer", "eval_size")


def report_formats(formats: str) -> list[str]:
    """--format's list, checked (one-line errors)."""
    from deploykit.core.errors import UsageError
    from deploykit.report.render import FORMATS

    fmt_list = [f.strip() for f in formats.split(",") if f.strip()]
    if not fmt_list:
        raise UsageError(f"--format {formats!r} names no report format (choose from {', '.join(FORMATS)}; "
                         "--no-save writes none)")
    bad = [f for f in fmt_list if f not in FORMATS]
    if bad:
        raise UsageError(f"unknown report format {bad[0]!r} (choose from {', '.join(FORMATS)})")
    return fmt_list


def execute(specs, *, models_dir, reports_dir, formats=("json", "md", "csv"), as_json=False, wide=False) -> list[dict]:
    """Run latency specs that went through ``plan_runs`` one after another, write each report, then print the table
    (or the JSON)."""
    from deploykit.bench.plan import run_spec
    from deploykit.core.stdio import stdout_to_stderr
    from deploykit.report.render import write_report_files
    from deploykit.report.schema import build_report

    if reports_dir is not None:
        from deploykit.core.atomic import ensure_dir

        ensure_dir(reports_dir)
    err = stderr_console()
    mdir = resolve_models_dir(models_dir)
    reports = []
    said: list[tuple[str, list[str]]] = []  # (run, its warnings): summarised once, under the table
    for spec in specs:
        with stdout_to_stderr():  # stdout is for the table / the JSON
            result = _run_one(err, run_spec, spec, mdir)
        report = build_report(result)
        reports.append(report)
        if reports_dir is not None:
            paths = write_report_files(report, reports_dir, list(formats))
            err.print(f"[dim]report: {', '.join(str(p) for p in paths)}[/]")
        said.append((f"{spec.model} on {spec.target}", list(report["warnings"])))
        energy = report.get("energy") or {}
        if energy.get("status") == "unavailable":
            said[-1][1].append(f"energy: unavailable ({'; '.join(energy['reasons'])})")
    if as_json:
        print_json(reports)  # always a list, one element per run (docs/cli.md: "bench --json")
    else:
        print_table(reports, wide=wide)
        print_layer_tables(reports, wide=wide)
    from rich.markup import escape

    for line in warning_lines(said):
        dim = line.startswith("energy: unavailable")
        err.print(f"[dim]{escape(line)}[/]" if dim else f"[yellow]warning:[/] {escape(line)}")
    return reports


_CV = re.compile(r"^high variation: CV ([0-9.]+%) > ([0-9.]+%)")


def warning_lines(per_run: list[tuple[str, list[str]]]) -> list[str]:
    """Each thing said once: ``per_run`` is (run label, its warnings). The same text in several runs is one line
    naming them ("all 6 runs" when it is every run); the high-variation warnings are one short line with each
    run's CV."""
    total = len(per_run)
    by_text: dict[str, list[str]] = {}
    cvs: list[str] = []
    limit = ""
    for label, warns in per_run:
        for w in dict.fromkeys(warns):
            m = _CV.match(w)
            if m:
                cvs.append(f"{label} {m.group(1)}")
                limit = m.group(2)
            else:
                by_text.setdefault(w, []).append(label)
    lines = []
    if cvs:
        lines.append(f"high variation (CV > {limit}) in {len(cvs)} of {total} run{'s' if total > 1 else ''}: "
                     f"{', '.join(cvs)}; a noisy machine? compare medians by their 95% CIs")
    for text, labels in by_text.items():
        if total == 1:
            lines.append(text)
        elif len(labels) == total:
            lines.append(f"{text} [all {total} runs]")
        else:
            lines.append(f"{text} [{', '.join(labels)}]")
    return lines


def example_command(targets: list[str], int8: bool, calib_data: str | None, models=("resnet50",)) -> str:
    """A complete bench command for what was asked (the default model where none was named)."""
    cmd = ["deploykit", "bench", *models]
    if targets != ["ort"]:
        cmd += ["-t", ",".join(targets)]
    if int8:
        cmd += ["--int8", "--calib-data", calib_data or "synthetic"]
    return " ".join(cmd)


def _run_one(err, run_spec, spec, models_dir):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    model, target, cfg = spec.model, spec.target, spec.bench_config()
    if not err.is_terminal:  # a log: one line per stage, and one when the --min-iters floor extends the run
        def on_floor(phase, iters, elapsed):
            if phase == "min-iters":
                err.print(f"[dim]{model} on {target}: {floor_text(cfg, iters, elapsed)}[/]")

        return run_spec(spec, models_dir=models_dir, say=lambda s: err.print(f"[dim]{s}[/]"), progress=on_floor,
                        planned=True)
    # refreshed by hand from the measuring thread between iterations (auto_refresh would start a render
    # thread that competes with the runtime's threads for the cores being measured)
    from rich.table import Column

    name = f"{model} on {target}"  # kept whole; the stage text gives way on a narrow terminal
    progress = Progress(TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=len(name))),
                        BarColumn(), TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True)),
                        TimeElapsedColumn(), console=err, auto_refresh=False, transient=True)
    task = progress.add_task(name, total=cfg.min_time or 1.0, info="")
    floor = {"from": None}  # set once min-time is reached with fewer than --min-iters iterations

    def say(msg):
        progress.update(task, info=msg)
        progress.refresh()

    def on_progress(phase, iters, elapsed):
        if phase == "min-iters":
            floor["from"] = iters
            err.print(f"[dim]{model} on {target}: {floor_text(cfg, iters, elapsed)}[/]")
        if phase in ("measure", "min-iters"):
            if floor["from"] is None:  # waiting for --min-time
                progress.update(task, completed=min(elapsed, cfg.min_time or 1.0),
                                info=f"{elapsed:.1f} of {cfg.min_time:g} s (--min-time), {iters} iterations")
            else:  # waiting for the --min-iters floor
                progress.update(task, total=cfg.min_iters, completed=iters,
                                info=f"{iters} of {cfg.min_iters} iterations (--min-iters), at most "
                                     f"{cfg.max_time:g} s")
        elif phase == "warmup":
            progress.update(task, info=f"warm-up done ({iters})")
        progress.refresh()

    with progress:
        return run_spec(spec, models_dir=models_dir, say=say, progress=on_progress, planned=True)


def floor_text(cfg, iters: int, elapsed: float) -> str:
    """Why the loop goes on past --min-time: the --min-iters floor, with the time it will take at this pace."""
    per = elapsed / max(iters, 1)
    more = min(per * (cfg.min_iters - iters), cfg.max_time - elapsed)
    pace = f"{per * 1e3:.1f} ms" if per < 1 else f"{per:.2f} s"
    return (f"--min-time {cfg.min_time:g} s reached after {iters} iterations; continuing to {cfg.min_iters} "
            f"(--min-iters), about {more:.1f} s more at {pace} each (--max-time {cfg.max_time:g} s bounds it)")


# the bench table's columns in display order, with their priority (lower = kept first on a narrow terminal):
# what ran (model, its variant, target, precision), the median with its CI, throughput, fidelity; then the rest
BENCH_COLUMNS = [
    ("model", 1), ("variant", 2), ("target", 3), ("precision", 4), ("input", 13), ("p50_ms", 5), ("ci95_ms", 6),
    ("p90_ms", 10), ("p99_ms", 11), ("cv", 9), ("items_per_s", 7), ("mode", 8), ("j_per_inf", 14),
    ("first_ms", 16), ("iterations", 12), ("top1", 17), ("cosine", 18), ("rel_err", 19), ("fidelity", 8),
    ("rss_increase_mb", 15),  # the model's memory: the increase over its load, not the process's history
]
TEXT_COLUMNS = ("model", "variant", "target", "precision", "input", "fidelity", "mode")


def print_table(reports: list[dict], wide: bool = False, console=None) -> None:
    """The results table on ``console`` (stdout), with the columns that fit its width (all with ``wide``)."""
    from deploykit.cli.tables import Col, print_fitted
    from deploykit.report.render import SUMMARY_COLUMNS, fmt, summary_row, variant_text

    heads = dict(SUMMARY_COLUMNS)
    heads["ci95_ms"] = "95% CI"
    rows = []
    for r in reports:
        row = summary_row(r)
        cells = {k: fmt(k, row[k]) for k, _ in BENCH_COLUMNS}
        cells["variant"] = variant_text(r, short=True)
        rows.append(cells)
    drop = set()
    if not any(row["variant"] for row in rows):
        drop.add("variant")
    if not any(r["throughput"].get("mode") == "throughput" for r in reports):
        drop.add("mode")
    if not any((r.get("energy") or {}).get("status") in ("measured", "estimated") for r in reports):
        drop.add("j_per_inf")
    prio = dict(BENCH_COLUMNS)
    if any(row["fidelity"] == "FAIL" for row in rows):  # a failed fidelity check outranks throughput
        prio["fidelity"] = 6.5
    variants: dict[str, set] = {}
    for row in rows:
        variants.setdefault(row["model"], set()).add(row["variant"])
    if not any(len(v) > 1 for v in variants.values()):  # the variant tells the rows apart only when a model
        prio["variant"] = 8.5  # ran in several; else it comes after fidelity on a narrow terminal
    cols = [Col(k, heads[k], right=k not in TEXT_COLUMNS, priority=prio[k]) for k, _ in BENCH_COLUMNS
            if k not in drop]
    print_fitted(console or stdout_console(), cols, rows, wide=wide, title="deploykit bench",
                 caption=table_caption(reports), hidden_note="--wide shows them; the report files have every number")


def table_caption(reports: list[dict]) -> str:
    """What the bench table's numbers need said: the units, why a p90 / p99 is '-' (and the --min-iters that
    shows it), and why items/s is not batch / p50 where the two differ by more than 10%."""
    from deploykit.bench.stats import samples_needed

    notes = ["latency in ms per batch; 95% CI: bootstrap CI of the median"]
    hidden = [q for q in (90, 99) if any(not (r["stats"].get("tails_supported") or {}).get(f"p{q}", True)
                                         for r in reports)]
    if hidden:
        it = "them" if len(hidden) > 1 else "it"
        needs = ", ".join(f"p{q} needs {samples_needed(q)}" for q in hidden)
        notes.append(f"{'/'.join(f'p{q}' for q in hidden)} '-': fewer than 10 samples beyond {it} ({needs} "
                     f"iterations: --min-iters {samples_needed(hidden[-1])} shows {it}; the report has every number)")
    off = [r for r in reports if r["stats"].get("p50") and r["throughput"].get("items_per_s")
           and r["throughput"].get("mode") != "throughput"
           and abs(r["throughput"]["items_per_s"] * r["stats"]["p50"] / (1e3 * r["throughput"].get("batch", 1)) - 1)
           > 0.10]
    if off:
        notes.append("items/s = batch x iterations / wall time, so it follows the mean latency: below batch / p50 "
                     f"when a run has slow outliers ({len(off)} run{'s' if len(off) > 1 else ''} here)")
    return "; ".join(notes)


# per-layer tables: columns by priority (lower = kept first on a narrow terminal)
LAYER_OP_PRIORITY = {"op_type": 1, "share": 2, "time_ms": 3, "precisions": 4, "count": 5}
LAYER_NODE_PRIORITY = {"name": 1, "share": 2, "precision": 3, "op_type": 4, "time_ms": 5, "rank": 6}


def print_layer_tables(reports: list[dict], wide: bool = False, console=None) -> None:
    """The per-layer profiles (bench --per-layer), after the results table: a line on the softmax and the matmuls,
    the op types, then the slowest nodes; the columns that fit the terminal (all with ``wide``)."""
    from rich.markup import escape

    from deploykit.bench.layers import softmax_text
    from deploykit.cli.tables import Col, print_fitted
    from deploykit.report.render import LAYER_NODE_COLUMNS, LAYER_OP_COLUMNS, per_layer_rows, per_layer_title

    out = console or stdout_console()
    for r in reports:
        pl = r.get("per_layer")
        if not pl:
            continue
        ops, nodes = per_layer_rows(pl)
        out.print()
        out.print(escape(per_layer_title(r)))
        out.print(escape(softmax_text(pl)))
        for note in pl.get("notes", []):
            out.print(f"[dim]note: {escape(note)}[/]")
        numeric = ("time_ms", "share", "count", "rank")
        for columns, prio, rows, title in ((LAYER_OP_COLUMNS, LAYER_OP_PRIORITY, ops, "by op type"),
                                           (LAYER_NODE_COLUMNS, LAYER_NODE_PRIORITY, nodes, "slowest nodes")):
            cols = [Col(k, head, right=k in numeric, priority=prio[k]) for k, head in columns]
            print_fitted(out, cols, rows, wide=wide, title=title)

