"""studyreport/html.py and studyreport/plots.py on hand-built results tables: one self-contained page (nothing
external, every user string escaped), every plot present when its data is and skipped with a reason when not, the
serving section (LoadGen server cells: latency vs QPS, their table), the Markdown rendering with PNGs beside it, and
the plots as PNG and SVG files."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from deploykit.core.errors import UsageError
from deploykit.studyreport.html import render_html
from deploykit.studyreport.markdown import render_markdown
from deploykit.studyreport.report import prepare, write_report
from deploykit.studyreport.sections import fnum
from deploykit.studyreport.plots import PLOT_NAMES
from tests.results_tables import EVIL, SERVER_QPS, contract_table, write_table


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    write_table(contract_table(folder, serving=True), folder)
    out = folder / "report.html"
    summary = write_report(folder, out, n_boot=200)
    return folder, out.read_text(encoding="utf-8"), summary


def test_every_plot_is_drawn_when_its_data_is_present(full):
    _, page, summary = full
    assert summary["skipped"] == {} and summary["plots"] == list(PLOT_NAMES)
    for name in PLOT_NAMES:
        assert f'<figure id="plot-{name}">' in page and f'<svg id="svg-{name}"' in page
    assert "Not drawn" not in page
    assert summary["cells"] == {"failed": 2, "ok": 156, "timeout": 1}


def test_the_page_is_self_contained(full):
    _, page, _ = full
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", page), "a resource outside the page"
    assert "<script" not in page.lower() and "<link rel=\"stylesheet\"" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert page.count("<svg ") == len(PLOT_NAMES)


def test_user_strings_are_escaped(full):
    _, page, _ = full
    assert EVIL not in page and "<b>bold</b>" not in page
    assert "evil&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "model &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot;" in page
    assert "SIGSEGV in &lt;openvino&gt; compile" in page


def test_every_inline_plot_is_well_formed_svg(full):
    _, page, _ = full
    for svg in re.findall(r"<svg .*?</svg>", page, flags=re.S):
        root = ET.fromstring(svg)
        assert root.tag == "svg" and root.get("role") == "img"
        assert len(root.findall(".//path")) > 10  # axes, lines, markers


def test_header_and_analysis_sections(full):
    folder, page, _ = full
    assert "Test CPU 9000 · 2 usable cores" in page and "onnxruntime 1.20.0" in page
    assert f"deploykit report: {folder.name}" in page
    for anchor in ("plots", "exponents", "attention", "parc", "int8", "serving", "results", "failed", "methods"):
        assert f'id="{anchor}"' in page
    assert "fft is the fastest ParC implementation at" in page
    assert "Cells not ok (3)" in page and "Results (156 ok cells)" in page


def test_latency_vs_qps_plot_and_the_serving_table(full):
    _, page, _ = full
    svg = re.search(r'<svg id="svg-latency_vs_qps".*?</svg>', page, flags=re.S).group(0)
    for text in ("ort · fp32", "openvino · fp32", "resnet_syn p99", "deit_syn p50", "INVALID", "bound 100 ms (p99)",
                 "achieved QPS (queries/s)"):
        assert text in svg, text
    serving = page[page.index('<h2 id="serving">'):page.index('<h2 id="results">')]
    head = re.search(r"<thead>(.*?)</thead>", serving).group(1)
    assert re.findall(r"<th>(.*?)</th>", head) == ["model", "target", "precision", "res", "scheduled QPS",
                                                   "achieved QPS", "p50 ms", "p99 ms", "bound ms", "LoadGen"]
    rows = re.findall(r"<tr>(.*?)</tr>", serving.split("<tbody>")[1])
    assert len(rows) == 2 * 2 * len(SERVER_QPS)  # ok server cells only; the failed one is under Cells not ok
    first = re.findall(r"<td[^>]*>(.*?)</td>", rows[0])
    assert first[:5] == ["deit_syn", "openvino", "fp32", "224", "10"] and first[-2:] == ["100 (p99)", "VALID"]
    assert sum("INVALID" in r for r in rows) == 7
    assert "resnet_syn on ort (fp32): VALID up to 39.60 QPS achieved, 1 INVALID" in serving


def _sparse_table() -> pd.DataFrame:
    """fp32 only, one resolution, batch 1, no MACs/memory/peak columns, and a failed cell."""
    return pd.DataFrame({
        "model": ["a", "b", "c"], "model_options": "", "family": ["cnn", "vit", "cnn"], "target": "ort",
        "precision": "fp32", "batch": 1, "resolution": 224, "threads": 2,
        "status": ["ok", "ok", "failed"], "reason": ["", "", "exit code 1: <boom>"],
        "p50_ms": [1.0, 2.0, np.nan], "ci_low_ms": [0.9, 1.9, np.nan], "ci_high_ms": [1.1, 2.1, np.nan]})


def test_plots_without_data_are_skipped_with_a_reason():
    rd = prepare(_sparse_table(), source="sparse.csv", n_boot=100)
    skipped = {p.name: p.skipped for p in rd.plots if p.figure is None}
    assert set(skipped) == set(PLOT_NAMES) - {"latency_summary"}  # two ok cells: the summary chart is the answer
    page = render_html(rd)
    for p in rd.plots:
        if p.figure is None:  # listed once, under "Not shown", not as notices opening the page
            assert f'id="skipped-{p.name}"' in page and p.skipped
    assert page.index('id="summary"') < page.index('id="results"') < page.index('id="not-shown"')
    assert "two or more resolutions" in skipped["latency_vs_resolution"]
    assert "int8 twin" in skipped["int8_speedup"]
    assert skipped["latency_vs_qps"] == "no ok LoadGen server cell (scenario server) in the table"
    assert "No LoadGen server cell (scenario server) finished ok" in page
    assert "&lt;boom&gt;" in page and "<boom>" not in page


def test_a_table_with_only_failed_cells_still_renders():
    df = _sparse_table().assign(status="failed", p50_ms=np.nan)
    page = render_html(prepare(df, n_boot=100))
    assert "No cell finished ok" in page and "Cells not ok (3)" in page


def test_markdown_report_with_pngs_beside_it_and_plot_files(tmp_path):
    folder = tmp_path / "sweep"
    write_table(contract_table(folder, families=("cnn", "vit"), targets=("ort",), serving=True), folder, "csv")
    md = tmp_path / "out" / "study.md"
    plots = tmp_path / "plots"
    summary = write_report(folder / "results.csv", md, plots_dir=plots, n_boot=100)
    text = md.read_text(encoding="utf-8")
    drawn = summary["plots"]
    assert "latency_vs_resolution" in drawn and "parc_impls" not in drawn
    for name in drawn:
        png = md.parent / "study-plots" / f"{name}.png"
        assert f"](study-plots/{name}.png)" in text and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (plots / f"{name}.png").is_file()
        root = ET.fromstring((plots / f"{name}.svg").read_bytes())
        assert root.tag.endswith("svg")
    assert "*Not drawn: ParC implementations vs resolution" in text
    assert EVIL not in text and "evil&lt;script&gt;" in text
    assert "| model | family | target |" in text
    assert "latency_vs_qps" in drawn and "## Serving under load" in text
    assert ("| model | target | precision | res | scheduled QPS | achieved QPS | p50 ms | p99 ms | bound ms | LoadGen |"
            in text)
    assert "| resnet_syn | ort | fp32 | 224 | 80 | 59.40 |" in text  # the verdict read back from the CSV
    assert text.count("| INVALID |") == 4 and text.count("| VALID |") == 4


def test_markdown_table_cells_cannot_break_the_table():
    df = _sparse_table()
    df.loc[0, "model"] = "a|b"
    text, images = render_markdown(prepare(df, n_boot=100), "x")
    assert "a\\|b" in text and set(images) == {"latency_summary.png"}


def test_the_report_format_comes_from_the_file_name(tmp_path):
    write_table(contract_table(None, families=("cnn",), targets=("ort",)), tmp_path)
    with pytest.raises(UsageError, match="use a .html or .md"):
        write_report(tmp_path, tmp_path / "report.pdf")


@pytest.mark.parametrize("v,text", [(float("nan"), ""), (None, ""), (1234.56, "1,235"), (123.45, "123.5"),
                                    (1.234, "1.23"), (0.8, "0.800"), (0.0001234, "0.000123"), (0, "0"),
                                    (float("inf"), "∞")])
def test_number_formatting(v, text):
    assert fnum(v) == text


def test_a_model_option_no_family_declares_is_compared_under_its_key():
    """An option key found only in the table (``block``) gets the same analysis, section and plot as a declared one
    (``parc_impl``), named by the key; with no watched value there is no verdict sentence."""
    rows = [dict(model="m", model_options=f"block={v},depth=2", family="cnn", target="ort", precision="fp32",
                 batch=1, resolution=res, threads=2, status="ok", p50_ms=s * res / 224, ci_low_ms=0.98 * s * res / 224,
                 ci_high_ms=1.02 * s * res / 224)
            for v, s in (("a", 1.0), ("b", 1.5)) for res in (224, 448)]
    rd = prepare(pd.DataFrame(rows), n_boot=100)
    t = rd.analysis.option("block").table
    assert list(t["fastest"]) == ["a", "a"] and set(t["other_options"]) == {"depth=2"} and t["clear"].all()
    drawn = {p.name: p for p in rd.plots if p.figure is not None}
    assert drawn["blocks"].title == "block values vs resolution"
    page = render_html(rd)
    assert '<h2 id="option-block">block values</h2>' in page and '<a href="#option-block">block values</a>' in page
    start = page.index('<h2 id="option-block">')
    option = page[start:page.index("<h2", start + 1)]
    assert "<th>p50 a ms</th><th>p50 b ms</th>" in option and "fastest" not in option.split("<table")[0]
    assert '<h2 id="parc">' not in page  # the declared option's empty section: one line under "Not shown"
    assert ('id="skipped-section-parc"><b>ParC implementations</b> — No model measured with two or more parc_impl '
            'values at the same settings.') in page
    text, _ = render_markdown(rd, "x")
    assert "## block values" in text and "| p50 a ms | p50 b ms |" in text


def test_the_page_leads_with_a_summary_and_shows_only_sections_with_data():
    """Two models on two targets: the summary (chart and table, the fastest target per model) comes first; the
    analyses without data are one list under "Not shown", not empty sections; log ticks are plain numbers."""
    from deploykit.studyreport.analysis import latency_summary
    from deploykit.studyreport.plots import _tick_text

    df = pd.DataFrame({
        "model": ["a", "a", "b", "b"], "model_options": "", "family": "cnn", "target": ["ort", "ov", "ort", "ov"],
        "precision": "fp32", "batch": 1, "resolution": 224, "threads": 2, "status": "ok",
        "p50_ms": [2.0, 1.0, 30.0, 45.0], "ci_low_ms": [1.9, 0.9, 29.0, 44.0], "ci_high_ms": [2.1, 1.1, 31.0, 46.0]})
    rd = prepare(df, n_boot=100)
    rows, targets, where = latency_summary(rd.df)
    assert targets == ["ort", "ov"] and where == []
    assert list(rows["label"]) == ["a", "b"] and list(rows["fastest"]) == ["ov", "ort"]
    assert list(rows["lead"]) == [2.0, 1.5]
    page = render_html(rd)
    ids = re.findall(r'<h2 id="([^"]+)"', page)
    assert ids[0] == "summary" and ids[-2:] == ["not-shown", "methods"]
    assert "exponents" not in ids and "int8" not in ids and "failed" not in ids
    summary = page[page.index('<h2 id="summary">'):page.index("<h2", page.index('<h2 id="summary">') + 1)]
    assert '<svg id="svg-latency_summary"' in summary and "<th>fastest (lead over the next)</th>" in summary
    assert "<td>a</td>" in summary and "ov (2.00×)" in summary
    results = page[page.index('<h2 id="results">'):]
    assert "Every row: family cnn · precision fp32 · batch 1 · res 224 · threads 2." in results
    assert [_tick_text(v) for v in (0.5, 2, 30, 400, 5000)] == ["0.5", "2", "30", "400", "5000"]
