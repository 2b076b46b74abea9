"""The bench and models tables at 80, 120 and 200 columns: every model name and every p50 whole, nothing cut to
"…", the columns chosen by priority and the left-out ones named; and the report renderings (CSV, Markdown, file
name) saying what ran. The reports are hand-built from synthetic samples through the real statistics code and
pass the report schema."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
from rich.console import Console

from deploykit.bench.stats import PERCENTILE_METHOD, summarize, tail_supported
from deploykit.report.schema import validate

# a long pass-through name, a ParC variant and a sub-millisecond / >100 ms latency stress the widths and formats
MODELS = [("resnet18", "cnn", {}, 3.1234), ("deit_tiny", "vit", {}, 0.04321),
          ("parc_mobilenet_v2", "parc", {"parc_impl": "fft"}, 123.456),
          ("timm:convnext_atto.d2_in1k", "cnn", {}, 17.5)]
TARGETS = ("ort", "openvino")


def make_report(label: str, family: str, options: dict, target: str, p50: float, *, n: int = 300,
                precision: str = "fp32", seed: int = 0, rel_err: float = 6e-7) -> dict:
    rng = np.random.default_rng(seed)
    samples = [round(float(x), 6) for x in p50 * np.exp(0.05 * rng.standard_normal(n))]
    stats = summarize(samples, n_boot=200, seed=seed)
    stats["percentile_method"] = PERCENTILE_METHOD
    stats["tails_supported"] = {f"p{q}": tail_supported(n, q) for q in (90, 95, 99)}
    tol = {"rtol": 0.25, "min_cosine": 0.98} if precision == "int8" else {"rtol": 1e-3, "min_cosine": 0.9999}
    report = {
        "schema": "deploykit.report", "schema_version": 1, "created": "2026-11-30T09:00:00+0000",
        "model": {"label": label, "kind": "registry", "path": f"<models-dir>/{label}/fp32.onnx", "sha256": "0" * 64,
                  "family": family, "precision": precision,
                  "input": {"name": "input", "shape": [1, 3, 64, 64], "dtype": "float32"},
                  "export_settings": {"model": label, "options": options}},
        "target": {"name": target, "description": f"{target} on the CPU", "precision": precision,
                   "info": {"threads": 2}},
        "settings": {"batch": 1, "warmup": 10, "min_iters": 20, "min_time": 5.0, "max_time": 60.0, "seed": 0,
                     "mode": "latency"},
        "timing": {"unit": "ms", "load_ms": 120.0, "first_inference_ms": 2 * p50, "warmup_ms": samples[:10],
                   "samples_ms": samples, "measured_wall_s": sum(samples) / 1e3, "iterations": n,
                   "stop_reason": "min-time reached"},
        "stats": stats,
        "throughput": {"items_per_s": 1e3 / stats["mean"], "batch": 1, "basis": "batch x iterations / wall time",
                       "mode": "latency", "requests_in_flight": 1},
        "fidelity": {"reference": "pytorch fp32 (cpu)", "max_abs": rel_err * 8.0, "rel_err": rel_err,
                     "cosine": 0.99999, "top1": 1.0, "passed": rel_err <= tol["rtol"], "tolerance": tol},
        "warnings": [],
        "environment": {"host": "ci-runner-7", "cpu": {"model": "Some CPU"}, "threads": 2, "os": {"system": "Linux", "platform": "Linux-6.1-x86_64"},
                        "python": "3.11.7", "packages": {"onnxruntime": "1.32.0"},
                        "deploykit": {"version": "0.1.0", "sha": "0123456789abcdef0123", "dirty": True}},
    }
    validate(report)
    return report


def reports(n: int = 300) -> list[dict]:
    return [make_report(label, fam, opts, t, p50 * (1.2 if t == "openvino" else 1.0), n=n, seed=i)
            for i, (label, fam, opts, p50) in enumerate(MODELS) for t in TARGETS]


def render(fn, rows, width: int, **kw) -> str:
    buf = io.StringIO()
    fn(rows, console=Console(file=buf, width=width, color_system=None, legacy_windows=False), **kw)
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 120, 200])
def test_bench_table_fits_the_width_and_cuts_no_name_or_number(width):
    from deploykit.cli.bench_cmd import print_table
    from deploykit.report.render import fmt

    reps = reports()
    text = render(print_table, reps, width)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= width, text
    assert "…" not in text
    for r in reps:  # each row: the whole name, its target and its p50 on one line
        p50 = fmt("p50_ms", r["stats"]["p50"])
        row = [ln for ln in lines if ln.startswith(r["model"]["label"] + " ") and f" {r['target']['name']} " in ln]
        assert len(row) == 1 and p50 in row[0], (r["model"]["label"], p50, text)
    # the priority columns are always there; the ParC implementation names the variant that ran
    for head in ("model", "target", "precision", "p50 ms", "95% CI", "items/s"):
        assert head in lines[1], text
    assert "impl=fft" in text or "variant" in text[text.index("not shown"):]
    if width == 200:
        assert "not shown" not in text and "1st inf ms" in text and "cosine" in text
    else:  # what was left out is named, with the way to see it
        note = " ".join(ln.strip() for ln in lines[lines.index(next(ln for ln in lines if "not shown" in ln)):])
        assert f"not shown at {width} columns:" in note and "--wide" in note and "1st inf ms" in note


def test_the_parc_implementation_tells_rows_apart_even_at_80_columns():
    from deploykit.cli.bench_cmd import print_table

    reps = [make_report("parc_mobilenet_v2", "parc", {"parc_impl": impl}, t, p50, seed=i)
            for i, (impl, p50) in enumerate((("conv", 2.5), ("fft", 3.5), ("matmul", 1.5))) for t in TARGETS]
    reps.append(make_report("timm:convnext_atto.d2_in1k", "cnn", {}, "ort", 9.0))
    lines = render(print_table, reps, 80).splitlines()
    for impl in ("conv", "fft", "matmul"):
        for t in TARGETS:
            assert sum(ln.startswith("parc_mobilenet_v2 ") and f"impl={impl}" in ln and f" {t} " in ln
                       for ln in lines) == 1


def test_wide_shows_every_column_however_narrow_the_terminal():
    from deploykit.cli.bench_cmd import print_table

    text = render(print_table, reports(), 80, wide=True)
    assert "not shown" not in text and "…" not in text
    for head in ("input", "p90 ms", "p99 ms", "CV", "1st inf ms", "iters", "cosine", "rel err", "fidelity"):
        assert head in text


def test_unsupported_tail_percentiles_are_left_out_of_the_table_not_the_report():
    from deploykit.cli.bench_cmd import print_table
    from deploykit.report.render import fmt

    few, many = make_report("resnet18", "cnn", {}, "ort", 3.0, n=50), make_report("deit_tiny", "vit", {}, "ort", 5.0, n=1200)
    text = render(print_table, [few, many], 200)
    row = {r["model"]["label"]: next(ln for ln in text.splitlines() if ln.startswith(r["model"]["label"] + " "))
           for r in (few, many)}
    assert fmt("p90_ms", few["stats"]["p90"]) not in row["resnet18"] and " - " in row["resnet18"]
    assert fmt("p90_ms", many["stats"]["p90"]) in row["deit_tiny"] and fmt("p99_ms", many["stats"]["p99"]) in row["deit_tiny"]
    assert "fewer than 10" in text  # the caption says what '-' means


def test_a_failed_fidelity_check_is_kept_before_throughput_on_a_narrow_terminal():
    from deploykit.cli.bench_cmd import print_table

    reps = reports()
    assert "fidelity" not in render(print_table, reps, 80).splitlines()[1]  # long names: no room for it
    reps[0] = make_report("resnet18", "cnn", {}, "ort", 3.0, precision="int8", rel_err=0.4)
    text = render(print_table, reps, 80)
    assert "fidelity" in text.splitlines()[1] and "FAIL" in text


@pytest.mark.parametrize("width", [80, 100, 200])
def test_models_table_keeps_every_name_whole(width):
    from deploykit.cli.models_cmd import print_models
    from deploykit.models.registry import list_models

    rows = [{"name": c.name, "family": c.family, "params_m": 12.345, "gmacs": 1.234, "input": [1, 3, 224, 224],
             "source": f"{c.source}:{c.arch}", "options": {k: list(v) for k, v in c.options}} for c in list_models(None)]
    text = render(print_models, rows, width)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= width and "…" not in text
    for r in rows:
        assert any(ln.startswith(r["name"] + " ") for ln in lines), (r["name"], text)
    if width >= 100:  # the model options a user passes with --model-opt fit from 100 columns on
        assert "parc_impl=conv|fft|matmul" in text


def test_csv_has_numeric_ci_percent_cv_rounded_floats_and_says_which_run():
    from deploykit.report.render import csv_columns, to_csv

    reps = reports()
    rows = list(csv.DictReader(io.StringIO(to_csv(reps))))
    assert list(rows[0]) == csv_columns()
    for r, row in zip(reps, rows):
        lo, hi = r["stats"]["median_ci95"]
        assert float(row["ci95_lo_ms"]) == pytest.approx(lo, abs=1e-4) and float(row["ci95_hi_ms"]) == pytest.approx(hi, abs=1e-4)
        assert float(row["cv_pct"]) == pytest.approx(100 * r["stats"]["cv"], abs=0.01)
        assert row["created"] == r["created"] and row["host"] == "ci-runner-7" and row["threads"] == "2"
        assert row["deploykit_git"] == "0123456789ab+dirty"
        for key in ("p50_ms", "mean_ms", "ci95_lo_ms", "items_per_s", "cv_pct"):
            assert len(row[key].partition(".")[2]) <= 4, (key, row[key])  # rounded, not 3.1283999999999998
    assert [row["variant"] for row in rows if row["model"] == "parc_mobilenet_v2"] == ["parc_impl=fft"] * 2
    assert all(row["variant"] == "" for row in rows if row["model"] == "resnet18")


def test_report_file_name_and_markdown_say_which_variant_ran():
    from deploykit.report.render import to_markdown
    from deploykit.report.schema import report_stem

    fft = make_report("parc_mobilenet_v2", "parc", {"parc_impl": "fft"}, "ort", 2.0)
    mm = make_report("parc_mobilenet_v2", "parc", {"parc_impl": "matmul"}, "ort", 2.0)
    assert re.fullmatch(r"\d{8}-\d{6}-parc_mobilenet_v2-impl-fft-ort", report_stem(fft))
    assert report_stem(fft) != report_stem(mm)
    assert "## parc_mobilenet_v2 (parc_impl=fft) on ort (fp32)" in to_markdown([fft])


def test_int8_fidelity_shows_the_relative_error_next_to_its_floor():
    from deploykit.report.render import to_markdown

    md = to_markdown([make_report("resnet18", "cnn", {}, "ort", 2.0, precision="int8", rel_err=0.12)])
    line = next(ln for ln in md.splitlines() if ln.startswith("- fidelity"))
    assert "= 0.12 of the output range (floor 0.25)" in line and "(floor 0.98)" in line and line.endswith("-> pass")
