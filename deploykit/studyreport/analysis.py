"""Analyses of a results table (one row per sweep cell, the columns of the results-table contract), computed
generically from whatever cells the table holds: complexity exponents, attention crossovers, the fastest value of
each model option (the ParC implementation, ...) per resolution, int8 speed-ups, Pareto fronts. ``deploykit
report`` renders them.

Every analysis uses the cells with status ``ok`` and the ``latency`` scenario (bench cells), and one series is
one (model, model_options, target, precision, batch, threads) -- except the serving table, which lists the ok
LoadGen ``server`` cells (latency vs QPS). Statistics come from ``bench/stats.py``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from deploykit.core.errors import InputError
from deploykit.core.guarded import inside, read_json
from deploykit.report.results import COLUMNS as RESULT_COLUMNS
from deploykit.report.results import RESULTS_CSV, RESULTS_PARQUET

if TYPE_CHECKING:
    from deploykit.models.registry import ModelOption

# the results-table contract's columns, in order: the one definition is report/results.py (which writes the table)
COLUMNS = [c for c, _ in RESULT_COLUMNS]
KEY_COLUMNS = COLUMNS[:COLUMNS.index("scenario") + 1]
STRING_COLUMNS = [c for c, kind in RESULT_COLUMNS if kind == "str"]
NUMERIC_COLUMNS = [c for c, kind in RESULT_COLUMNS if kind in ("int", "float")]
SIGNED_COLUMNS = ("exit_code", "rss_increase_mb")  # may be below zero (a signal, memory given back)
REQUIRED = ["model", "target", "precision", "status"]
TABLE_NAMES = (RESULTS_PARQUET, RESULTS_CSV)

SERIES = ["model", "model_options", "target", "precision", "batch", "threads"]
ATTENTION_FAMILIES = ("vit", "parc")


# ------------------------------------------------------------------------------------------------ reading

def find_table(path: Path | str) -> Path:
    """The results table at ``path``: a .parquet/.csv file, a sweep folder holding results.parquet or
    results.csv, or a folder of report JSON files (``deploykit bench`` / ``loadgen`` reports: the folder itself is
    returned, ``load_results`` builds the table from them). Raises InputError (one line) when there is none."""
    p = Path(path)
    if p.is_dir():
        for name in TABLE_NAMES:
            if (p / name).is_file():
                return p / name
        if _report_files(p):
            return p
        raise InputError(f"{p} holds no results table ({' or '.join(TABLE_NAMES)}) and no report JSON files; give a "
                         "sweep folder, a folder of bench reports or a results .parquet/.csv file")
    if not p.exists():
        raise InputError(f"results table {p} does not exist")
    if p.suffix.lower() not in (".parquet", ".csv"):
        raise InputError(f"{p} is not a results table: expected a .parquet or .csv file, or a sweep folder")
    return p


def _report_files(folder: Path) -> list[Path]:
    """The JSON files directly in ``folder`` that say they are deploykit reports (a quick look at their start)."""
    import os

    from deploykit.core.errors import InputError as _NotRegular
    from deploykit.core.guarded import open_regular

    out = []
    for f in sorted(folder.glob("*.json")):
        try:  # regular files only, not through a link: a FIFO or a device named *.json cannot hang the look
            fd = open_regular(f, what="report")
        except _NotRegular:
            continue
        try:
            head = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        if b'"schema"' in head and b'"deploykit.' in head:
            out.append(f)
    return out


def load_results(path: Path | str) -> tuple[pd.DataFrame, Path]:
    """(table, folder its ``report`` paths are relative to). Missing contract columns are added empty (NaN /
    ""); a table without the required columns or without rows raises InputError."""
    p = find_table(path)
    if p.is_dir():  # a folder of bench / loadgen reports: one row per report, as compare reads them
        from deploykit.report.results import rows_from_report_files

        rows = rows_from_report_files(_report_files(p), root=p, skip_other=True)
        if not rows:
            raise InputError(f"{p} holds no deploykit report JSON files")
        return normalize(pd.DataFrame(rows), where=str(p)), p
    from deploykit.report.results import read_table_file

    df = read_table_file(p, csv_dtype={c: str for c in STRING_COLUMNS},
                         csv_na={c: ["", "nan", "NaN", "NA", "None"] for c in NUMERIC_COLUMNS})
    return normalize(df, where=str(p)), p.parent


def normalize(df: pd.DataFrame, where: str = "results table") -> pd.DataFrame:
    """A copy of ``df`` with every contract column present and typed: strings "" when missing, numbers NaN."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"{where} is not a table")
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"{where} is not a deploykit results table: no column(s) {', '.join(missing)}")
    if df.empty:
        raise InputError(f"{where} has no rows (no sweep cell finished yet?)")
    out = df.copy()
    for c in COLUMNS:
        if c not in out.columns:
            out[c] = "" if c in STRING_COLUMNS else np.nan
    for c in STRING_COLUMNS:
        out[c] = out[c].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    for c in NUMERIC_COLUMNS:
        # a value no measurement gives (inf, or below zero where only a signed column may be) is missing, not a
        # point to fit or plot
        col = pd.to_numeric(out[c], errors="coerce").astype("float64")
        bad = ~np.isfinite(col) | ((col < 0) & (c not in SIGNED_COLUMNS))
        out[c] = col.mask(bad)
    out["loadgen_valid"] = out["loadgen_valid"].map(_verdict).astype(object)
    if (out["scenario"] == "").all():
        out["scenario"] = "latency"
    return out.reset_index(drop=True)


def _verdict(v) -> bool | None:
    """A LoadGen verdict as True / False / None, from a bool (Parquet) or its text (CSV: "True", "False", "")."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    text = str(v).strip().lower()
    return True if text == "true" else False if text == "false" else None


def latency_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ok bench cells with a positive p50."""
    m = (df["status"] == "ok") & df["scenario"].isin(["latency", ""]) & (df["p50_ms"] > 0)
    return df[m]


SUMMARY_MAX_ROWS = 24  # the summary's rows before it keeps to one resolution / thread count


def latency_summary(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The answer first: (rows, targets, where). One row per model (with its options and, where they vary,
    precision, resolution and thread count), the p50 and its CI on each target as columns ``p50|<target>``,
    ``lo|<target>``, ``hi|<target>``, the fastest target and its lead over the next (``fastest``, ``lead``). At the
    smallest batch; past ``SUMMARY_MAX_ROWS`` rows at the most measured resolution (and thread count) only --
    ``where`` says which (the results table has every cell)."""
    lat = latency_rows(df)
    if lat.empty:
        return pd.DataFrame(), [], []
    where = []
    b = lat["batch"].fillna(1)
    if b.nunique() > 1:
        where.append(f"batch {int(b.min())}")
    lat = lat[b == b.min()]
    keys = ["model", "model_options", "precision", "resolution", "threads"]
    for col, unit in (("resolution", " px"), ("threads", " threads")):
        if lat.groupby(keys, dropna=False).ngroups > SUMMARY_MAX_ROWS and lat[col].nunique() > 1:
            common = lat[col].mode().iloc[0]
            lat = lat[lat[col] == common]
            where.append(f"{int(common)}{unit}")
    vary = {c: lat[c].nunique(dropna=False) > 1 for c in ("precision", "resolution", "threads")}
    targets = sorted(lat["target"].unique())
    rows = []
    for key, g in lat.groupby(keys, dropna=False, sort=True):
        model, opts, precision, res, threads = key
        label = series_label(model, opts)
        label += f" · {precision}" if vary["precision"] else ""
        label += f" · {int(res)} px" if vary["resolution"] and res == res else ""
        label += f" · {int(threads)} threads" if vary["threads"] and threads == threads else ""
        row: dict = {"label": label}
        for t in targets:
            cell = g[g["target"] == t]
            if len(cell):
                c = cell.iloc[0]
                row[f"p50|{t}"], row[f"lo|{t}"], row[f"hi|{t}"] = c["p50_ms"], c["ci_low_ms"], c["ci_high_ms"]
        measured = sorted((row[f"p50|{t}"], t) for t in targets if f"p50|{t}" in row)
        row["fastest"] = measured[0][1] if len(measured) > 1 else ""
        row["lead"] = measured[1][0] / measured[0][0] if len(measured) > 1 else np.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    for t in targets:
        for k in ("p50", "lo", "hi"):
            if f"{k}|{t}" not in out.columns:
                out[f"{k}|{t}"] = np.nan
    return out, targets, where


def series_label(model: str, options: str) -> str:
    return f"{model} [{options}]" if options else model


def parse_options(text: str) -> dict[str, str]:
    """``"parc_impl=fft,foo=1"`` (commas, semicolons or spaces between pairs) -> dict."""
    out = {}
    for part in re.split(r"[,;\s]+", text or ""):
        k, sep, v = part.partition("=")
        if sep and k:
            out[k] = v
    return out


def format_options(opts: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(opts.items()))


# --------------------------------------------------------------------------------- raw samples and machines

@dataclass
class CellReports:
    """What the cells' JSON reports add to the table: raw samples per row index, and machine fingerprints."""

    samples: dict[int, np.ndarray] = field(default_factory=dict)
    environments: list[dict] = field(default_factory=list)  # one per distinct machine, with "cells": count
    unreadable: int = 0
    # LoadGen cells: (latency bound in ms or None, its percentile or None) per row index, from loadgen.target
    bounds: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)

    def samples_of(self, idx) -> np.ndarray | None:
        return self.samples.get(int(idx))


def read_cell_reports(df: pd.DataFrame, base_dir: Path | None) -> CellReports:
    """Read each ok cell's JSON report (``report`` column, relative to ``base_dir``): raw samples
    (timing.samples_ms) and the environment. Missing or unreadable reports are counted, not fatal."""
    out = CellReports()
    machines: dict[str, dict] = {}
    for idx, row in df.iterrows():
        rel = row["report"]
        if not rel or row["status"] != "ok":
            continue
        try:
            path = Path(rel) if base_dir is None else inside(base_dir, rel, what="report path")
            rep = read_json(path, what="cell report")
        except InputError:
            out.unreadable += 1
            continue
        if not isinstance(rep, dict):
            out.unreadable += 1
            continue
        target = (rep.get("loadgen") or {}).get("target") if isinstance(rep.get("loadgen"), dict) else None
        if isinstance(target, dict):
            out.bounds[int(idx)] = (_positive(target.get("latency_bound_ms")), _positive(target.get("percentile")))
        samples = (rep.get("timing") or {}).get("samples_ms")
        if isinstance(samples, list) and len(samples) > 1:
            a = np.asarray([v for v in samples if isinstance(v, (int, float))], dtype=np.float64)
            if a.size > 1 and np.all(a > 0):
                out.samples[int(idx)] = a
        env = rep.get("environment")
        if isinstance(env, dict):
            desc = machine_description(env)
            m = machines.setdefault(desc["key"], {**desc, "cells": 0, "hosts": set()})
            m["cells"] += 1
            if row["host"]:
                m["hosts"].add(row["host"])
    out.environments = [{**m, "hosts": sorted(m["hosts"])} for m in machines.values()]
    return out


def _positive(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 \
        else None


def machine_description(env: dict) -> dict:
    """A short description of a report's environment fingerprint (the fields that make latencies comparable)."""
    from deploykit.bench.fingerprint import comparable_key

    key = comparable_key(env)
    cpu = env.get("cpu") or {}
    pkgs = env.get("packages") or {}
    gpu = env.get("gpu") or {}
    return {
        "key": json.dumps({k: v for k, v in key.items() if k != "threads"}, sort_keys=True, default=str),
        "cpu": str(cpu.get("model") or "unknown CPU"),
        "cores": cpu.get("usable_cores") or cpu.get("logical_cores"),
        "isa": " ".join(str(f) for f in (cpu.get("isa") or [])),
        "os": str((env.get("os") or {}).get("platform") or ""),
        "python": str(env.get("python") or ""),
        "packages": {k: str(v) for k, v in pkgs.items() if v},
        "gpu": str(gpu.get("name") or ""),
        "deploykit": str((env.get("deploykit") or {}).get("version") or ""),
    }


# ---------------------------------------------------------------------------------------- complexity fits

def _ci_pairs(rows: pd.DataFrame) -> list[tuple[float, float] | None]:
    return [None if not (np.isfinite(lo) and np.isfinite(hi)) else (float(lo), float(hi))
            for lo, hi in zip(rows["ci_low_ms"], rows["ci_high_ms"])]


def _series_points(rows: pd.DataFrame) -> pd.DataFrame:
    """One point per resolution (the first cell when a series repeats one), sorted by resolution."""
    rows = rows[rows["resolution"] > 0]
    return rows.sort_values("resolution", kind="stable").drop_duplicates("resolution")


def exponent_table(df: pd.DataFrame, cells: CellReports | None = None, *, n_boot: int = 2000,
                   seed: int = 0) -> pd.DataFrame:
    """Per series with at least two resolutions: latency = a * pixels**k fitted on log-log (pixels =
    resolution**2) with the bootstrap CI of k; k_first / k_last are the slopes of the first and last segment
    (how k changes with resolution). Cells the table flags ``noisy`` (bench.stats.noise_flags) are left out of
    the fit while at least two quiet resolutions remain; ``noisy_excluded`` counts them (``noisy_used``: noisy
    cells the fit had to keep)."""
    from deploykit.bench.stats import fit_power_law

    rows = []
    lat = latency_rows(df)
    for key, g in lat.groupby(SERIES, sort=True, dropna=False):
        noisy = g["noisy"].fillna(False).astype(bool) if "noisy" in g else pd.Series(False, index=g.index)
        pts = _series_points(g[~noisy])
        excluded, used = int(noisy.sum()), 0
        if len(pts) < 2:  # too few quiet points: fit them all, and say the fit rests on noisy cells
            pts = _series_points(g)
            excluded, used = 0, int(noisy[pts.index].sum())
        if len(pts) < 2:
            continue
        res = pts["resolution"].to_numpy(dtype=float)
        pix, y = res ** 2, pts["p50_ms"].to_numpy(dtype=float)
        samples = [cells.samples_of(i) if cells else None for i in pts.index]
        fit = fit_power_law(pix, y, samples=samples, ci=_ci_pairs(pts), n_boot=n_boot, seed=seed)
        slopes = np.diff(np.log(y)) / np.diff(np.log(pix))
        rows.append({
            **dict(zip(SERIES, key)), "family": g["family"].iloc[0],
            "resolutions": _res_text(res), "points": len(pts),
            "k": fit.k, "k_ci_low": fit.ci[0] if fit.ci else np.nan, "k_ci_high": fit.ci[1] if fit.ci else np.nan,
            "prefactor_ms": fit.prefactor, "r2": fit.r2, "k_first": float(slopes[0]), "k_last": float(slopes[-1]),
            "ci_method": fit.method, "noisy_excluded": excluded, "noisy_used": used,
        })
    return pd.DataFrame(rows, columns=SERIES + ["family", "resolutions", "points", "k", "k_ci_low", "k_ci_high",
                                                "prefactor_ms", "r2", "k_first", "k_last", "ci_method",
                                                "noisy_excluded", "noisy_used"])


def _res_text(res) -> str:
    r = sorted({int(v) for v in res})
    return f"{r[0]}-{r[-1]} ({len(r)})" if len(r) > 1 else str(r[0])


def is_attention_model(g: pd.DataFrame) -> bool:
    fam = set(g["family"].str.lower())
    return bool(fam & set(ATTENTION_FAMILIES)) or bool((g["gmacs_attention"] > 0).any())


def attention_macs_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per attention model (family vit/parc or any gmacs_attention > 0): the resolution where attention MACs
    exceed half of all MACs. log(attention / other MACs) is interpolated linearly in log(pixels) between the
    resolutions present (exact for power laws); outside them it is extrapolated from the two nearest ones."""
    ok = df[(df["status"] == "ok") & (df["gmacs"] > 0)]
    rows = []
    for (model, opts), g in ok.groupby(["model", "model_options"], sort=True):
        if not is_attention_model(g):
            continue
        pts = g[g["resolution"] > 0].sort_values("resolution").drop_duplicates("resolution")
        res = pts["resolution"].to_numpy(dtype=float)
        tot = pts["gmacs"].to_numpy(dtype=float)
        att = pts["gmacs_attention"].to_numpy(dtype=float)
        row = {"model": model, "model_options": opts, "family": g["family"].iloc[0],
               "resolutions": _res_text(res) if len(res) else "", "attn_share_first": np.nan,
               "attn_share_last": np.nan, "crossover_side": np.nan, "how": ""}
        have = np.isfinite(att)
        if not have.any():
            row["how"] = "no gmacs_attention in the table"
            rows.append(row)
            continue
        res, tot, att = res[have], tot[have], att[have]
        share = att / tot
        row["attn_share_first"], row["attn_share_last"] = float(share[0]), float(share[-1])
        row["crossover_side"], row["how"] = _mac_crossover(res, att, tot - att)
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "model_options", "family", "resolutions", "attn_share_first",
                                       "attn_share_last", "crossover_side", "how"])


def _mac_crossover(res: np.ndarray, att: np.ndarray, other: np.ndarray) -> tuple[float, str]:
    if not (att > 0).any():
        return np.nan, "no attention MACs at any resolution"
    keep = (att > 0) & (other > 0)
    if not keep.any():
        return np.nan, "attention is all of the MACs"
    res, att, other = res[keep], att[keep], other[keep]
    lp, r = np.log(res ** 2), np.log(att / other)  # r >= 0: attention is at least half
    if r[0] >= 0:
        return float(res[0]), f"already at or above half at the smallest resolution ({int(res[0])})"
    for i in range(1, len(r)):
        if r[i] >= 0:
            t = -r[i - 1] / (r[i] - r[i - 1])
            return float(math.sqrt(math.exp(lp[i - 1] + t * (lp[i] - lp[i - 1])))), "interpolated"
    if len(r) < 2:
        return np.nan, f"below half at the only resolution ({int(res[0])}); no trend to extrapolate"
    slope = (r[-1] - r[-2]) / (lp[-1] - lp[-2])
    if slope <= 1e-9:
        return np.inf, "never: the attention share does not grow with resolution"
    p = math.exp(lp[-1] - r[-1] / slope)
    return float(math.sqrt(p)), f"extrapolated beyond {int(res[-1])}"


def attention_time_table(df: pd.DataFrame, cells: CellReports | None = None, *, n_boot: int = 1000,
                         seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Per attention-model series with at least 3 resolutions: t(P) = c0 + c1 P + c2 P^2 (P = pixels) and the
    side length sqrt(c1/c2) above which the quadratic term exceeds the linear one, with its bootstrap CI.
    Also returns notes on the series that could not be fitted."""
    from deploykit.bench.stats import fit_linear_quadratic

    rows, notes = [], []
    lat = latency_rows(df)
    for key, g in lat.groupby(SERIES, sort=True, dropna=False):
        if not is_attention_model(df[(df["model"] == key[0]) & (df["model_options"] == key[1])]):
            continue
        pts = _series_points(g)
        label = f"{series_label(key[0], key[1])} {key[2]} {key[3]} batch {int(key[4]) if key[4] == key[4] else '?'}"
        if len(pts) < 3:
            if len(pts) == 2:  # measured for scaling, but too few points for three coefficients
                notes.append(f"{label}: 2 resolutions; the fit needs 3")
            continue
        res = pts["resolution"].to_numpy(dtype=float)
        samples = [cells.samples_of(i) if cells else None for i in pts.index]
        fit = fit_linear_quadratic(res ** 2, pts["p50_ms"].to_numpy(dtype=float), samples=samples,
                                   ci=_ci_pairs(pts), n_boot=n_boot, seed=seed)
        rows.append({
            **dict(zip(SERIES, key)), "family": g["family"].iloc[0], "resolutions": _res_text(res),
            "c0_ms": fit.c0, "c1_ms_per_mpix": fit.c1 * 1e6, "c2_ms_per_mpix2": fit.c2 * 1e12,
            "crossover_side": fit.crossover_side,
            "side_ci_low": fit.side_ci[0] if fit.side_ci else np.nan,
            "side_ci_high": fit.side_ci[1] if fit.side_ci else np.nan,
            "in_range": fit.crossover_in_range, "no_crossover_share": fit.no_crossover_share, "r2": fit.r2,
            "ci_method": fit.method,
        })
    cols = SERIES + ["family", "resolutions", "c0_ms", "c1_ms_per_mpix", "c2_ms_per_mpix2", "crossover_side",
                     "side_ci_low", "side_ci_high", "in_range", "no_crossover_share", "r2", "ci_method"]
    return pd.DataFrame(rows, columns=cols), notes


# ------------------------------------------------------------------------------------------- model options

def compared_options(df: pd.DataFrame) -> list[ModelOption]:
    """The model options the report compares (``models.registry.ModelOption``): every declared one, in declaration
    order, then any other option key the table's ``model_options`` column holds (a model registered elsewhere, an
    older table), described by its key alone."""
    from deploykit.models import ModelOption, model_options_declared

    declared = model_options_declared()
    names = {o.name for o in declared}
    found = sorted({k for text in df["model_options"].unique() for k in parse_options(text)} - names)
    return declared + [ModelOption(k, ()) for k in found]


def option_label(option: ModelOption) -> str:
    """What one value of the option is, in words: its declared label (ParC implementation), else "<key> value"."""
    return option.label or f"{option.name} value"


def option_table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """For models measured with several values of model option ``name``: p50 of each value per (model, its other
    options, target, precision, batch, threads, resolution), the fastest, and whether its lead is clear (its CI
    of the median lies below every other value's)."""
    lat = latency_rows(df).copy()
    opts = lat["model_options"].map(parse_options)
    lat = lat[opts.map(lambda o: name in o).astype(bool)]
    if lat.empty:
        return pd.DataFrame()
    opts = lat["model_options"].map(parse_options)
    lat["value"] = opts.map(lambda o: o[name])
    lat["other_options"] = opts.map(lambda o: format_options({k: v for k, v in o.items() if k != name}))
    values = sorted(lat["value"].unique())
    keys = ["model", "other_options", "target", "precision", "batch", "threads", "resolution"]
    rows = []
    for key, g in lat.groupby(keys, sort=True, dropna=False):
        g = g.drop_duplicates("value")
        if len(g) < 2:
            continue
        row = dict(zip(keys, key))
        for v in values:
            m = g[g["value"] == v]
            row[f"p50_{v}_ms"] = float(m["p50_ms"].iloc[0]) if len(m) else np.nan
        best = g.loc[g["p50_ms"].idxmin()]
        others = g[g["value"] != best["value"]]
        row["fastest"] = best["value"]
        row["clear"] = bool(np.isfinite(best["ci_high_ms"]) and (best["ci_high_ms"] < others["ci_low_ms"]).all())
        row["next_ratio"] = float(others["p50_ms"].min() / best["p50_ms"])
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class OptionComparison:
    """One model option's values compared at the same other settings (``option_table``)."""

    option: ModelOption
    table: pd.DataFrame

    @property
    def name(self) -> str:
        return self.option.name

    @property
    def label(self) -> str:
        return option_label(self.option)


# -------------------------------------------------------------------------------------------- int8 speed-up

PAIR_KEYS = ["model", "model_options", "target", "batch", "resolution", "threads"]


def int8_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Each fp32 cell with its int8 twin (same model, options, target, batch, resolution, threads): speed-up
    p50 fp32 / p50 int8; ``clear`` when the two CIs of the median do not overlap."""
    lat = latency_rows(df)
    fp = lat[lat["precision"] == "fp32"].drop_duplicates(PAIR_KEYS)
    i8 = lat[lat["precision"] == "int8"].drop_duplicates(PAIR_KEYS)
    cols = PAIR_KEYS + ["family", "p50_fp32_ms", "p50_int8_ms", "speedup", "clear"]
    if fp.empty or i8.empty:
        return pd.DataFrame(columns=cols)
    m = fp.merge(i8, on=PAIR_KEYS, suffixes=("_fp", "_i8"))
    if m.empty:
        return pd.DataFrame(columns=cols)
    out = m[PAIR_KEYS].copy()
    out["family"] = m["family_fp"].where(m["family_fp"] != "", m["family_i8"])
    out["p50_fp32_ms"] = m["p50_ms_fp"]
    out["p50_int8_ms"] = m["p50_ms_i8"]
    out["speedup"] = m["p50_ms_fp"] / m["p50_ms_i8"]
    out["clear"] = (m["ci_high_ms_i8"] < m["ci_low_ms_fp"]) | (m["ci_high_ms_fp"] < m["ci_low_ms_i8"])
    return out[cols].sort_values(PAIR_KEYS, kind="stable").reset_index(drop=True)


def int8_by_model(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per model x target: the median speed-up over its pairs (resolutions, batches), with min and max."""
    cols = ["model", "model_options", "family", "target", "pairs", "speedup_median", "speedup_min", "speedup_max"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    g = pairs.groupby(["model", "model_options", "target"], sort=True)
    out = g.agg(family=("family", "first"), pairs=("speedup", "size"), speedup_median=("speedup", "median"),
                speedup_min=("speedup", "min"), speedup_max=("speedup", "max")).reset_index()
    return out[cols]


def int8_by_family(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per family x target: the median over models of each model's median speed-up."""
    cols = ["family", "target", "models", "speedup_median", "speedup_min", "speedup_max", "model_names"]
    per_model = int8_by_model(pairs)
    if per_model.empty:
        return pd.DataFrame(columns=cols)
    per_model = per_model.assign(family=per_model["family"].replace("", "(none)"),
                                 label=[series_label(m, o) for m, o in zip(per_model["model"],
                                                                           per_model["model_options"])])
    g = per_model.groupby(["family", "target"], sort=True)
    out = g.agg(models=("label", "size"), speedup_median=("speedup_median", "median"),
                speedup_min=("speedup_median", "min"), speedup_max=("speedup_median", "max"),
                model_names=("label", lambda s: ", ".join(s))).reset_index()
    return out[cols]


# -------------------------------------------------------------------------------------------- Pareto front

def pareto_front(capacity, latency) -> np.ndarray:
    """Boolean mask of the points no other point dominates, where a point dominates another when it has at
    least the capacity (MACs or parameters) at no more latency, better in one. NaNs are never on the front."""
    x = np.asarray(capacity, dtype=float)
    y = np.asarray(latency, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    mask = np.zeros(x.size, dtype=bool)
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((-x[idx], y[idx]))]  # fastest first; among ties the biggest first
    best = -np.inf
    for i in order:
        if x[i] > best:
            mask[i] = True
            best = x[i]
    return mask


# ------------------------------------------------------------------------------------------- serving (LoadGen)

SERVER_KEYS = ["model", "model_options", "target", "precision", "batch", "resolution", "threads"]
SERVER_COLUMNS = SERVER_KEYS + ["family", "qps_scheduled", "qps_achieved", "p50_ms", "p99_ms", "valid",
                                "latency_bound_ms", "percentile", "cell"]


def server_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ok LoadGen server cells with an achieved QPS."""
    m = (df["status"] == "ok") & (df["scenario"] == "server") & np.isfinite(df["qps_achieved"])
    return df[m]


def server_table(df: pd.DataFrame, cells: CellReports | None = None) -> pd.DataFrame:
    """One row per ok server cell, by model, target, precision, batch, resolution, threads and scheduled QPS:
    scheduled and achieved QPS, LoadGen's p50 / p99, its verdict (``valid``: True, False or None when the
    table lost it) and the latency bound at its percentile where the cell's report gives it."""
    rows = server_rows(df)
    if rows.empty:
        return pd.DataFrame(columns=SERVER_COLUMNS)
    out = rows[SERVER_KEYS + ["family", "qps_scheduled", "qps_achieved", "p50_ms", "p99_ms", "cell"]].copy()
    out["valid"] = list(rows["loadgen_valid"])
    bounds = [(cells.bounds.get(int(i)) if cells else None) or (None, None) for i in rows.index]
    out["latency_bound_ms"] = [np.nan if b is None else b for b, _ in bounds]
    out["percentile"] = [np.nan if q is None else q for _, q in bounds]
    out = out.sort_values(SERVER_KEYS + ["qps_scheduled", "qps_achieved"], kind="stable", na_position="last")
    return out[SERVER_COLUMNS].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------- summary

@dataclass
class Analysis:
    """Everything the report shows besides the raw table."""

    exponents: pd.DataFrame
    attention_macs: pd.DataFrame
    attention_time: pd.DataFrame
    attention_time_notes: list[str]
    options: list[OptionComparison]
    int8_pairs: pd.DataFrame
    int8_model: pd.DataFrame
    int8_family: pd.DataFrame
    server: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SERVER_COLUMNS))

    def option(self, name: str) -> OptionComparison:
        return next(o for o in self.options if o.name == name)


def analyze(df: pd.DataFrame, cells: CellReports | None = None, *, n_boot: int = 1000, seed: int = 0) -> Analysis:
    pairs = int8_pairs(df)
    att_time, notes = attention_time_table(df, cells, n_boot=n_boot, seed=seed)
    return Analysis(
        exponents=exponent_table(df, cells, n_boot=n_boot, seed=seed),
        attention_macs=attention_macs_table(df),
        attention_time=att_time,
        attention_time_notes=notes,
        options=[OptionComparison(o, option_table(df, o.name)) for o in compared_options(df)],
        int8_pairs=pairs,
        int8_model=int8_by_model(pairs),
        int8_family=int8_by_family(pairs),
        server=server_table(df, cells),
    )
