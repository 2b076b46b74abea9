"""``deploykit report``: a results table (or a sweep folder) -> one self-contained HTML page (html.py), or
Markdown with PNG plots beside it (markdown.py), plus optionally every plot as PNG and SVG."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pandas as pd

from deploykit.core.atomic import ensure_dir, write_bytes, write_text
from deploykit.core.errors import UsageError
from deploykit.studyreport.analysis import analyze, find_table, load_results, normalize, read_cell_reports
from deploykit.studyreport.sections import ReportData, status_counts

FORMATS = {".html": "html", ".htm": "html", ".md": "md"}


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
    from deploykit.studyreport.html import render_html
    from deploykit.studyreport.markdown import render_markdown

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
