"""Series from the store: filtered, with their detected steps; as rows for a table, Markdown (a CI job summary)
and one offline HTML page of trend plots (inline SVG, CIs, commit and date on the x axis)."""

from __future__ import annotations

import fnmatch
import html
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.history.detect import Step
from deploykit.history.store import Row, iter_series


@dataclass
class Series:
    spec_key: str
    machine: str
    rows: list[Row]
    normalized: bool = False
    steps: list[Step] = field(default_factory=list)

    @property
    def values(self) -> list[float]:
        return [float(r.rel_cost if self.normalized and r.rel_cost is not None else r.p50) for r in self.rows]

    @property
    def first(self) -> Row:
        return self.rows[0]

    def step_range(self, s: Step) -> tuple[str, str]:
        """(last commit before the step, first commit after it), short."""
        return short(self.rows[s.index - 1].commit_sha), short(self.rows[s.index].commit_sha)


def short(sha: str | None) -> str:
    return (sha or "?")[:8]


def select(rows: list[Row], *, model: str | None = None, target: str | None = None, precision: str | None = None,
           batch: int | None = None, resolution: int | None = None, machine: str | None = None,
           normalize: bool = False, last: int | None = None) -> list[Series]:
    """The series (run spec key, machine class) that pass the filters; ``model``: a name or a glob (of the name or
    of an ONNX file's stem); ``machine``: a substring of the machine class. ``normalize``: the reference
    workload's relative cost instead of the latency, and every machine in one series (points without a relative
    cost are left out)."""
    def keep(r: Row) -> bool:
        if model and not any(m == model or fnmatch.fnmatch(m, model) for m in (r.model, Path(r.model).stem)):
            return False
        if target and r.target != target or precision and r.precision != precision:
            return False
        if batch is not None and r.batch != batch or resolution is not None and r.resolution != resolution:
            return False
        if machine and machine.lower() not in r.machine.lower():
            return False
        return not normalize or r.rel_cost is not None

    rows = [r for r in rows if keep(r)]
    if normalize:  # one series per run spec key, whatever machine measured it
        rows = [Row(**{**r.__dict__, "machine": "any (normalised by refnet-v1)"}) for r in rows]
    out = []
    for (key, mach), rs in iter_series(rows):
        out.append(Series(key, mach, rs[-last:] if last else rs, normalized=normalize))
    return out


def find_steps(series: list[Series], **kw) -> None:
    from deploykit.history.detect import detect

    for s in series:
        s.steps = detect(s.values, **kw)


def fmt_value(s: Series, v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}x" if s.normalized else f"{v:.3f}"


def step_text(s: Series, st: Step) -> str:
    a, b = s.step_range(st)
    return f"{st.change:+.1%} ({st.ci[0]:+.1%}..{st.ci[1]:+.1%}) {a}..{b}"


def series_rows(series: list[Series]) -> list[dict]:
    out = []
    for s in series:
        r0, r1 = s.rows[0], s.rows[-1]
        v = s.values
        out.append({"model": r0.model, "target": r0.target, "precision": r0.precision,
                    "input": f"b{r0.batch} r{r0.resolution or 'auto'}", "key": s.spec_key, "machine": s.machine,
                    "points": str(len(s.rows)), "commits": str(len({r.commit_sha for r in s.rows})),
                    "last": fmt_value(s, v[-1]),
                    "ci": "-" if s.normalized or r1.ci_lo is None else f"{r1.ci_lo:.3f}-{r1.ci_hi:.3f}",
                    "change": f"{v[-1] / v[0] - 1:+.1%}" if len(v) > 1 else "-",
                    "since": r0.created[:10], "last_commit": short(r1.commit_sha),
                    "steps": "; ".join(step_text(s, st) for st in s.steps) or "none"})
    return out


def step_rows(series: list[Series]) -> list[dict]:
    out = []
    for s in series:
        for st in s.steps:
            a, b = s.step_range(st)
            out.append({"series": f"{s.first.model} {s.first.target} {s.first.precision}", "kind": st.kind,
                        "from": a, "to": b, "date": s.rows[st.index].created[:16],
                        "change": f"{st.change:+.1%}", "ci": f"{st.ci[0]:+.1%}..{st.ci[1]:+.1%}",
                        "p": f"{st.p_value:.1e}", "points": f"{st.before_n}|{st.after_n}"})
    return out


def markdown(series: list[Series], *, detected: bool) -> str:
    """A GitHub job summary: one line per series, then the steps."""
    lines = ["### deploykit latency history", ""]
    if not series:
        return "\n".join(lines + ["No runs in the history store match.", ""])
    unit = "relative cost" if series[0].normalized else "p50 ms"
    lines += [f"| model | target | precision | machine | points | last {unit} | change since first | steps |",
              "|---|---|---|---|---:|---:|---:|---|"]
    for r in series_rows(series):
        cells = [r["model"], r["target"], r["precision"], r["machine"], r["points"], r["last"], r["change"],
                 r["steps"] if detected else "(not run)"]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    steps = step_rows(series)
    if steps:
        lines += ["", "**Detected steps** (change with 95% CI, commit range, Welch p):", ""]
        for r in steps:
            icon = ":red_circle:" if r["kind"] == "regression" else ":green_circle:"
            lines.append(f"- {icon} {r['series']}: {r['kind']} {r['change']} ({r['ci']}) between `{r['from']}` and "
                         f"`{r['to']}` (p={r['p']}, {r['points']} points)")
    elif detected:
        lines += ["", "No step detected."]
    return "\n".join(lines) + "\n"


def plot_series(s: Series):
    """One trend figure: the series with its CI band, steps marked, commit and date as x labels."""
    from matplotlib.figure import Figure

    n = len(s.rows)
    fig = Figure(figsize=(max(6.0, min(16.0, 0.28 * n + 3)), 3.8))
    ax = fig.add_subplot(1, 1, 1)
    x = list(range(n))
    y = s.values
    ax.plot(x, y, "o-", ms=3.5, lw=1.1, color="#0969da", label="p50" if not s.normalized else "relative cost")
    if not s.normalized:
        lo = [r.ci_lo if r.ci_lo is not None else r.p50 for r in s.rows]
        hi = [r.ci_hi if r.ci_hi is not None else r.p50 for r in s.rows]
        ax.fill_between(x, lo, hi, color="#0969da", alpha=0.18, lw=0, label="95% CI of the median")
    edges = [0, *[st.index for st in s.steps], n]
    for i in range(len(edges) - 1):  # each segment's geometric mean
        seg = y[edges[i]:edges[i + 1]]
        g = math.exp(sum(math.log(v) for v in seg) / len(seg))
        ax.hlines(g, edges[i] - 0.4, edges[i + 1] - 0.6, colors="#57606a", linestyles="dashed", lw=1)
    for st in s.steps:
        colour = "#cf222e" if st.change > 0 else "#1a7f37"
        ax.axvline(st.index - 0.5, color=colour, lw=1.2)
        ax.annotate(f" {st.change:+.1%}", (st.index - 0.5, 0.98), xycoords=("data", "axes fraction"), color=colour,
                    fontsize=8, ha="left", va="top", backgroundcolor="white")
    step = max(1, n // 30)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([f"{short(r.commit_sha)[:7]}\n{r.created[5:10]}" for r in s.rows][::step], fontsize=6.5,
                       rotation=90)
    ax.set_ylabel("relative cost (model / reference)" if s.normalized else "p50 latency (ms)")
    ax.set_title(f"{s.spec_key}\n{s.machine}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


CSS = """body { font: 14px/1.45 system-ui, sans-serif; color: #1b1f24; margin: 0 auto; max-width: 1280px;
padding: 1.2rem 1.6rem 3rem; } h2 { font-size: 1.1rem; margin: 1.8rem 0 .4rem; }
table { border-collapse: collapse; font-size: 12.5px; } th, td { border: 1px solid #d0d7de; padding: .2rem .5rem; }
th { background: #f6f8fa; } figure svg { max-width: 100%; height: auto; display: block; }
.meta { color: #57606a; } .reg { color: #cf222e; } .imp { color: #1a7f37; }"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def html_page(series: list[Series], *, source: str, detected: bool) -> str:
    """One offline page: a plot per series (inline SVG, no script, nothing fetched), its steps listed under it."""
    from deploykit.studyreport.plots import svg_inline

    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
           "<title>deploykit latency history</title>", f"<style>{CSS}</style></head><body>",
           "<h1>deploykit latency history</h1>",
           f'<p class="meta">store: {e(source)}; {len(series)} series; made {e(time.strftime("%Y-%m-%d %H:%M"))}'
           f"{'' if detected else '; change-point detection not run'}</p>"]
    if not series:
        out.append("<p>No runs in the history store match.</p>")
    for i, s in enumerate(series):
        out.append(f"<h2>{e(s.spec_key)}</h2><p class='meta'>machine: {e(s.machine)}; {len(s.rows)} points</p>")
        out.append(f"<figure>{svg_inline(plot_series(s), f'svg-{i}')}</figure>")
        if s.steps:
            out.append("<table><tr><th>step</th><th>commits</th><th>date</th><th>change</th><th>95% CI</th>"
                       "<th>p</th></tr>")
            for st in s.steps:
                a, b = s.step_range(st)
                cls = "reg" if st.change > 0 else "imp"
                out.append(f"<tr><td class='{cls}'>{e(st.kind)}</td><td>{e(a)}..{e(b)}</td>"
                           f"<td>{e(s.rows[st.index].created[:16])}</td><td>{st.change:+.1%}</td>"
                           f"<td>{st.ci[0]:+.1%}..{st.ci[1]:+.1%}</td><td>{st.p_value:.1e}</td></tr>")
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
