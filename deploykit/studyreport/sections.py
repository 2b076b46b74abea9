"""The study report's content as data: a list of ``Section`` (title, sentences, a table with its columns, plots,
or why there is nothing to show), built once per analysis by the ``*_section`` functions below. The HTML page
(html.py) and the Markdown file (markdown.py) each render that list; neither knows a section by name.

Numbers in the tables are written by report/numbers.py; a missing number is an empty cell here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np
import pandas as pd

from deploykit.report import numbers as N
from deploykit.studyreport.analysis import Analysis, CellReports, OptionComparison, series_label


@dataclass
class ReportData:
    df: pd.DataFrame
    source: str
    cells: CellReports
    analysis: Analysis
    plots: list = field(default_factory=list)  # plots.Plot
    title: str = "deploykit report"
    generated: str = ""


Column = tuple[str, Callable[[pd.Series], str]]  # (header, the cell's text from a row)


@dataclass
class Table:
    df: pd.DataFrame
    columns: list[Column]


@dataclass
class Section:
    """One part of the report. A writer shows, in order: the title, ``notes`` (how the numbers were made, in small
    type), ``text`` (findings, in plain sentences), the plots, the table or else ``skipped`` (why there is none),
    ``after`` (notes on the table) and the subsections."""

    id: str | None  # the page anchor of a top-level section; None for a subsection
    title: str
    nav: str = ""  # the table of contents' name when shorter than the title
    notes: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    plots: list = field(default_factory=list)  # plots.Plot: a figure, or why it was not drawn
    table: Table | None = None
    skipped: str | None = None
    after: list[str] = field(default_factory=list)
    parts: list[Section] = field(default_factory=list)
    # the "Not shown" section only: (anchor, what, why) of each analysis and plot the table has no data for
    missing: list[tuple[str, str, str]] = field(default_factory=list)

    def has_data(self) -> bool:
        """Whether the section shows anything measured (a table, a drawn plot, a finding, a part that does)."""
        return (self.table is not None or any(p.figure is not None for p in self.plots) or bool(self.text)
                or any(p.has_data() for p in self.parts))


# ------------------------------------------------------------------------------------------- cell texts

fnum = partial(N.number, missing="")
fint = partial(N.count, missing="")
fx = partial(N.ratio, missing="")
fpct = partial(N.pct, missing="")
fg = partial(N.given, missing="")


def fci(lo, hi, digits: int | None = None) -> str:
    return N.interval(lo, hi, digits=digits, missing="")


def fside(v) -> str:
    """A crossover side length: ``384 px``; "never" when there is none."""
    if N.value(v) is None:
        return ""
    return "never" if math.isinf(v) else f"{N.number(v, 0)} px"


def fside_ci(lo, hi) -> str:
    """A crossover side length's CI; an infinite upper bound (some replicates never cross) reads ∞."""
    text = N.interval(lo, hi, digits=0)
    return f"{text} px" if text else ""


def fverdict(v) -> str:
    return "" if v is None else "VALID" if v else "INVALID"


def _col(name: str, header: str, fmt=fnum) -> Column:
    return header, lambda r: fmt(r[name])


def _present(df: pd.DataFrame, name: str) -> bool:
    if name not in df.columns:
        return False
    col = df[name]
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return bool(np.isfinite(col.astype(float)).any())
    return bool((col.astype(str).replace({"nan": "", "None": ""}) != "").any())


def _model(r) -> str:
    return series_label(r["model"], r["model_options"])


# --------------------------------------------------------------------------------------------- columns

NUMERIC_HEADERS = ("ms", "batch", "res", "threads", "items/s", "GMACs", "params", "GFLOP", "peak", "MB", "J/",
                    "QPS", "k", "CI", "R²", "speed", "exit", "pairs", "models", "lead", "c0", "c1", "c2", "%")


def is_numeric(header: str) -> bool:
    """Whether a column holds numbers (right-aligned), told by its header."""
    return header not in ("model", "options", "family", "how", "models measured", "reason", "fidelity") and any(
        t in header for t in NUMERIC_HEADERS)


def results_columns(df: pd.DataFrame) -> list[Column]:
    from deploykit.studyreport.plots import peak_share_percent

    share = peak_share_percent(df["peak_share"])
    cols: list[Column] = [_col("model", "model", str)]
    for name, header in (("model_options", "options"), ("family", "family")):
        if _present(df, name):
            cols.append(_col(name, header, str))
    cols += [_col("target", "target", str), _col("precision", "precision", str), _col("batch", "batch", fint),
             _col("resolution", "res", fint)]
    if _present(df, "threads"):
        cols.append(_col("threads", "threads", fint))
    if (df["scenario"] != "latency").any():
        cols.append(_col("scenario", "scenario", str))
    cols += [_col("p50_ms", "p50 ms"), ("95% CI (ms)", lambda r: fci(r["ci_low_ms"], r["ci_high_ms"]))]
    for name, header in (("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("cv_pct", "CV %"), ("items_per_s", "items/s"),
                         ("gmacs", "GMACs"), ("params_m", "params M"), ("gflops", "GFLOP/s")):
        if _present(df, name):
            cols.append(_col(name, header))
    if _present(df, "peak_share"):
        cols.append(("% of peak", lambda r: fpct(share.get(r.name, np.nan))
                     + (f" ({r['peak_kind']})" if r["peak_kind"] and r["peak_kind"] != "measured" else "")))
    for name, header in (("rss_increase_mb", "RSS +MB"), ("gpu_peak_mb", "GPU peak MB"),
                         ("artifact_mb", "artifact MB"), ("j_per_item", "J/item"), ("qps_achieved", "QPS")):
        if _present(df, name):
            cols.append(_col(name, header))
    if _present(df, "fidelity"):
        cols.append(_col("fidelity", "fidelity", str))
    return cols


def failed_columns(df: pd.DataFrame) -> list[Column]:
    cols = [_col("model", "model", str)]
    if _present(df, "model_options"):
        cols.append(_col("model_options", "options", str))
    cols += [_col("target", "target", str), _col("precision", "precision", str), _col("batch", "batch", fint),
             _col("resolution", "res", fint), _col("status", "status", str), _col("exit_code", "exit", fint),
             _col("reason", "reason", str)]
    return cols


EXPONENT_COLUMNS: list[Column] = [
    ("model", _model), _col("family", "family", str), _col("target", "target", str),
    _col("precision", "precision", str), _col("batch", "batch", fint), _col("resolutions", "resolutions", str),
    ("k", lambda r: fnum(r["k"], 3)), ("95% CI of k", lambda r: fci(r["k_ci_low"], r["k_ci_high"], 3)),
    ("k first segment", lambda r: fnum(r["k_first"], 2)), ("k last segment", lambda r: fnum(r["k_last"], 2)),
    ("R² (log-log)", lambda r: fnum(r["r2"], 4)),
]
ATT_MACS_COLUMNS: list[Column] = [
    ("model", _model), _col("family", "family", str), _col("resolutions", "resolutions", str),
    ("attention share (first)", lambda r: fpct(100 * r["attn_share_first"])),
    ("attention share (last)", lambda r: fpct(100 * r["attn_share_last"])),
    ("attention > half of MACs above", lambda r: fside(r["crossover_side"])), _col("how", "how", str),
]
ATT_TIME_COLUMNS: list[Column] = [
    ("model", _model), _col("target", "target", str), _col("precision", "precision", str),
    _col("batch", "batch", fint), _col("resolutions", "resolutions", str),
    ("c0 ms", lambda r: fnum(r["c0_ms"])), ("c1 ms/Mpx", lambda r: fnum(r["c1_ms_per_mpix"])),
    ("c2 ms/Mpx²", lambda r: fnum(r["c2_ms_per_mpix2"])),
    ("quadratic > linear above", lambda r: fside(r["crossover_side"])),
    ("95% CI", lambda r: fside_ci(r["side_ci_low"], r["side_ci_high"])),
    ("within measured range", lambda r: "yes" if r["in_range"] else "no (extrapolated)"),
    ("R²", lambda r: fnum(r["r2"], 4)),
]
INT8_FAMILY_COLUMNS: list[Column] = [
    ("family", lambda r: r["family"]), _col("target", "target", str), _col("models", "models", fint),
    ("median speed-up", lambda r: fx(r["speedup_median"])),
    ("range over models", lambda r: f"{fx(r['speedup_min'])} – {fx(r['speedup_max'])}"),
    _col("model_names", "models measured", str),
]
INT8_MODEL_COLUMNS: list[Column] = [
    ("model", _model), _col("family", "family", str), _col("target", "target", str), _col("pairs", "pairs", fint),
    ("median speed-up", lambda r: fx(r["speedup_median"])),
    ("min – max", lambda r: f"{fx(r['speedup_min'])} – {fx(r['speedup_max'])}"),
]


def server_columns(t: pd.DataFrame) -> list[Column]:
    """The serving table: one row per LoadGen server cell."""
    cols: list[Column] = [("model", _model), _col("target", "target", str), _col("precision", "precision", str)]
    for name, header in (("batch", "batch"), ("resolution", "res"), ("threads", "threads")):
        if t[name].nunique(dropna=False) > 1 or name == "resolution":
            cols.append(_col(name, header, fint))
    cols += [("scheduled QPS", lambda r: fg(r["qps_scheduled"])), ("achieved QPS", lambda r: fnum(r["qps_achieved"])),
             _col("p50_ms", "p50 ms"), _col("p99_ms", "p99 ms")]
    if _present(t, "latency_bound_ms"):
        cols.append(("bound ms", lambda r: fg(r["latency_bound_ms"])
                     + (f" (p{fg(r['percentile'])})" if r["percentile"] == r["percentile"] else "")))
    cols.append(("LoadGen", lambda r: fverdict(r["valid"])))
    return cols


def option_columns(t: pd.DataFrame) -> list[Column]:
    """A model option's table: p50 of each value measured, the fastest, its lead over the next."""
    cols: list[Column] = [_col("model", "model", str)]
    if _present(t, "other_options"):
        cols.append(_col("other_options", "options", str))
    cols += [_col("target", "target", str), _col("precision", "precision", str), _col("batch", "batch", fint),
             _col("resolution", "res", fint)]
    for c in t.columns:
        if c.startswith("p50_") and c.endswith("_ms"):
            cols.append(_col(c, f"p50 {c[4:-3]} ms"))
    cols += [_col("fastest", "fastest", str), ("lead", lambda r: fx(r["next_ratio"])),
             ("clear (CIs apart)", lambda r: "yes" if r["clear"] else "no")]
    return cols


# -------------------------------------------------------------------------------------------- sentences

def serving_note(t: pd.DataFrame) -> str:
    """One sentence per model and target: the highest achieved QPS among its VALID server cells."""
    parts = []
    for (model, opts, target, precision), g in t.groupby(["model", "model_options", "target", "precision"],
                                                          sort=True):
        ok = g[g["valid"].map(lambda v: v is True).astype(bool)]
        bad = int(g["valid"].map(lambda v: v is False).sum())
        best = (f"VALID up to {fnum(ok['qps_achieved'].max())} QPS achieved" if len(ok)
                else "no VALID server cell")
        parts.append(f"{series_label(model, opts)} on {target} ({precision}): {best}"
                     + (f", {bad} INVALID" if bad else ""))
    return "; ".join(parts) + "." if parts else ""


def watch_verdict(oc: OptionComparison) -> str:
    """One sentence on the value the option's declaration watches (ParC: fft): is it ever the fastest?"""
    t, watch = oc.table, oc.option.watch
    if not watch or t.empty or f"p50_{watch}_ms" not in t.columns:
        return ""
    wins = t[t["fastest"] == watch]
    if wins.empty:
        return f"{watch} is not the fastest {oc.label} at any of the {len(t)} settings measured."
    where = ", ".join(f"{r['model']} {r['target']} {r['precision']} at {fint(r['resolution'])}"
                      + ("" if r["clear"] else " (CIs overlap)") for _, r in wins.iterrows())
    return f"{watch} is the fastest {oc.label} at {len(wins)} of {len(t)} settings: {where}."


SERVING_NOTE = ("LoadGen server cells: queries arrive at random (Poisson) at the scheduled QPS; p50 / p99 are "
                "LoadGen's own percentiles of the per-query latency, VALID / INVALID its verdict (the bound at its "
                "percentile met, enough queries and duration, early stopping).")

METHODS = (
    "Every number comes from the cells with status ok in the latency scenario, except the serving section (the "
    "LoadGen server cells); a series is one model with its options on one target, precision, batch size and "
    "thread count. p50 is the median latency of a cell, with the bootstrap 95% CI of the median measured by "
    "deploykit bench.",
    "Complexity exponent: k and a in latency = a·pixels^k by least squares on log(latency) against log(pixels), "
    "pixels = resolution². Its CI refits k on bootstrap replicates in which each point's median is drawn from "
    "its own bootstrap distribution (the cell's raw samples, seeded per point); a cell without raw samples "
    "contributes a log-normal draw matching its median and CI. The CI covers measurement noise only: how well "
    "one power law describes the curve shows in R² and in the first and last segment slopes.",
    "Attention crossover by MACs: the share of MACs in attention's activation-activation MatMuls (QK^T, AV); "
    "log(attention MACs / other MACs) is interpolated linearly in log(pixels) between the resolutions measured, "
    "and the crossover is where attention reaches half of all MACs (extrapolated from the two largest "
    "resolutions when it is not reached).",
    "Attention crossover by time: t(P) = c0 + c1·P + c2·P² over pixel counts P with non-negative coefficients, "
    "each residual divided by its point's time; the quadratic term exceeds the linear one for P > c1/c2, side "
    "length √(c1/c2). Its CI comes from the same bootstrap replicates; 'never' when c2 = 0.",
    "Model options (a ParC model's implementation, ...): the p50 of each value a model was measured with at the "
    "same other settings; the fastest value's lead is clear when its CI of the median lies below every other's.",
    "int8 speed-up: p50 fp32 / p50 int8 of cells that differ only in precision; per model the median over "
    "resolutions and batches, per family the median over its models.",
    "Pareto front: a cell is on the front when no other cell of the same target and precision has at least as "
    "many MACs (parameters) at no more latency.",
)


# --------------------------------------------------------------------------------------------- sections

def _table(df: pd.DataFrame, columns: list[Column]) -> Table | None:
    return Table(df, columns) if len(df) else None


SUMMARY_PLOT = "latency_summary"


def summary_section(rd: ReportData) -> Section:
    """The answer first: p50 per model and target, as a chart and a table, with the fastest target per row."""
    from deploykit.studyreport.analysis import latency_summary

    rows, targets, where = latency_summary(rd.df)
    cols: list[Column] = [("model", lambda r: r["label"])]
    for t in targets:
        cols.append((f"{t} p50 ms", lambda r, t=t: fnum(r[f"p50|{t}"])))
    if len(targets) > 1:
        cols.append(("fastest (lead over the next)",
                     lambda r: f"{r['fastest']} ({fx(r['lead'])})" if r["fastest"] else ""))
    plots = [p for p in rd.plots if p.name == SUMMARY_PLOT and p.figure is not None]
    return Section("summary", "Summary", nav="Summary",
                   notes=[f"At {', '.join(where)}; the results table below has every cell."] if where else [],
                   plots=plots, table=_table(rows, cols) if len(rows) else None,
                   skipped="No cell finished ok in the latency scenario.")


def plots_section(rd: ReportData) -> Section:
    return Section("plots", "Plots", plots=[p for p in rd.plots if p.figure is not None and p.name != SUMMARY_PLOT])


def exponents_section(an: Analysis) -> Section:
    t = an.exponents
    methods = sorted({m for m in t.get("ci_method", [])})
    return Section(
        "exponents", "Complexity exponents",
        notes=["latency ≈ a · pixels^k, least squares on log-log over the resolutions measured; k = 1: linear in "
               "pixels, k = 2: quadratic. The CI is a bootstrap over each point's median (measurement noise); the "
               "first/last segment slopes show how k changes with resolution."],
        table=_table(t, EXPONENT_COLUMNS), skipped="No series with two or more resolutions.",
        after=(["CI basis: " + " | ".join(methods)] if methods else []) + noisy_fit_notes(t))


def noisy_fit_notes(t) -> list[str]:
    """What the exponent fits did with cells flagged noisy (CV above 10% or a burst within the run)."""
    out = []
    for _, r in t.iterrows():
        name = " ".join(str(r[c]) for c in ("model", "target", "precision") if c in r and str(r[c]))
        if int(r.get("noisy_excluded", 0) or 0):
            out.append(f"{name}: {int(r['noisy_excluded'])} noisy cell(s) left out of the fit")
        if int(r.get("noisy_used", 0) or 0):
            out.append(f"{name}: the fit rests on {int(r['noisy_used'])} noisy cell(s) (too few quiet ones); "
                       "re-measure them (deploykit sweep --resume --remeasure-noisy)")
    return out


def attention_section(an: Analysis) -> Section:
    by_macs = Section(None, "By MACs", table=_table(an.attention_macs, ATT_MACS_COLUMNS),
                      skipped="No attention model (family vit/parc or gmacs_attention > 0) in the table.")
    by_time = Section(
        None, "By measured time",
        notes=["t(P) = c0 + c1·P + c2·P² fitted over pixel counts P (non-negative least squares on relative "
               "residuals); the quadratic term exceeds the linear one above the side length √(c1/c2). CI: "
               "bootstrap over each point's median."],
        table=_table(an.attention_time, ATT_TIME_COLUMNS),
        skipped="No attention model measured at three or more resolutions.",
        after=[f"not fitted: {n}" for n in an.attention_time_notes])
    return Section("attention", "Attention crossover", parts=[by_macs, by_time])


def option_section(oc: OptionComparison, anchor: str) -> Section:
    """A model option's values compared (the ParC implementations): the watched value's verdict, the table."""
    verdict = watch_verdict(oc)
    return Section(anchor, f"{oc.label}s", text=[verdict] if verdict else [],
                   table=_table(oc.table, option_columns(oc.table)),
                   skipped=f"No model measured with two or more {oc.name} values at the same settings.")


def int8_section(an: Analysis) -> Section:
    if not len(an.int8_family):
        return Section("int8", "int8 speed-up", skipped="No fp32 cell with an int8 twin.")
    return Section("int8", "int8 speed-up", parts=[
        Section(None, "Per family (median over models)", table=Table(an.int8_family, INT8_FAMILY_COLUMNS)),
        Section(None, "Per model and target (median over resolutions and batches)",
                table=Table(an.int8_model, INT8_MODEL_COLUMNS))])


def serving_section(an: Analysis) -> Section:
    t = an.server
    return Section("serving", "Serving under load", notes=[SERVING_NOTE] if len(t) else [],
                   text=[serving_note(t)] if len(t) else [], table=_table(t, server_columns(t)),
                   skipped="No LoadGen server cell (scenario server) finished ok.")


SAME_HEADERS = ("options", "family", "target", "precision", "batch", "res", "threads", "scenario")


def results_section(df: pd.DataFrame) -> Section:
    """Every ok cell; a column with one value in every row is said once above the table (a narrower table)."""
    ok = df[df["status"] == "ok"]
    cols = results_columns(ok)
    same = []
    if len(ok) > 1:
        keep = []
        for header, f in cols:
            values = {str(f(r)) for _, r in ok.iterrows()} if header in SAME_HEADERS else set()
            if len(values) == 1:
                value = values.pop()
                if value:
                    same.append(f"{header} {value}")
            else:
                keep.append((header, f))
        cols = keep
    return Section("results", f"Results ({len(ok)} ok cells)", nav="Results",
                   notes=[f"Every row: {' · '.join(same)}."] if same else [],
                   table=_table(ok, cols), skipped="No cell finished ok.")


def failed_section(df: pd.DataFrame) -> Section:
    bad = df[df["status"] != "ok"]
    return Section("failed", f"Cells not ok ({len(bad)})", nav="Cells not ok",
                   table=_table(bad, failed_columns(bad)), skipped="Every cell finished ok.")


def methods_section() -> Section:
    return Section("methods", "Methods", text=list(METHODS))


FIXED_IDS = ("summary", "plots", "not-shown", "exponents", "attention", "int8", "serving", "results", "failed",
             "methods")


def option_anchor(oc: OptionComparison, taken: set[str]) -> str:
    """The page anchor of an option's section: its family (``parc``), else ``option-<name>``."""
    fam = getattr(oc.option, "family", "") or ""
    return fam if fam and fam not in taken else f"option-{oc.name}"


def build_sections(rd: ReportData) -> list[Section]:
    """The sections of the report with something to show, in page order (the summary first), then one "Not shown"
    section naming each analysis and plot the table has no data for, and why."""
    an = rd.analysis
    taken = set(FIXED_IDS)
    options = []
    for oc in an.options:
        anchor = option_anchor(oc, taken)
        taken.add(anchor)
        options.append(option_section(oc, anchor))
    every = [summary_section(rd), plots_section(rd), exponents_section(an), attention_section(an), *options,
             int8_section(an), serving_section(an), results_section(rd.df), failed_section(rd.df)]
    shown: list[Section] = []
    missing: list[tuple[str, str, str]] = []
    for s in every:
        if not s.has_data():
            if s.skipped and s.id not in ("plots", "failed"):
                missing.append((f"skipped-section-{s.id}", s.title, s.skipped))
            for part in s.parts:
                missing.append((f"skipped-section-{s.id}-{len(missing)}", f"{s.title}: {part.title}",
                                part.skipped or ""))
            continue
        if s.parts:
            for part in s.parts:
                if not part.has_data():
                    missing.append((f"skipped-section-{s.id}-{len(missing)}", f"{s.title}: {part.title}",
                                    part.skipped or ""))
            s.parts = [part for part in s.parts if part.has_data()]
        shown.append(s)
    missing += [(f"skipped-{p.name}", p.title, p.skipped or "") for p in rd.plots if p.figure is None]
    if missing:
        shown.append(Section("not-shown", "Not shown for this table", nav="Not shown", missing=missing,
                             notes=["Analyses and plots with no data in this table, and what they need."]))
    return shown + [methods_section()]


# ------------------------------------------------------------------------------------------------ header

def status_counts(df: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in df["status"].value_counts().sort_index().items()}


def created_range(df: pd.DataFrame) -> str:
    c = sorted(v for v in df["created"] if v)
    return "" if not c else (c[0] if c[0] == c[-1] else f"{c[0]} to {c[-1]}")


def machine_lines(rd: ReportData) -> list[str]:
    """Plain-text lines describing the machines (from the cells' report fingerprints), for either format."""
    envs = rd.cells.environments
    if not envs:
        hosts = sorted({h for h in rd.df["host"] if h})
        why = "no cell report was readable" if rd.cells.unreadable else "no cell report with an environment"
        return [f"machine: unknown ({why})" + (f"; hosts: {', '.join(hosts)}" if hosts else "")]
    lines = []
    for m in sorted(envs, key=lambda m: -m["cells"]):
        pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if k in ("onnxruntime", "openvino", "tensorrt",
                                                                           "torch"))
        parts = [m["cpu"]]
        if m["cores"]:
            parts.append(f"{m['cores']} usable cores")
        if m["isa"]:
            parts.append(m["isa"])
        if m["gpu"]:
            parts.append(f"GPU {m['gpu']}")
        if m["os"]:
            parts.append(m["os"])
        if m["python"]:
            parts.append(f"Python {m['python']}")
        if pk:
            parts.append(pk)
        host = f" on {', '.join(m['hosts'])}" if m["hosts"] else ""
        lines.append(f"{' · '.join(parts)} ({m['cells']} cells{host})")
    if len(envs) > 1:
        lines.append("warning: the cells ran on more than one machine or software stack; compare within one")
    return lines
