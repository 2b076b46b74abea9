"""The report's plots (matplotlib, drawn on Figure objects without pyplot, so no GUI backend and no global
state; imported lazily). Each ``plot_*`` returns a ``Plot``: a figure, or the reason it was not drawn.

Renderings: ``svg_inline`` (for an HTML page: no XML prolog, DOCTYPE or metadata, so it references nothing
outside the page), ``svg_file`` (a standalone SVG) and ``png``.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from deploykit.report import numbers as N
from deploykit.studyreport.analysis import (Analysis, OptionComparison, latency_rows, latency_summary,
                                            parse_options, pareto_front, series_label)

RC = {"svg.fonttype": "none", "svg.hashsalt": "deploykit", "font.size": 9, "axes.titlesize": 9.5,
      "legend.fontsize": 7.5, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.6,
      # labels are model and file names: a '$' in one is text, not mathtext (an odd '$' made matplotlib raise)
      "text.parse_math": False}
PANEL_W, PANEL_H = 5.4, 3.6


@dataclass
class Plot:
    name: str          # file stem and HTML id: latency_vs_resolution, ...
    title: str
    caption: str
    figure: object | None = None   # matplotlib.figure.Figure
    skipped: str | None = None     # why there is no figure


# ------------------------------------------------------------------------------------------------ helpers

def _rc():
    import matplotlib

    return matplotlib.rc_context(RC)


def _figure(n_panels: int, ncols: int = 2, panel=(PANEL_W, PANEL_H), legend=()):
    """A figure of ``n_panels`` panels, each in its own subfigure so that its legend sits below it (``_legend``)
    at full width; ``legend``: the longest panel's legend labels, to size the legend's columns and rows."""
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    labels = list(legend)
    # ~0.058 in per character at the legend's 7.5 pt, plus the handle and the gap between columns
    col_w = 0.058 * max((len(str(t)) for t in labels), default=0) + 0.6
    lcols = max(1, min(len(labels), int((panel[0] - 0.2) // col_w))) if labels else 1
    height = panel[1] + (0.17 * math.ceil(len(labels) / lcols) + 0.2 if labels else 0)
    fig = Figure(figsize=(panel[0] * ncols, height * nrows), layout="constrained")
    subs = fig.subfigures(nrows, ncols, squeeze=False).ravel()
    for sf in subs:
        sf.dk_legend_cols = lcols
    return fig, [sf.add_subplot() for sf in subs[:n_panels]]


def _sized(rows: pd.DataFrame, panel_keys: list[str], texts: pd.Series) -> list[str]:
    """Legend texts standing in for the fullest panel: as many as its entries, each as long as the longest."""
    if rows.empty:
        return []
    n = int(rows.groupby(panel_keys, dropna=False).size().max())
    longest = max((str(t) for t in texts), key=len, default="")
    return [longest] * n


def _palette(labels) -> dict[str, tuple]:
    from matplotlib import colormaps

    labels = sorted(set(labels))
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    n = cmap.N
    return {lab: cmap(i % n) for i, lab in enumerate(labels)}


_MARKERS = "osD^v<>pPXh*"


def _markers(labels) -> dict[str, str]:
    return {lab: _MARKERS[i % len(_MARKERS)] for i, lab in enumerate(sorted(set(labels)))}


def _labels(df: pd.DataFrame) -> pd.Series:
    return pd.Series([series_label(m, o) for m, o in zip(df["model"], df["model_options"])], index=df.index,
                     dtype=object)


def _panel_title(target, precision, batch=None, many_batches=False, threads=None, many_threads=False) -> str:
    t = f"{target} · {precision}"
    t += f" · batch {int(batch)}" if many_batches and batch == batch else ""
    return t + (f" · {int(threads)} threads" if many_threads and threads == threads else "")


def _legend(ax, **kw):
    """The panel's legend below it, across its subfigure, in the columns ``_figure`` sized."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        sf = ax.get_figure(root=False)
        sf.legend(handles, labels, loc="outside lower center", ncols=getattr(sf, "dk_legend_cols", 2),
                  frameon=False, **kw)


# ------------------------------------------------------------------------------------------------ plots

def plot_latency_vs_resolution(df: pd.DataFrame, an: Analysis) -> Plot:
    p = Plot("latency_vs_resolution", "Latency vs resolution (log-log) with the complexity exponent",
             "p50 latency (whiskers: bootstrap 95% CI of the median) against input pixels on log-log axes, one "
             "panel per target and precision. Dashed: latency = a·pixels^k fitted by least squares on log-log; "
             "the legend gives k with its bootstrap 95% CI. Grey guides: slopes k = 1 (linear in pixels) and "
             "k = 2 (quadratic).")
    ex = an.exponents
    if ex.empty:
        p.skipped = "no model was measured at two or more resolutions (same target, precision, batch, threads)"
        return p
    lat = latency_rows(df)
    panels = list(ex.groupby(["target", "precision", "batch", "threads"], sort=True, dropna=False).groups)
    many_batches = len({b for _, _, b, _ in panels}) > 1
    many_threads = len({t for _, _, _, t in panels}) > 1
    with _rc():
        fig, axes = _figure(len(panels), legend=_sized(ex, ["target", "precision", "batch", "threads"],
                                                       _labels(ex) + ": k=0.00 [0.00, 0.00]"))
        colors = _palette(_labels(ex))
        for ax, (target, precision, batch, threads) in zip(axes, panels):
            sub = ex[(ex["target"] == target) & (ex["precision"] == precision) & _eq(ex["batch"], batch)
                     & _eq(ex["threads"], threads)]
            all_pix, all_y = [], []
            for _, s in sub.iterrows():
                lab = series_label(s["model"], s["model_options"])
                pts = lat[(lat["model"] == s["model"]) & (lat["model_options"] == s["model_options"])
                          & (lat["target"] == target) & (lat["precision"] == precision) & _eq(lat["batch"], batch)
                          & _eq(lat["threads"], s["threads"])]
                pts = pts[pts["resolution"] > 0].sort_values("resolution").drop_duplicates("resolution")
                pix = pts["resolution"].to_numpy(float) ** 2
                y = pts["p50_ms"].to_numpy(float)
                err = _yerr(pts)
                all_pix.extend(pix)
                all_y.extend(y)
                ci = N.interval(s["k_ci_low"], s["k_ci_high"], digits=2)
                ax.errorbar(pix, y, yerr=err, fmt="o", ms=4, capsize=2, color=colors[lab],
                            label=f"{lab}: k={N.number(s['k'], 2)}" + (f" {ci}" if ci else ""))
                xs = np.geomspace(pix.min(), pix.max(), 32)
                ax.plot(xs, s["prefactor_ms"] * xs ** s["k"], "--", lw=1, color=colors[lab])
            _guides(ax, np.asarray(all_pix), np.asarray(all_y))
            ax.set_xscale("log")
            ax.set_yscale("log")
            _side_ticks(ax, all_pix)
            _readable_log(ax, "y")
            ax.set_xlabel("input pixels (tick labels: side length)")
            ax.set_ylabel("p50 latency (ms)")
            ax.set_title(_panel_title(target, precision, batch, many_batches, threads, many_threads))
            _legend(ax)
    p.figure = fig
    return p


def _eq(col: pd.Series, value) -> pd.Series:
    """Equality that treats NaN as equal to NaN (grouping keys may be NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return col.isna()
    return col == value


def _yerr(pts: pd.DataFrame):
    lo, hi, y = (pts[c].to_numpy(float) for c in ("ci_low_ms", "ci_high_ms", "p50_ms"))
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return None
    return np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])


def _guides(ax, pix: np.ndarray, y: np.ndarray) -> None:
    """Slope-1 and slope-2 reference lines from the panel's fastest point at its smallest pixel count."""
    if pix.size < 2:
        return
    x0, x1 = float(pix.min()), float(pix.max())
    y0 = float(y[pix == x0].min())
    xx = np.array([x0, x1])
    for k, ls in ((1, ":"), (2, "-.")):
        ax.plot(xx, y0 * (xx / x0) ** k, ls, color="0.55", lw=0.9, zorder=0)
        ax.annotate(f"k={k}", (x1, y0 * (x1 / x0) ** k), fontsize=7, color="0.4", ha="right", va="bottom")


def _side_ticks(ax, pixels) -> None:
    sides = sorted({int(round(math.sqrt(v))) for v in pixels})
    if not sides:
        return
    if len(sides) > 8:
        sides = sides[:: math.ceil(len(sides) / 8)]
    ax.set_xticks([s * s for s in sides], [str(s) for s in sides])
    ax.xaxis.set_minor_locator(_null_locator())


def _tick_text(v: float) -> str:
    """A log axis's tick as a plain number: 0.5, 2, 30, 400, 5000 (not 5×10⁻¹)."""
    if v <= 0 or not math.isfinite(v):
        return ""
    return f"{v:g}" if 1e-3 <= v < 1e6 else f"{v:.0e}"


def _readable_log(ax, axis: str = "y") -> None:
    """Plain-number ticks on a log axis: 1-2-5 per decade when it spans three decades or fewer, else one per
    decade; no minor labels (matplotlib's default labels minor ticks like ``8×10⁰`` on short axes)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    a = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 99.0
    a.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    a.set_major_formatter(FuncFormatter(lambda v, _pos: _tick_text(v)))
    a.set_minor_formatter(NullFormatter())


def _null_locator():
    from matplotlib.ticker import NullLocator

    return NullLocator()


def plot_int8_speedup(df: pd.DataFrame, an: Analysis) -> Plot:
    p = Plot("int8_speedup", "int8 speed-up per model and target",
             "p50 fp32 / p50 int8 for each model and target: the bar is the median over the resolutions and "
             "batches measured in both precisions, the whiskers their minimum and maximum. Above 1: int8 is faster.")
    bm = an.int8_model
    if bm.empty:
        p.skipped = ("no fp32 cell has an int8 twin (same model, options, target, batch, resolution, threads) "
                     "among the ok cells")
        return p
    labels = sorted({series_label(m, o) for m, o in zip(bm["model"], bm["model_options"])})
    targets = sorted(bm["target"].unique())
    with _rc():
        fig, (ax,) = _figure(1, panel=(max(6.0, 0.55 * len(labels) * max(1, len(targets)) + 1.0), 3.8),
                             legend=targets)
        colors = _palette(targets)
        width = 0.8 / len(targets)
        x = np.arange(len(labels))
        for j, t in enumerate(targets):
            sub = bm[bm["target"] == t]
            vals, lo, hi = np.full(len(labels), np.nan), np.zeros(len(labels)), np.zeros(len(labels))
            for _, r in sub.iterrows():
                i = labels.index(series_label(r["model"], r["model_options"]))
                vals[i] = r["speedup_median"]
                lo[i], hi[i] = r["speedup_median"] - r["speedup_min"], r["speedup_max"] - r["speedup_median"]
            ax.bar(x + (j - (len(targets) - 1) / 2) * width, vals, width, yerr=[lo, hi], capsize=2,
                   color=colors[t], label=t)
        ax.axhline(1.0, color="0.3", lw=0.9)
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylabel("speed-up (p50 fp32 / p50 int8)")
        ax.set_title("int8 speed-up")
        _legend(ax, title="target")
    p.figure = fig
    return p


def plot_throughput_vs_batch(df: pd.DataFrame, an: Analysis) -> Plot:
    p = Plot("throughput_vs_batch", "Throughput vs batch",
             "items/s against batch size, one line per model and resolution, one panel per target and precision.")
    lat = latency_rows(df)
    lat = lat[np.isfinite(lat["items_per_s"]) & (lat["batch"] > 0)]
    lat = lat.assign(label=_labels(lat))
    nb = lat.groupby(["label", "target", "precision", "resolution", "threads"], dropna=False)["batch"].nunique()
    keep = nb[nb >= 2].reset_index()[["label", "target", "precision", "resolution", "threads"]]
    if keep.empty:
        p.skipped = "no model was measured at two or more batch sizes (same target, precision, resolution)"
        return p
    lat = lat.merge(keep, on=["label", "target", "precision", "resolution", "threads"])
    panels = list(lat.groupby(["target", "precision"], sort=True).groups)
    with _rc():
        fig, axes = _figure(len(panels), legend=_sized(lat.drop_duplicates(["label", "target", "precision",
                                                                            "resolution", "threads"]),
                                                       ["target", "precision"], lat["label"] + " @ 0000"))
        colors = _palette(lat["label"])
        markers = _markers(lat["resolution"].astype(int).astype(str))
        many_res = lat["resolution"].nunique() > 1
        for ax, (target, precision) in zip(axes, panels):
            sub = lat[(lat["target"] == target) & (lat["precision"] == precision)]
            for (lab, res, _thr), g in sub.groupby(["label", "resolution", "threads"], sort=True, dropna=False):
                g = g.sort_values("batch").drop_duplicates("batch")
                name = f"{lab} @ {int(res)}" if many_res else lab
                ax.plot(g["batch"], g["items_per_s"], marker=markers[str(int(res))], ms=4, color=colors[lab],
                        label=name)
            ax.set_xscale("log", base=2)
            bs = sorted(sub["batch"].unique())
            ax.set_xticks(bs, [str(int(b)) for b in bs])
            ax.xaxis.set_minor_locator(_null_locator())
            ax.set_xlabel("batch")
            ax.set_ylabel("items/s")
            ax.set_title(_panel_title(target, precision))
            _legend(ax)
    p.figure = fig
    return p


def _plot_pareto(df: pd.DataFrame, column: str, name: str, what: str, unit: str) -> Plot:
    p = Plot(name, f"Latency vs {what} with the Pareto front",
             f"p50 latency against {what} per item ({unit}), one panel per target and precision, at the smallest "
             f"batch measured. The line joins the Pareto front: cells that no other cell beats with at least "
             f"as many {what} at no more latency ({what} standing in for model capacity).")
    lat = latency_rows(df)
    lat = lat[lat[column] > 0]
    if lat.empty:
        p.skipped = f"no ok cell has a {column} value"
        return p
    lat = lat.assign(label=_labels(lat))
    panels = list(lat.groupby(["target", "precision"], sort=True).groups)
    with _rc():
        fig, axes = _figure(len(panels), legend=sorted(lat["label"].unique()) + ["Pareto front (00)"])
        colors = _palette(lat["label"])
        markers = _markers(lat["label"])
        for ax, (target, precision) in zip(axes, panels):
            sub = lat[(lat["target"] == target) & (lat["precision"] == precision)]
            sub = sub[sub["batch"].fillna(1) == sub["batch"].fillna(1).min()]
            for lab, g in sub.groupby("label", sort=True):
                ax.scatter(g[column], g["p50_ms"], s=22, color=colors[lab], marker=markers[lab], label=lab,
                           zorder=3)
            front = pareto_front(sub[column], sub["p50_ms"])
            f = sub[front].sort_values(column)
            if len(f):
                ax.step(f[column], f["p50_ms"], where="pre", color="0.15", lw=1.1, zorder=2,
                        label=f"Pareto front ({len(f)})")
            ax.set_xscale("log")
            ax.set_yscale("log")
            _readable_log(ax, "x")
            _readable_log(ax, "y")
            ax.set_xlabel(f"{what} per item ({unit})")
            ax.set_ylabel("p50 latency (ms)")
            batch = sub["batch"].min()
            ax.set_title(_panel_title(target, precision) + (f" · batch {int(batch)}" if batch == batch else ""))
            _legend(ax)
    p.figure = fig
    return p


def plot_latency_vs_gmacs(df: pd.DataFrame, an: Analysis) -> Plot:
    return _plot_pareto(df, "gmacs", "latency_vs_gmacs", "MACs", "GMACs")


def plot_latency_vs_params(df: pd.DataFrame, an: Analysis) -> Plot:
    return _plot_pareto(df, "params_m", "latency_vs_params", "parameters", "millions")


def plot_latency_vs_accuracy(df: pd.DataFrame, an: Analysis) -> Plot:
    p = Plot("latency_vs_accuracy", "Latency vs accuracy with the Pareto front",
             "p50 latency against top-1 accuracy on the labelled images (--eval-data), measured on the runtime "
             "that ran each variant: one panel per model, a point per target and precision (batch and resolution "
             "as measured). The line joins the Pareto front: variants no other variant beats with at least their "
             "accuracy at no more latency -- the variants worth shipping.")
    lat = latency_rows(df)
    if "top1" not in lat.columns:
        p.skipped = "the table has no top1 column (run the cells with --eval-data)"
        return p
    lat = lat[lat["top1"].notna()]
    if lat.empty:
        p.skipped = "no ok cell was measured with --eval-data (top1)"
        return p
    lat = lat.assign(label=_labels(lat), variant=lat["target"] + " " + lat["precision"])
    models = sorted(lat["label"].unique())
    with _rc():
        fig, axes = _figure(len(models), legend=sorted(lat["variant"].unique()) + ["Pareto front (00)"])
        colors = _palette(lat["variant"])
        markers = _markers(lat["variant"])
        for ax, model in zip(axes, models):
            sub = lat[lat["label"] == model]
            for var, g in sub.groupby("variant", sort=True):
                ax.scatter(100 * g["top1"], g["p50_ms"], s=24, color=colors[var], marker=markers[var], label=var,
                           zorder=3)
            front = pareto_front(sub["top1"], sub["p50_ms"])
            f = sub[front].sort_values("top1")
            if len(f):
                ax.step(100 * f["top1"], f["p50_ms"], where="pre", color="0.15", lw=1.1, zorder=2,
                        label=f"Pareto front ({len(f)})")
            ax.set_yscale("log")
            _readable_log(ax, "y")
            lo, hi = ax.get_xlim()
            ax.set_xlim(max(lo, 0.0), min(hi, 100.5))  # no axis past 100% (one accuracy: matplotlib pads it +-5%)
            ax.set_xlabel("top-1 accuracy (%)")
            ax.set_ylabel("p50 latency (ms)")
            ax.set_title(str(model))
            _legend(ax)
    p.figure = fig
    return p


def plot_memory(df: pd.DataFrame, an: Analysis) -> Plot:
    p = Plot("memory", "Memory per model",
             "Left: peak resident set size of the benchmark process (median over the model's cells) per target "
             "and precision. Right: the artifact's size on disk per precision (largest over targets).")
    ok = df[df["status"] == "ok"]
    ok = ok.assign(label=_labels(ok), tp=ok["target"] + " · " + ok["precision"])
    have_rss = np.isfinite(ok["rss_peak_mb"]).any()
    have_art = np.isfinite(ok["artifact_mb"]).any()
    if not (have_rss or have_art):
        p.skipped = "no ok cell has rss_peak_mb or artifact_mb"
        return p
    parts = [("rss_peak_mb", "tp", "median", "peak RSS (MB)")] if have_rss else []
    parts += [("artifact_mb", "precision", "max", "artifact on disk (MB)")] if have_art else []
    labels = sorted(ok["label"].unique())
    with _rc():
        fig, axes = _figure(len(parts), panel=(max(5.0, 0.5 * len(labels) + 2), 3.8),
                            legend=max([sorted(ok["tp"].unique()), sorted(ok["precision"].unique())], key=len))
        for ax, (col, by, how, ylabel) in zip(axes, parts):
            sub = ok[np.isfinite(ok[col])]
            groups = sorted(sub[by].unique())
            colors = _palette(groups)
            width = 0.8 / max(1, len(groups))
            x = np.arange(len(labels))
            agg = sub.groupby(["label", by])[col].agg(how)
            for j, gname in enumerate(groups):
                vals = [agg.get((lab, gname), np.nan) for lab in labels]
                ax.bar(x + (j - (len(groups) - 1) / 2) * width, vals, width, color=colors[gname], label=gname)
            ax.set_xticks(x, labels, rotation=30, ha="right")
            ax.set_ylabel(ylabel)
            ax.set_title(ylabel)
            _legend(ax)
    p.figure = fig
    return p


def peak_share_percent(values: pd.Series) -> pd.Series:
    """``peak_share`` as a percentage: the contract's fraction (1.0 = the peak; a whole model can exceed a
    single GEMM's peak), or already a percentage when any value is above 5."""
    v = values.astype(float)
    return v if (v > 5).any() else v * 100


def plot_peak_share(df: pd.DataFrame, an: Analysis) -> Plot:
    p = Plot("peak_share", "Achieved GFLOP/s as a share of the machine's peak",
             "Achieved GFLOP/s (2 x MACs x batch / p50) as a percentage of the machine's peak for the cell's "
             "precision (the kind of peak is in the legend: measured GEMM peak or theoretical), median over the "
             "model's cells per target and precision.")
    ok = df[(df["status"] == "ok") & np.isfinite(df["peak_share"])]
    if ok.empty:
        p.skipped = "no ok cell has a peak_share value (run 'deploykit peak' before the sweep)"
        return p
    ok = ok.assign(label=_labels(ok), share=peak_share_percent(ok["peak_share"]),
                   tp=ok["target"] + " · " + ok["precision"]
                   + ok["peak_kind"].map(lambda k: f" ({k} peak)" if k else ""))
    labels = sorted(ok["label"].unique())
    groups = sorted(ok["tp"].unique())
    with _rc():
        fig, (ax,) = _figure(1, panel=(max(6.0, 0.25 * len(labels) * max(1, len(groups)) + 1.5), 3.8),
                             legend=groups)
        colors = _palette(groups)
        width = 0.8 / len(groups)
        x = np.arange(len(labels))
        agg = ok.groupby(["label", "tp"])["share"].median()
        for j, gname in enumerate(groups):
            vals = [agg.get((lab, gname), np.nan) for lab in labels]
            ax.bar(x + (j - (len(groups) - 1) / 2) * width, vals, width, color=colors[gname], label=gname)
        ax.axhline(100, color="0.3", lw=0.9)
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_ylabel("% of peak")
        ax.set_title("achieved GFLOP/s share of peak")
        _legend(ax)
    p.figure = fig
    return p


def plot_attention_share(df: pd.DataFrame, an: Analysis) -> Plot:
    p = Plot("attention_share", "Attention share of the MACs vs resolution",
             "MACs in attention's activation-activation MatMuls (QK^T and AV) as a share of all MACs, per "
             "attention model; attention dominates the MAC count above the 50% line.")
    ok = df[(df["status"] == "ok") & (df["gmacs"] > 0) & np.isfinite(df["gmacs_attention"])
            & (df["resolution"] > 0)]
    am = an.attention_macs
    if am.empty or ok.empty:
        p.skipped = "no attention model (family vit/parc or gmacs_attention > 0) has gmacs_attention values"
        return p
    ok = ok.assign(label=_labels(ok))
    wanted = {series_label(m, o) for m, o in zip(am["model"], am["model_options"])}
    ok = ok[ok["label"].isin(wanted)]
    ok = ok[ok.groupby("label")["gmacs_attention"].transform("max") > 0]  # ParC-style models: no attention MACs
    if ok.empty:
        p.skipped = "no attention model has attention MACs (gmacs_attention > 0)"
        return p
    with _rc():
        fig, (ax,) = _figure(1, panel=(7.0, 3.8), legend=sorted(ok["label"].unique()))
        colors = _palette(ok["label"])
        for lab, g in ok.groupby("label", sort=True):
            g = g.sort_values("resolution").drop_duplicates("resolution")
            ax.plot(g["resolution"], 100 * g["gmacs_attention"] / g["gmacs"], marker="o", ms=4, color=colors[lab],
                    label=lab)
        ax.axhline(50, color="0.3", lw=0.9, ls="--")
        ax.set_xlabel("input side length (px)")
        ax.set_ylabel("attention MACs (% of all)")
        ax.set_ylim(0, 100)
        ax.set_title("attention share of MACs")
        _legend(ax)
    p.figure = fig
    return p


def option_plot_name(name: str) -> str:
    """The plot of a model option's values: ``parc_impl`` -> ``parc_impls``."""
    return f"{name}s"


def plot_option(df: pd.DataFrame, an: Analysis, oc: OptionComparison) -> Plot:
    """p50 of each value of one model option against resolution, per model (``Analysis.options``)."""
    values = oc.option.choices or tuple(sorted({parse_options(t).get(oc.name, "") for t in df["model_options"]}
                                               - {""}))
    p = Plot(option_plot_name(oc.name), f"{oc.label}s vs resolution",
             f"p50 latency of each {oc.name} ({', '.join(values)}) against input side length, per model, one "
             "panel per target and precision (log-log).")
    lat = latency_rows(df)
    has = lat["model_options"].map(lambda s: oc.name in parse_options(s)).astype(bool)
    lat = lat[has & (lat["resolution"] > 0)]
    if lat.empty or oc.table.empty:
        p.skipped = f"no model was measured with two or more {oc.name} values at the same settings"
        return p
    lat = lat.assign(label=_labels(lat))
    keys = ["label", "target", "precision", "batch", "threads"]
    nres = lat.groupby(keys, dropna=False)["resolution"].transform("nunique")
    lat = lat[nres >= 2]
    if lat.empty:
        p.skipped = f"no {oc.label} was measured at two or more resolutions"
        return p
    panels = list(lat.groupby(["target", "precision", "batch", "threads"], sort=True, dropna=False).groups)
    many_batches = len({b for _, _, b, _ in panels}) > 1
    many_threads = len({t for _, _, _, t in panels}) > 1
    with _rc():
        fig, axes = _figure(len(panels), legend=_sized(lat.drop_duplicates(["label", "target", "precision", "batch",
                                                                            "threads"]),
                                                       ["target", "precision", "batch", "threads"], lat["label"]))
        colors = _palette(lat["label"])
        for ax, (target, precision, batch, threads) in zip(axes, panels):
            sub = lat[(lat["target"] == target) & (lat["precision"] == precision) & _eq(lat["batch"], batch)
                      & _eq(lat["threads"], threads)]
            for lab, g in sub.groupby("label", sort=True):
                g = g.sort_values("resolution").drop_duplicates("resolution")
                ax.errorbar(g["resolution"], g["p50_ms"], yerr=_yerr(g), marker="o", ms=4, capsize=2,
                            color=colors[lab], label=lab)
            ax.set_xscale("log")
            ax.set_yscale("log")
            rs = sorted(sub["resolution"].unique())
            ax.set_xticks(rs, [str(int(r)) for r in rs])
            ax.xaxis.set_minor_locator(_null_locator())
            _readable_log(ax, "y")
            ax.set_xlabel("input side length (px)")
            ax.set_ylabel("p50 latency (ms)")
            ax.set_title(_panel_title(target, precision, batch, many_batches, threads, many_threads))
            _legend(ax)
    p.figure = fig
    return p


def plot_latency_vs_qps(df: pd.DataFrame, an: Analysis) -> Plot:
    p = Plot("latency_vs_qps", "Latency vs QPS under load (LoadGen server cells)",
             "p99 (solid) and p50 (dashed) latency as LoadGen measured them against the QPS each server cell "
             "achieved, one line per model, one panel per target and precision. Red crosses: INVALID runs "
             "(LoadGen's verdict; the reasons are in the cells' reports). Horizontal line: the latency bound at "
             "its percentile, where the cells' reports give it.")
    sv = an.server
    if sv.empty:
        p.skipped = "no ok LoadGen server cell (scenario server) in the table"
        return p
    sv = sv.assign(label=_labels(sv))
    many_res = sv["resolution"].nunique(dropna=False) > 1
    if many_res:
        sv["label"] = sv["label"] + sv["resolution"].map(lambda r: f" @ {int(r)}" if r == r else "")
    panels = list(sv.groupby(["target", "precision", "batch", "threads"], sort=True, dropna=False).groups)
    many_batches = len({b for _, _, b, _ in panels}) > 1
    many_threads = len({t for _, _, _, t in panels}) > 1
    with _rc():
        longest = max([f"{lab} p99" for lab in sv["label"]] + ["bound 000 ms (p99.9)"], key=len)
        entries = sv.groupby(["target", "precision", "batch", "threads"], dropna=False)["label"].nunique()
        fig, axes = _figure(len(panels), legend=[longest] * (2 * int(entries.max()) + 2))
        colors = _palette(sv["label"])
        for ax, (target, precision, batch, threads) in zip(axes, panels):
            sub = sv[(sv["target"] == target) & (sv["precision"] == precision) & _eq(sv["batch"], batch)
                     & _eq(sv["threads"], threads)]
            for lab, g in sub.groupby("label", sort=True):
                g = g.sort_values("qps_achieved")
                ax.plot(g["qps_achieved"], g["p99_ms"], "-o", ms=4, color=colors[lab], label=f"{lab} p99")
                ax.plot(g["qps_achieved"], g["p50_ms"], "--", marker="o", ms=3, mfc="none", lw=1, color=colors[lab],
                        label=f"{lab} p50")
            bad = sub[sub["valid"].map(lambda v: v is False).astype(bool)]
            if len(bad):
                ax.scatter(bad["qps_achieved"], bad["p99_ms"], marker="x", s=48, color="#cf222e", zorder=4,
                           label="INVALID")
            for bound, pct in sorted({(b, q) for b, q in zip(sub["latency_bound_ms"], sub["percentile"])
                                      if b == b}):
                ax.axhline(bound, color="0.25", lw=0.9, ls=":",
                           label=f"bound {N.given(bound)} ms" + (f" (p{N.given(pct)})" if pct == pct else ""))
            y = np.concatenate([sub["p50_ms"].to_numpy(float), sub["p99_ms"].to_numpy(float)])
            y = y[np.isfinite(y) & (y > 0)]
            if y.size and y.max() / y.min() > 20:  # an overloaded server's tail dwarfs the rest
                ax.set_yscale("log")
                _readable_log(ax, "y")
            ax.set_xlabel("achieved QPS (queries/s)")
            ax.set_ylabel("latency (ms)")
            ax.set_title(_panel_title(target, precision, batch, many_batches, threads, many_threads))
            _legend(ax)
    p.figure = fig
    return p


def plot_latency_summary(df: pd.DataFrame, an: Analysis) -> Plot:
    """The answer first: p50 per model (a row) and target (a bar), with its 95% CI."""
    rows, targets, where = latency_summary(df)
    p = Plot("latency_summary", "p50 latency per model and target",
             "p50 latency of each model on each target, with the bootstrap 95% CI of the median as whiskers"
             + (f" (at {', '.join(where)}; the results table has every cell)" if where else "") + ". Shorter is "
             "faster.")
    if rows.empty:
        p.skipped = "no ok latency cell in the table"
        return p
    labels = list(rows["label"])
    with _rc():
        height = max(2.2, 0.26 * len(labels) * max(1, len(targets)) ** 0.5 + 1.2)
        fig, (ax,) = _figure(1, panel=(9.0, height), legend=targets)
        colors = _palette(targets)
        width = 0.8 / len(targets)
        y = np.arange(len(labels))
        for j, t in enumerate(targets):
            v = rows[f"p50|{t}"].to_numpy(float)
            lo = np.clip(v - rows[f"lo|{t}"].to_numpy(float), 0, None)
            hi = np.clip(rows[f"hi|{t}"].to_numpy(float) - v, 0, None)
            err = np.nan_to_num(np.vstack([lo, hi]))
            ax.barh(y + (j - (len(targets) - 1) / 2) * width, v, width, xerr=err, capsize=2, color=colors[t],
                    label=t)
        vals = rows[[f"p50|{t}" for t in targets]].to_numpy(float)
        vals = vals[np.isfinite(vals) & (vals > 0)]
        if vals.size and vals.max() / vals.min() > 20:
            ax.set_xscale("log")
            _readable_log(ax, "x")
        ax.set_yticks(y, labels)
        ax.invert_yaxis()  # the first model on top, as in the table
        ax.set_xlabel("p50 latency (ms)")
        ax.set_title("p50 latency" + (f" ({', '.join(where)})" if where else ""))
        _legend(ax, title="target")
    p.figure = fig
    return p


PLOTTERS = (plot_latency_summary, plot_latency_vs_resolution, plot_int8_speedup, plot_throughput_vs_batch,
            plot_latency_vs_gmacs, plot_latency_vs_params, plot_latency_vs_accuracy, plot_memory, plot_peak_share,
            plot_attention_share)
LAST_PLOTTERS = (plot_latency_vs_qps,)  # after the plots of the model options


def _plot_names() -> tuple[str, ...]:
    from deploykit.models import model_options_declared

    return tuple([fn.__name__.removeprefix("plot_") for fn in PLOTTERS]
                 + [option_plot_name(o.name) for o in model_options_declared()]
                 + [fn.__name__.removeprefix("plot_") for fn in LAST_PLOTTERS])


# every plot a report has, drawn or not: one per plotter and one per declared model option (a table may add one
# for an option no model declares)
PLOT_NAMES = _plot_names()


def make_plots(df: pd.DataFrame, an: Analysis) -> list[Plot]:
    return ([fn(df, an) for fn in PLOTTERS] + [plot_option(df, an, oc) for oc in an.options]
            + [fn(df, an) for fn in LAST_PLOTTERS])


# --------------------------------------------------------------------------------------------- renderings

def svg_file(fig) -> bytes:
    """The figure as a standalone SVG file (drawn once per figure; the page and --plots share it)."""
    cached = getattr(fig, "dk_svg", None)
    if cached is None:
        buf = io.BytesIO()
        with _rc():
            fig.savefig(buf, format="svg", metadata={"Date": None})
        cached = fig.dk_svg = buf.getvalue()
    return cached


_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_XMLNS = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')


def svg_inline(fig, element_id: str) -> str:
    """The figure as an <svg> element for an HTML page: the XML prolog, DOCTYPE, metadata and namespace
    declarations (URLs, not needed in HTML) removed; ``id`` and an accessible role added."""
    text = svg_file(fig).decode("utf-8")
    text = _PROLOG.sub("", text, count=1)
    text = _METADATA.sub("", text)
    text = _XMLNS.sub("", text)
    text = text.replace("xlink:href=", "href=")
    return text.replace("<svg ", f'<svg id="{element_id}" role="img" ', 1)


def png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    with _rc():
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
