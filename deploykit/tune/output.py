"""What ``deploykit tune`` leaves behind: the chosen run spec, a gate file that keeps the choice from regressing in
CI, and an HTML report (the front plot and the decision table; every text escaped, nothing fetched)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from deploykit.core.errors import InputError
from deploykit.tune.search import State, TuneResult, TuneSettings, _num

SPEC_OUT = "spec.json"
GATE_OUT = "gate.toml"
REPORT_OUT = "report.html"


def artifact_path(state: State, cid: str) -> str | None:
    """The model file a candidate's cells ran (from its latest report)."""
    from deploykit.core.guarded import read_json

    for key in sorted((k for k in state.rows if k.endswith(f":{cid}")), reverse=True):
        rep = state.rows[key].get("report")
        if not rep or state.rows[key].get("status") != "ok":
            continue
        p = Path(rep) if Path(rep).is_absolute() else state.out / rep
        try:
            data = read_json(p, max_bytes=64 * 1024 * 1024, what="cell report")
        except InputError:
            continue
        path = (data.get("model") or {}).get("path") if isinstance(data, dict) else None
        if path:
            return str(path)
    return None


def _toml_str(s: str) -> str:
    return json.dumps(str(s))  # a TOML basic string is a JSON string for these characters


def gate_reference(state: State, result: TuneResult):
    """What the winner is gated against: its target's default fp32, else (the winner is that) the runner-up on the
    same target, else the best other candidate on it."""
    w = result.winner
    if w is None:
        return None
    same = [c for c in state.candidates if c.target == w.target and c.cid != w.cid]
    fp32 = next((c for c in same if c.role == "fp32-default"), None)
    if fp32 is not None and w.role != "fp32-default":
        return fp32
    ranked = [state.by_id(cid) for cid in state.result.get("ranked", [])]
    return next((c for c in ranked if c.target == w.target and c.cid != w.cid), None) or \
        next((c for c in same if c.role == "int8-default"), None)


def write_gate(state: State, result: TuneResult, settings: TuneSettings) -> tuple[Path | None, str]:
    """``gate.toml``: the winner's file against its reference's file on the winner's target and options (a
    ``deploykit gate --file`` check); (path, "") or (None, why not)."""
    from deploykit.core.atomic import write_text

    w = result.winner
    ref = gate_reference(state, result)
    if w is None or ref is None:
        return None, "no other candidate on the winner's target to gate it against"
    wp, rp = artifact_path(state, w.cid), artifact_path(state, ref.cid)
    if wp is None or rp is None:
        return None, "the artifacts' paths are not in the cells' reports"
    spec = w.spec
    metric = settings.ab_metric
    lines = [f"# deploykit tune {spec.model}: the chosen variant ({w.label()}) must stay no slower than",
             f"# {ref.label()} on {spec.target}; run: deploykit gate -c {GATE_OUT}",
             "version = 1", "", "[settings]", "min_blocks = 10", "max_blocks = 60", "", "[[check]]",
             f"name = {_toml_str('tuned ' + spec.model + ' ' + w.label())}", f"model = {_toml_str(wp)}",
             f"against = {_toml_str(rp)}", f"target = {_toml_str(spec.target)}"]
    if spec.int8 or ref.spec.int8:
        pass  # a quantized file runs as built; the float rest follows the target's rule
    elif spec.precision_label != "fp32":
        lines.append(f"precision = {_toml_str(spec.precision_label)}")
    lines.append(f"metrics = [{_toml_str(metric)}]")
    if spec.options.threads:
        lines.append(f"threads = {int(spec.options.threads)}")
    for k, v in sorted(spec.target_settings().items()):
        if k in ("threads", "precision") or v is None:
            continue
        lines.append(f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}")
    path = state.out / GATE_OUT
    write_text(path, "\n".join(lines) + "\n")
    return path, ""


def write_spec(state: State, result: TuneResult) -> Path | None:
    from deploykit.spec.run import write_spec as write

    if result.winner is None:
        return None
    return write(result.winner.spec, state.out / SPEC_OUT)


# ------------------------------------------------------------------------------------------------ HTML

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1b1f24; margin: 0 auto; max-width: 1200px; padding: 1rem 1.5rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; border-bottom: 1px solid #d0d7de; margin-top: 1.8rem; }
table { border-collapse: collapse; font-size: 12.5px; margin: .4rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: .2rem .45rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.answer { font-size: 1.05rem; background: #f6f8fa; padding: .6rem .8rem; border-left: 4px solid #1a7f37; }
.bad { border-left-color: #cf222e; } .note { color: #57606a; font-size: 12.5px; }
figure svg { max-width: 100%; height: auto; }
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _n(x, digits: int = 3) -> str:
    from deploykit.report.numbers import sig

    return sig(x, digits)


def front_plot(points: list[dict], settings: TuneSettings) -> str:
    """The objective against the accuracy drop (or the peak memory without labelled data), the front joined."""
    if not points:
        return "<p class='note'>no candidate was timed</p>"
    from deploykit.studyreport.plots import _rc, svg_inline

    yk = "drop_points" if settings.eval_data else "rss_peak_mb"
    ylabel = "accuracy drop (points)" if settings.eval_data else "peak memory (MB)"
    xlabel = {"latency": "p50 latency (ms)", "p99": "p99 latency (ms)", "throughput": "items/s",
              "server": "peak QPS"}[settings.objective]
    with _rc():
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.add_subplot()
        pts = [p for p in points if math.isfinite(_num(p.get("objective"))) and math.isfinite(_num(p.get(yk)))]
        for p in pts:
            on = p.get("on_front")
            x = p["objective"]
            xerr = None
            if settings.objective == "latency" and math.isfinite(_num(p.get("ci_low_ms"))):
                xerr = [[max(0.0, x - p["ci_low_ms"])], [max(0.0, p["ci_high_ms"] - x)]]
            ax.errorbar([x], [p[yk]], xerr=xerr, fmt="o" if on else "x", color="#1a7f37" if on else "#8c959f",
                        capsize=2, markersize=6 if on else 5)
            ax.annotate(p["label"][:40], (x, p[yk]), fontsize=6.5, xytext=(3, 3), textcoords="offset points")
        front = sorted((p for p in pts if p.get("on_front")), key=lambda p: p["objective"])
        if len(front) > 1:
            ax.plot([p["objective"] for p in front], [p[yk] for p in front], "-", color="#1a7f37", lw=1, alpha=.6)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=.3)
        return svg_inline(fig, "front")


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td class='num'>{_e(v)}</td>" if i in numeric else f"<td>{_e(v)}</td>"
                                    for i, v in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def answer_line(result: TuneResult) -> str:
    st = result.state
    if result.winner is None:
        return f"no winner: {result.reason}"
    vs = next((a for a in st.ab if a.get("what", "").startswith("winner vs default fp32")), None)
    txt = f"winner: {result.winner.label()}"
    if vs is not None:
        same = " (the same run: the winner is the default fp32)" if vs["a"] == vs["b"] else ""
        txt += f"; against the default fp32 on {result.winner.target}: {vs.get('verdict')}{same}"
    return txt


def write_report(state: State, result: TuneResult, settings: TuneSettings, model: str) -> Path:
    from deploykit import __version__
    from deploykit.core.atomic import write_text

    pts = state.result.get("points") or []
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
             f"<title>deploykit tune {_e(model)}</title><style>{CSS}</style></head><body>",
             f"<h1>deploykit tune {_e(model)}</h1>",
             f"<p class='answer{'' if result.winner else ' bad'}'>{_e(answer_line(result))}</p>",
             f"<p class='note'>objective {_e(settings.objective)}; wall time {result.wall_s:.0f} s of a "
             f"{settings.budget_s:.0f} s budget ({'within' if result.wall_s <= settings.budget_s else 'OVER'}); "
             f"{len(state.candidates)} candidates; deploykit {_e(__version__)}</p>",
             "<h2>Front</h2>", "<figure>", front_plot(pts, settings),
             "<figcaption class='note'>green: the Pareto front (objective, accuracy drop or memory); bars: the "
             "bootstrap 95% interval of the p50</figcaption></figure>", "<h2>A/B verdicts</h2>"]
    parts.append(_table(["comparison", "B (tuned)", "A", "verdict", "estimate", "interval", "rounds", "reason"],
                        [[a.get("what"), a.get("b_label"), a.get("a_label"), a.get("verdict"),
                          _pct((a.get("decision") or {}).get("estimate")),
                          " to ".join(_pct(x) for x in ((a.get("decision") or {}).get("ci") or [])),
                          a.get("rounds"), a.get("reason")] for a in state.ab], {4, 6}))
    parts.append("<h2>Candidates timed</h2>")
    parts.append(_table(["candidate", "stage", "p50 ms", "95% CI", "objective", "drop (points)", "fidelity",
                         "peak MB", "front"],
                        [[p["label"], p["stage"], _n(p["p50_ms"]), f"{_n(p['ci_low_ms'])} to {_n(p['ci_high_ms'])}",
                          _n(p["objective"]), _n(p["drop_points"]), p.get("fidelity"), _n(p["rss_peak_mb"]),
                          "yes" if p.get("on_front") else ""] for p in pts], {2, 4, 5, 7}))
    parts.append("<h2>Every decision</h2>")
    parts.append(_table(["candidate", "stage", "decision", "reason", "numbers"],
                        [[d["label"], d["stage"], d["decision"], d["reason"],
                          ", ".join(f"{k}={_n(v) if isinstance(v, float) else v}" for k, v in d.items()
                                    if k not in ("candidate", "label", "stage", "decision", "reason"))]
                         for d in state.decisions]))
    parts.append("</body></html>")
    path = state.out / REPORT_OUT
    write_text(path, "\n".join(parts))
    return path


def _pct(x) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return ""
    return f"{v:+.1%}" if math.isfinite(v) else ""
