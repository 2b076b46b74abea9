"""The study report as one self-contained HTML page (``deploykit report -o report.html``): the sections of
sections.py, each rendered the same way.

The page works offline and fetches nothing: CSS inline, plots inline as SVG, no script, and a Content Security
Policy that forbids every external resource. Every string from the table or the cell reports (model names,
options, paths, failure reasons) goes through ``html.escape``.
"""

from __future__ import annotations

import html

import pandas as pd

from deploykit import __version__
from deploykit.studyreport.sections import (Column, ReportData, Section, build_sections, created_range, is_numeric,
                                            machine_lines, status_counts)

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
th { background: #f6f8fa; position: sticky; top: 0; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fbfcfd; }
.scroll { overflow-x: auto; max-width: 100%; }
table.wide { font-size: 11px; } table.wide th, table.wide td { padding: .15rem .25rem; }
figure { margin: 1rem 0 1.8rem; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #57606a; font-size: 12.5px; max-width: 70rem; margin-top: .3rem; }
.skipped { color: #6e7781; font-style: italic; }
.note { color: #57606a; font-size: 12.5px; }
code { font-size: 12px; background: #f6f8fa; padding: 0 .2rem; border-radius: 3px; }
"""
# no script, no external resource of any kind; the favicon request is answered by an empty data: URL
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


WIDE_COLUMNS = 12


def html_table(df: pd.DataFrame, columns: list[Column], *, cls: str = "") -> str:
    e = html.escape
    num = [is_numeric(h) for h, _ in columns]
    head = "".join(f"<th>{e(h)}</th>" for h, _ in columns)
    body = []
    for _, r in df.iterrows():
        tds = "".join(f'<td class="num">{e(str(f(r)))}</td>' if n else f"<td>{e(str(f(r)))}</td>"
                      for (_, f), n in zip(columns, num))
        body.append(f"<tr>{tds}</tr>")
    cls = cls or ("wide" if len(columns) > WIDE_COLUMNS else "")  # many columns: smaller, so 1280 px holds them
    c = f' class="{e(cls)}"' if cls else ""
    return f'<div class="scroll"><table{c}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _counts_html(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    spans = [f"<span>{total} cells</span>"]
    for k, v in counts.items():
        cls = "ok" if k == "ok" else ("bad" if k in ("failed", "timeout", "killed") else "")
        spans.append(f'<span class="{cls}">{v} {html.escape(k)}</span>')
    return '<p class="counts">' + "".join(spans) + "</p>"


def render_html(rd: ReportData) -> str:
    e = html.escape
    df = rd.df
    out = ['<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           '<link rel="icon" href="data:,">',
           f"<title>{e(rd.title)}</title>", f"<style>{CSS}</style>", "</head>\n<body>"]
    out.append(f"<h1>{e(rd.title)}</h1>")
    out.append(f'<p class="meta">generated {e(rd.generated)} by deploykit {e(__version__)} from '
               f"<code>{e(rd.source)}</code></p>")
    created = created_range(df)
    if created:
        out.append(f'<p class="meta">cells measured {e(created)}</p>')
    for line in machine_lines(rd):
        out.append(f'<p class="meta">{e(line)}</p>')
    out.append(_counts_html(status_counts(df)))
    sections = build_sections(rd)
    out.append("<nav><ul>" + "".join(f'<li><a href="#{e(s.id)}">{e(s.nav or s.title)}</a></li>' for s in sections)
               + "</ul></nav>")
    for s in sections:
        out += section_html(s)
    out.append("</body>\n</html>\n")
    return "\n".join(out)


def section_html(s: Section, level: int = 2) -> list[str]:
    """One section as HTML elements: every string escaped, plots as inline SVG."""
    e = html.escape
    anchor = f' id="{e(s.id)}"' if s.id else ""
    out = [f"<h{level}{anchor}>{e(s.title)}</h{level}>"]
    out += [f'<p class="note">{e(n)}</p>' for n in s.notes]
    out += [f"<p>{e(t)}</p>" for t in s.text]
    if s.plots:
        from deploykit.studyreport.plots import svg_inline

        for p in s.plots:
            if p.figure is None:
                out.append(f'<p class="skipped" id="skipped-{e(p.name)}">Not drawn: <b>{e(p.title)}</b> — '
                           f"{e(p.skipped or '')}.</p>")
                continue
            out.append(f'<figure id="plot-{e(p.name)}"><h3>{e(p.title)}</h3>{svg_inline(p.figure, "svg-" + p.name)}'
                       f"<figcaption>{e(p.caption)}</figcaption></figure>")
    if s.missing:
        out.append('<ul class="note">' + "".join(f'<li id="{e(a)}"><b>{e(what)}</b> — {e(why)}</li>'
                                                 for a, what, why in s.missing) + "</ul>")
    if s.table is not None:
        out.append(html_table(s.table.df, s.table.columns))
    elif s.skipped:
        out.append(f'<p class="skipped">{e(s.skipped)}</p>')
    out += [f'<p class="note">{e(n)}</p>' for n in s.after]
    for part in s.parts:
        out += section_html(part, level + 1)
    return out
