"""``deploykit report``: a results table (or a sweep folder) -> one self-contained HTML page, or Markdown with
PNG plots beside it, plus optionally every plot as PNG and SVG.

The HTML page works offline and fetches nothing: CSS inline, plots inline as SVG, no script, and a Content
Security Policy that forbids every external resource. Every string from the table or the cell reports
(model names, options, paths, failure reasons) goes through ``html.escape``.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from deploykit import __version__
from deploykit.core.atomic import ensure_dir, write_bytes, write_text
from deploykit.core.errors import UsageError
from deploykit.studyreport.analysis import (Analysis, CellReports, analyze, find_table, load_results, normalize,
                                            read_cell_reports, series_label)

FORMATS = {".html": "html", ".htm": "html", ".md": "md"}


@dataclass
class ReportData:
    df: pd.DataFrame
    source: str
    cells: CellReports
    analysis: Analysis
    plots: list = field(default_factory=list)  # plots.Plot
    title: str = "deploykit report"
    generated: str = ""


def prepare(df: pd.DataFrame, *, base_dir: Path | None = None, source: str = "", title: str | None = None,
            n_boot: int = 1000, seed: int = 0) -> ReportData:
    """Analyse a results table (contract columns; ``normalize`` fills the missing ones) and draw its plots."""
    from deploykit.studyreport.plots import make_plots

    df = normalize(df, where=source or "results table")
    cells = read_cell_reports(df, base_dir)
    an = analyze(df, cells, n_boot=n_boot, seed=seed)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return ReportData(df=df, source=source, cells=cells, analysis=an, plots=make_plots(df, an),
                      title=title or "deploykit report", generated=now)


def write_report(results: Path | str, output: Path | str, *, plots_dir: Path | str | None = None,
                 title: str | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Read ``results`` (a table or a sweep folder), write ``output`` (.html or .md; Markdown puts its PNG plots
    in ``<stem>-plots/`` beside it) and, with ``plots_dir``, every plot as PNG and SVG. Returns what was written
    and which plots were skipped, with why."""
    from deploykit.studyreport import plots as P

    output = Path(output)
    fmt = FORMATS.get(output.suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot tell the report format from {output.name!r}: use a .html or .md file name")
    table = find_table(results)
    df, base = load_results(table)
    rd = prepare(df, base_dir=base, source=str(table), title=title or f"deploykit report: {_source_name(table)}",
                 n_boot=n_boot, seed=seed)
    written = []
    if fmt == "html":
        written.append(write_text(output, render_html(rd)))
    else:
        img_dir = output.parent / f"{output.stem}-plots"
        text, images = render_markdown(rd, f"{output.stem}-plots")
        for name, data in images.items():
            written.append(write_bytes(img_dir / name, data))
        written.append(write_text(output, text))
    if plots_dir is not None:
        d = ensure_dir(Path(plots_dir))
        for p in rd.plots:
            if p.figure is not None:
                written.append(write_bytes(d / f"{p.name}.png", P.png(p.figure)))
                written.append(write_bytes(d / f"{p.name}.svg", P.svg_file(p.figure)))
    counts = status_counts(rd.df)
    return {"written": [str(w) for w in written], "cells": counts,
            "plots": [p.name for p in rd.plots if p.figure is not None],
            "skipped": {p.name: p.skipped for p in rd.plots if p.figure is None}}


def _source_name(table: Path) -> str:
    return table.parent.name if table.name in ("results.parquet", "results.csv") else table.name


def status_counts(df: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in df["status"].value_counts().sort_index().items()}


# ------------------------------------------------------------------------------------- cell formatting

def fnum(v, digits: int | None = None) -> str:
    """A number for a table: "" for NaN/None, 4 significant digits by default, thousands without exponent."""
    if v is None or isinstance(v, str):
        return "" if v is None else v
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(x):
        return ""
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if digits is not None:
        return f"{x:.{digits}f}"
    ax = abs(x)
    if ax >= 1000:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return "0" if x == 0 else f"{x:#.3g}"


def fint(v) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v) if v is not None else ""
    return "" if math.isnan(x) else str(int(x))


def fci(lo, hi, digits: int | None = None) -> str:
    a, b = fnum(lo, digits), fnum(hi, digits)
    return f"[{a}, {b}]" if a and b else ""


def fx(v) -> str:
    s = fnum(v, 2)
    return f"{s}×" if s else ""


def fside(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return "never" if math.isinf(v) else f"{v:.0f} px"


def fside_ci(lo, hi) -> str:
    """A crossover side length's CI; an infinite upper bound (some replicates never cross) reads ∞."""
    if lo != lo or hi != hi:  # NaN: no CI
        return ""
    return f"[{'∞' if math.isinf(lo) else f'{lo:.0f}'}, {'∞' if math.isinf(hi) else f'{hi:.0f}'}] px"


def fpct(v) -> str:
    s = fnum(v, 1)
    return f"{s}%" if s else ""


Column = tuple[str, Callable[[pd.Series], str]]


def _col(name: str, header: str, fmt=fnum) -> Column:
    return header, lambda r: fmt(r[name])


def _present(df: pd.DataFrame, name: str) -> bool:
    if name not in df.columns:
        return False
    col = df[name]
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return bool(np.isfinite(col.astype(float)).any())
    return bool((col.astype(str).replace({"nan": "", "None": ""}) != "").any())


# ----------------------------------------------------------------------------------------- the tables

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
    for name, header, fmt in (("p90_ms", "p90 ms", fnum), ("p99_ms", "p99 ms", fnum), ("cv_pct", "CV %", fnum),
                              ("items_per_s", "items/s", fnum), ("gmacs", "GMACs", fnum),
                              ("params_m", "params M", fnum), ("gflops", "GFLOP/s", fnum)):
        if _present(df, name):
            cols.append(_col(name, header, fmt))
    if _present(df, "peak_share"):
        cols.append(("% of peak", lambda r: fpct(share.get(r.name, np.nan))
                     + (f" ({r['peak_kind']})" if r["peak_kind"] and r["peak_kind"] != "measured" else "")))
    for name, header in (("rss_peak_mb", "RSS peak MB"), ("gpu_peak_mb", "GPU peak MB"),
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


def _model(r) -> str:
    return series_label(r["model"], r["model_options"])


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


def fverdict(v) -> str:
    return "" if v is None else "VALID" if v else "INVALID"


def fg(v) -> str:
    """A number as given (a requested QPS, a bound): 10, 2.5; "" for NaN."""
    s = fnum(v)
    return f"{float(v):g}" if s else ""


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
                     + (f" (p{r['percentile']:g})" if r["percentile"] == r["percentile"] else "")))
    cols.append(("LoadGen", lambda r: fverdict(r["valid"])))
    return cols


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


def parc_columns(t: pd.DataFrame) -> list[Column]:
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


def fft_verdict(t: pd.DataFrame) -> str:
    """One sentence: does the fft implementation overtake conv/matmul anywhere?"""
    if t.empty or "p50_fft_ms" not in t.columns:
        return ""
    wins = t[t["fastest"] == "fft"]
    if wins.empty:
        return f"fft is not the fastest ParC implementation at any of the {len(t)} settings measured."
    where = ", ".join(f"{r['model']} {r['target']} {r['precision']} at {fint(r['resolution'])}"
                      + ("" if r["clear"] else " (CIs overlap)") for _, r in wins.iterrows())
    return f"fft is the fastest ParC implementation at {len(wins)} of {len(t)} settings: {where}."


# ---------------------------------------------------------------------------------------------- HTML

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1b1f24;
       margin: 0 auto; max-width: 1280px; padding: 1.2rem 1.6rem 3rem; background: #fff; }
h1 { font-size: 1.55rem; margin: 0 0 .3rem; }
h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
h3 { font-size: 1.02rem; margin: 1.3rem 0 .4rem; }
.meta { color: #57606a; margin: .15rem 0; }
.counts span { display: inline-block; margin-right: .9rem; font-weight: 600; }
.ok { color: #1a7f37; } .bad { color: #cf222e; }
nav ul { margin: .4rem 0; padding-left: 1.2rem; columns: 2; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: 12.5px; }
th, td { border: 1px solid #d0d7de; padding: .22rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fbfcfd; }
.scroll { overflow-x: auto; max-width: 100%; }
figure { margin: 1rem 0 1.8rem; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #57606a; font-size: 12.5px; max-width: 70rem; margin-top: .3rem; }
.skipped { color: #6e7781; font-style: italic; }
.note { color: #57606a; font-size: 12.5px; }
code { font-size: 12px; background: #f6f8fa; padding: 0 .2rem; border-radius: 3px; }
"""
# no script, no external resource of any kind; the favicon request is answered by an empty data: URL
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_NUMERIC_HEADERS = ("ms", "batch", "res", "threads", "items/s", "GMACs", "params", "GFLOP", "peak", "MB", "J/",
                    "QPS", "k", "CI", "R²", "speed", "exit", "pairs", "models", "lead", "c0", "c1", "c2", "%")


def _is_num_header(h: str) -> bool:
    return h not in ("model", "options", "family", "how", "models measured", "reason", "fidelity") and any(
        t in h for t in _NUMERIC_HEADERS)


def html_table(df: pd.DataFrame, columns: list[Column], *, cls: str = "") -> str:
    e = html.escape
    num = [_is_num_header(h) for h, _ in columns]
    head = "".join(f"<th>{e(h)}</th>" for h, _ in columns)
    body = []
    for _, r in df.iterrows():
        tds = "".join(f'<td class="num">{e(str(f(r)))}</td>' if n else f"<td>{e(str(f(r)))}</td>"
                      for (_, f), n in zip(columns, num))
        body.append(f"<tr>{tds}</tr>")
    c = f' class="{e(cls)}"' if cls else ""
    return f'<div class="scroll"><table{c}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


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


def _created_range(df: pd.DataFrame) -> str:
    c = sorted(v for v in df["created"] if v)
    return "" if not c else (c[0] if c[0] == c[-1] else f"{c[0]} to {c[-1]}")


def _counts_html(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    spans = [f"<span>{total} cells</span>"]
    for k, v in counts.items():
        cls = "ok" if k == "ok" else ("bad" if k in ("failed", "timeout", "killed") else "")
        spans.append(f'<span class="{cls}">{v} {html.escape(k)}</span>')
    return '<p class="counts">' + "".join(spans) + "</p>"


def render_html(rd: ReportData) -> str:
    from deploykit.studyreport.plots import svg_inline

    e = html.escape
    df, an = rd.df, rd.analysis
    out = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<link rel="icon" href="data:,">',
           f"<title>{e(rd.title)}</title>", f"<style>{CSS}</style>", "</head>\n<body>"]
    out.append(f"<h1>{e(rd.title)}</h1>")
    out.append(f'<p class="meta">generated {e(rd.generated)} by deploykit {e(__version__)} from '
               f"<code>{e(rd.source)}</code></p>")
    created = _created_range(df)
    if created:
        out.append(f'<p class="meta">cells measured {e(created)}</p>')
    for line in machine_lines(rd):
        out.append(f'<p class="meta">{e(line)}</p>')
    out.append(_counts_html(status_counts(df)))
    sections = [("plots", "Plots"), ("exponents", "Complexity exponents"), ("attention", "Attention crossover"),
                ("parc", "ParC implementations"), ("int8", "int8 speed-up"), ("serving", "Serving under load"),
                ("results", "Results"), ("failed", "Cells not ok"), ("methods", "Methods")]
    out.append("<nav><ul>" + "".join(f'<li><a href="#{a}">{e(t)}</a></li>' for a, t in sections) + "</ul></nav>")

    out.append('<h2 id="plots">Plots</h2>')
    for p in rd.plots:
        if p.figure is None:
            out.append(f'<p class="skipped" id="skipped-{e(p.name)}">Not drawn: <b>{e(p.title)}</b> — '
                       f"{e(p.skipped or '')}.</p>")
            continue
        out.append(f'<figure id="plot-{e(p.name)}"><h3>{e(p.title)}</h3>{svg_inline(p.figure, "svg-" + p.name)}'
                   f"<figcaption>{e(p.caption)}</figcaption></figure>")

    out.append('<h2 id="exponents">Complexity exponents</h2>')
    out.append('<p class="note">latency ≈ a · pixels<sup>k</sup>, least squares on log-log over the resolutions '
               "measured; k = 1: linear in pixels, k = 2: quadratic. The CI is a bootstrap over each point's "
               "median (measurement noise); the first/last segment slopes show how k changes with "
               "resolution.</p>")
    out.append(html_table(an.exponents, EXPONENT_COLUMNS) if len(an.exponents)
               else '<p class="skipped">No series with two or more resolutions.</p>')
    notes = sorted({m for m in an.exponents.get("ci_method", [])})
    if notes:
        out.append('<p class="note">CI basis: ' + e(" | ".join(notes)) + "</p>")

    out.append('<h2 id="attention">Attention crossover</h2>')
    out.append("<h3>By MACs</h3>")
    out.append(html_table(an.attention_macs, ATT_MACS_COLUMNS) if len(an.attention_macs)
               else '<p class="skipped">No attention model (family vit/parc or gmacs_attention &gt; 0) in the '
                    "table.</p>")
    out.append("<h3>By measured time</h3>")
    out.append('<p class="note">t(P) = c0 + c1·P + c2·P² fitted over pixel counts P (non-negative least squares '
               "on relative residuals); the quadratic term exceeds the linear one above the side length "
               "√(c1/c2). CI: bootstrap over each point's median.</p>")
    out.append(html_table(an.attention_time, ATT_TIME_COLUMNS) if len(an.attention_time)
               else '<p class="skipped">No attention model measured at three or more resolutions.</p>')
    for n in an.attention_time_notes:
        out.append(f'<p class="note">not fitted: {e(n)}</p>')

    out.append('<h2 id="parc">ParC implementations</h2>')
    if len(an.parc):
        out.append(f"<p>{e(fft_verdict(an.parc))}</p>")
        out.append(html_table(an.parc, parc_columns(an.parc)))
    else:
        out.append('<p class="skipped">No ParC model measured with two or more parc_impl values.</p>')

    out.append('<h2 id="int8">int8 speed-up</h2>')
    if len(an.int8_family):
        out.append("<h3>Per family (median over models)</h3>")
        out.append(html_table(an.int8_family, INT8_FAMILY_COLUMNS))
        out.append("<h3>Per model and target (median over resolutions and batches)</h3>")
        out.append(html_table(an.int8_model, INT8_MODEL_COLUMNS))
    else:
        out.append('<p class="skipped">No fp32 cell with an int8 twin.</p>')

    out.append('<h2 id="serving">Serving under load</h2>')
    if len(an.server):
        out.append(f'<p class="note">{e(SERVING_NOTE)}</p>')
        out.append(f"<p>{e(serving_note(an.server))}</p>")
        out.append(html_table(an.server, server_columns(an.server)))
    else:
        out.append('<p class="skipped">No LoadGen server cell (scenario server) finished ok.</p>')

    ok = df[df["status"] == "ok"]
    out.append(f'<h2 id="results">Results ({len(ok)} ok cells)</h2>')
    out.append(html_table(ok, results_columns(ok)) if len(ok) else '<p class="skipped">No cell finished ok.</p>')
    bad = df[df["status"] != "ok"]
    out.append(f'<h2 id="failed">Cells not ok ({len(bad)})</h2>')
    out.append(html_table(bad, failed_columns(bad)) if len(bad) else "<p>None.</p>")
    out.append('<h2 id="methods">Methods</h2>')
    out.append("".join(f"<p>{e(t)}</p>" for t in METHODS))
    out.append("</body>\n</html>\n")
    return "\n".join(out)


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
    "int8 speed-up: p50 fp32 / p50 int8 of cells that differ only in precision; per model the median over "
    "resolutions and batches, per family the median over its models.",
    "Pareto front: a cell is on the front when no other cell of the same target and precision has at least as "
    "many MACs (parameters) at no more latency.",
)


# ------------------------------------------------------------------------------------------- Markdown

def _md_escape(text: str) -> str:
    return html.escape(str(text)).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame, columns: list[Column]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h, _ in columns) + " |",
             "|" + "|".join("---:" if _is_num_header(h) else "---" for h, _ in columns) + "|"]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_md_escape(f(r)) for _, f in columns) + " |")
    return "\n".join(lines)


def render_markdown(rd: ReportData, image_dir: str) -> tuple[str, dict[str, bytes]]:
    """(Markdown text, {file name: PNG bytes}); the text links the images as ``image_dir/<name>.png``."""
    from deploykit.studyreport.plots import png

    df, an = rd.df, rd.analysis
    out = [f"# {_md_escape(rd.title)}", "",
           f"Generated {rd.generated} by deploykit {__version__} from `{rd.source.replace('`', '')}`."]
    created = _created_range(df)
    if created:
        out.append(f"Cells measured {_md_escape(created)}.")
    out.append("")
    out += [f"- {_md_escape(line)}" for line in machine_lines(rd)]
    counts = status_counts(df)
    out += ["", f"**{sum(counts.values())} cells**: " + ", ".join(f"{v} {k}" for k, v in counts.items()), ""]
    images: dict[str, bytes] = {}
    out += ["## Plots", ""]
    for p in rd.plots:
        if p.figure is None:
            out += [f"*Not drawn: {_md_escape(p.title)} — {_md_escape(p.skipped or '')}.*", ""]
            continue
        images[f"{p.name}.png"] = png(p.figure)
        out += [f"### {_md_escape(p.title)}", "", f"![{_md_escape(p.title)}]({image_dir}/{p.name}.png)", "",
                _md_escape(p.caption), ""]
    out += ["## Complexity exponents", "", "latency ≈ a · pixels^k (least squares on log-log); CI: bootstrap over "
            "each point's median.", ""]
    out += [md_table(an.exponents, EXPONENT_COLUMNS) if len(an.exponents) else "*No series with two or more "
            "resolutions.*", ""]
    out += ["## Attention crossover", "", "### By MACs", ""]
    out += [md_table(an.attention_macs, ATT_MACS_COLUMNS) if len(an.attention_macs) else "*No attention model.*",
            ""]
    out += ["### By measured time", "", "t(P) = c0 + c1·P + c2·P² (non-negative least squares); the quadratic "
            "term exceeds the linear one above the side length √(c1/c2).", ""]
    out += [md_table(an.attention_time, ATT_TIME_COLUMNS) if len(an.attention_time) else "*No attention model "
            "measured at three or more resolutions.*", ""]
    out += [f"- not fitted: {_md_escape(n)}" for n in an.attention_time_notes]
    out += ["", "## ParC implementations", ""]
    if len(an.parc):
        out += [_md_escape(fft_verdict(an.parc)), "", md_table(an.parc, parc_columns(an.parc)), ""]
    else:
        out += ["*No ParC model measured with two or more parc_impl values.*", ""]
    out += ["## int8 speed-up", ""]
    if len(an.int8_family):
        out += ["### Per family (median over models)", "", md_table(an.int8_family, INT8_FAMILY_COLUMNS), "",
                "### Per model and target", "", md_table(an.int8_model, INT8_MODEL_COLUMNS), ""]
    else:
        out += ["*No fp32 cell with an int8 twin.*", ""]
    out += ["## Serving under load", ""]
    if len(an.server):
        out += [_md_escape(SERVING_NOTE), "", _md_escape(serving_note(an.server)), "",
                md_table(an.server, server_columns(an.server)), ""]
    else:
        out += ["*No LoadGen server cell (scenario server) finished ok.*", ""]
    ok = df[df["status"] == "ok"]
    out += [f"## Results ({len(ok)} ok cells)", "", md_table(ok, results_columns(ok)) if len(ok) else "*None.*", ""]
    bad = df[df["status"] != "ok"]
    out += [f"## Cells not ok ({len(bad)})", "", md_table(bad, failed_columns(bad)) if len(bad) else "None.", ""]
    out += ["## Methods", ""] + [f"- {_md_escape(t)}" for t in METHODS] + [""]
    return "\n".join(out), images
