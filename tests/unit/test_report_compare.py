"""deploykit/studyreport/compare.py: cells matched across inputs or pivoted by a key, ratios to a baseline, the
significance marker from the bootstrap of the ratio (both directions, and no marker for equal runs), the CI-overlap
fallback where the raw samples are gone, and the Markdown / CSV renderings."""

from __future__ import annotations

import pytest

from deploykit.core.errors import UsageError
from deploykit.studyreport import compare as cmp
from deploykit.report.results import row_from_report, write_results
from tests.sample_reports import make_loadgen_report, make_report, samples, write_report


def _sweep(folder, reports):
    """A sweep-like folder: reports under cells/ and a results table pointing at them."""
    rows = []
    for i, r in enumerate(reports):
        path = write_report(folder / "cells" / f"c{i}" / "r.json", r)
        rows.append(row_from_report(r, report_path=path.relative_to(folder)))
    write_results(rows, folder)
    return folder


def test_columns_per_input_with_ratios_and_the_marker_both_ways(tmp_path):
    a = _sweep(tmp_path / "before", [make_report(samples(10.0, seed=1), model="resnet18"),
                                     make_report(samples(20.0, seed=2), model="deit_tiny", family="vit"),
                                     make_report(samples(5.0, seed=3), model="mobilenet_v2")])
    b = _sweep(tmp_path / "after", [make_report(samples(12.0, seed=4), model="resnet18"),  # 20 % slower
                                    make_report(samples(15.0, seed=5), model="deit_tiny", family="vit"),  # faster
                                    make_report(samples(5.0, seed=6), model="mobilenet_v2")])  # the same
    result = cmp.compare(cmp.load_inputs([a, b]))
    assert result["columns"] == ["before", "after"] and result["baseline"] == "before"
    assert result["dims"] == ["model"] and result["constant"]["target"] == "ort"
    rows = {r["cell"]["model"]: r["values"] for r in result["rows"]}
    slower, faster, same = rows["resnet18"]["after"], rows["deit_tiny"]["after"], rows["mobilenet_v2"]["after"]
    assert slower["ratio"] == pytest.approx(1.2, rel=0.02) and slower["significant"] is True
    assert slower["ratio_ci"][0] > 1 and slower["test"] == "bootstrap"
    assert faster["ratio"] == pytest.approx(0.75, rel=0.02) and faster["significant"] is True
    assert faster["ratio_ci"][1] < 1
    assert same["ratio"] == pytest.approx(1.0, abs=0.01) and same["significant"] is False
    assert same["ratio_ci"][0] < 1 < same["ratio_ci"][1]
    assert rows["resnet18"]["before"]["test"] == "baseline" and rows["resnet18"]["before"]["ratio"] is None
    head, body = cmp.table_rows(result)
    assert head == ["cell", "before p50_ms", "after p50_ms", "after / before"]
    line = {ln[0]: ln for ln in body}
    # one run per cell: the between-run variation is unknown, so significant within the runs is all it can say
    assert result["between_run"] is None and slower["real"] is None
    assert line["resnet18"][3].endswith(cmp.WEAK) and line["deit_tiny"][3].endswith(cmp.WEAK)
    assert not line["mobilenet_v2"][3].endswith(cmp.WEAK) and "*" not in "".join(ln[3] for ln in body)
    assert any("between-run variation unknown" in n for n in result["notes"])
    # the other baseline turns the ratios over
    flipped = cmp.compare(cmp.load_inputs([a, b]), baseline="after")
    r18 = next(r for r in flipped["rows"] if r["cell"]["model"] == "resnet18")["values"]["before"]
    assert r18["ratio"] == pytest.approx(1 / 1.2, rel=0.02) and r18["significant"] is True


def test_by_target_pools_the_inputs_and_makes_a_column_per_value(tmp_path):
    ort = write_report(tmp_path / "ort.json", make_report(samples(10.0, seed=1), target="ort"))
    ov = write_report(tmp_path / "ov.json", make_report(samples(6.0, seed=2), target="openvino"))
    res96 = write_report(tmp_path / "x" / "ort96.json", make_report(samples(20.0, seed=3), target="ort",
                                                                    resolution=96))
    inputs = cmp.load_inputs([ort, ov, tmp_path / "x"])
    unpivoted = cmp.compare(inputs)  # no cell in two inputs: say which key to pivot on
    assert any("--by target" in n for n in unpivoted["notes"])
    result = cmp.compare(inputs, by="target", baseline="openvino")
    assert result["columns"] == ["openvino", "ort"] and result["baseline"] == "openvino"
    assert result["dims"] == ["model", "resolution"]
    r64 = next(r for r in result["rows"] if r["cell"]["resolution"] == 64)
    assert r64["values"]["ort"]["ratio"] == pytest.approx(10 / 6, rel=0.02) and r64["values"]["ort"]["significant"]
    r96 = next(r for r in result["rows"] if r["cell"]["resolution"] == 96)
    assert list(r96["values"]) == ["ort"]  # nothing to take a ratio to
    by_res = cmp.compare(cmp.load_inputs([ort, res96]), by="resolution")
    assert by_res["columns"] == ["64", "96"] and by_res["rows"][0]["values"]["96"]["ratio"] == pytest.approx(2,
                                                                                                          rel=0.03)
    assert res96.exists()


def test_server_cells_at_different_qps_are_different_cells(tmp_path):
    a = _sweep(tmp_path / "ort", [make_loadgen_report(samples(5.0, seed=1), qps=q, target="ort") for q in (10, 20)])
    b = _sweep(tmp_path / "ov", [make_loadgen_report(samples(4.0, seed=2), qps=q, target="openvino")
                                 for q in (10, 20)])
    result = cmp.compare(cmp.load_inputs([a, b]), by="target", metric="p99_ms", baseline="ort")
    assert not any("more than once" in n for n in result["notes"])
    assert [r["label"] for r in result["rows"]] == ["resnet18 @10 QPS", "resnet18 @20 QPS"]
    assert all(r["values"]["openvino"]["ratio"] == pytest.approx(0.8, rel=0.05) for r in result["rows"])


def test_without_raw_samples_p50_falls_back_to_non_overlapping_cis(tmp_path):
    a = _sweep(tmp_path / "a", [make_report(samples(10.0, seed=1)), make_report(samples(5.0, seed=2), model="m2")])
    b = _sweep(tmp_path / "b", [make_report(samples(12.0, seed=3)), make_report(samples(5.0, seed=4), model="m2")])
    for folder in (a, b):  # the reports are gone: only the tables' CIs are left
        for f in (folder / "cells").rglob("*.json"):
            f.unlink()
    result = cmp.compare(cmp.load_inputs([a / "results.csv", b / "results.parquet"]))
    assert result["columns"] == ["a", "b"]
    vals = {r["cell"]["model"]: r["values"]["b"] for r in result["rows"]}
    assert vals["resnet18"]["test"] == "ci-overlap" and vals["resnet18"]["significant"] is True
    assert vals["m2"]["test"] == "ci-overlap" and vals["m2"]["significant"] is False
    assert cmp.ratio_text(vals["resnet18"]).endswith(cmp.WEAK + "ci")
    assert any("non-overlapping" in n for n in result["notes"])
    # other metrics have no CI to fall back on: no marker, and they say so
    p99 = cmp.compare(cmp.load_inputs([a, b]), metric="p99_ms")
    assert {r["values"]["b"]["test"] for r in p99["rows"]} == {"none"}


def test_other_metrics_use_their_own_sample_statistic(tmp_path):
    a = write_report(tmp_path / "a.json", make_report(samples(10.0, seed=1)))
    b = write_report(tmp_path / "b.json", make_report(samples(8.0, seed=2)))
    result = cmp.compare(cmp.load_inputs([a, b]), metric="items_per_s")
    v = result["rows"][0]["values"]["b"]
    assert v["ratio"] == pytest.approx(1.25, rel=0.03) and v["test"] == "bootstrap" and v["significant"]
    assert v["ratio_ci"][0] > 1  # throughput up: the interval is of the throughput ratio, not the latency one
    p99 = cmp.compare(cmp.load_inputs([a, b]), metric="p99_ms")["rows"][0]["values"]["b"]
    assert p99["test"] == "bootstrap" and p99["ratio"] < 1


def test_failed_cells_duplicates_and_bad_arguments(tmp_path):
    old = make_report(samples(30.0, seed=1), created="2026-01-01T00:00:00+0000")
    new = make_report(samples(10.0, seed=2), created="2026-02-01T00:00:00+0000")
    write_report(tmp_path / "runs" / "old.json", old)
    write_report(tmp_path / "runs" / "new.json", new)
    result = cmp.compare(cmp.load_inputs([tmp_path / "runs"]))
    assert result["rows"][0]["values"]["runs"]["value"] == pytest.approx(new["stats"]["p50"])
    assert any("latest" in n for n in result["notes"])
    with pytest.raises(UsageError, match="not a column"):
        cmp.compare(cmp.load_inputs([tmp_path / "runs"]), baseline="nope")
    with pytest.raises(UsageError, match="unknown metric 'latency'"):
        cmp.compare(cmp.load_inputs([tmp_path / "runs"]), metric="latency")
    with pytest.raises(UsageError, match="--by"):
        cmp.compare(cmp.load_inputs([tmp_path / "runs"]), by="colour")
    from deploykit.report.results import failed_row

    write_results([failed_row({"model": "m", "target": "ort", "precision": "fp32", "batch": 1, "resolution": 64,
                               "threads": None, "scenario": "latency"}, "failed", "boom")], tmp_path / "failed")
    with pytest.raises(UsageError, match="no finished"):
        cmp.compare(cmp.load_inputs([tmp_path / "failed"]))


def test_markdown_and_csv_renderings(tmp_path):
    a = write_report(tmp_path / "a.json", make_report(samples(10.0, seed=1)))
    b = write_report(tmp_path / "b.json", make_report(samples(12.0, seed=2)))
    result = cmp.compare(cmp.load_inputs([a, b]))
    md = cmp.to_markdown(result)
    assert "| cell | a p50_ms | b p50_ms | b / a |" in md and "| x1.199~ |" in md
    assert "between-run variation unknown" in md
    lines = cmp.to_csv(result).splitlines()
    assert lines[0].split(",")[:3] == ["model", "model_options", "target"]
    assert lines[0].split(",")[-3:] == ["within_run", "real", "test"]
    assert len(lines) == 3 and lines[2].split(",")[-3:] == ["True", "", "bootstrap"]


def test_three_identical_runs_compared_are_not_starred(tmp_path):
    """Three runs of the same model on the same machine, one after the other: their within-run intervals may
    exclude each other (a shared machine), but nothing supports a claim of a difference -- no star."""
    paths = [write_report(tmp_path / f"run{i}.json", make_report(samples(10.0 * (1 + 0.05 * i), seed=i)))
             for i in range(3)]
    result = cmp.compare(cmp.load_inputs(paths))
    _, body = cmp.table_rows(result)
    assert not any("*" in cell for cell in body[0])
    assert result["between_run"] is None and "between-run variation unknown" in result["test"]


def test_repeated_runs_estimate_the_between_run_variation(tmp_path):
    """Repeats of the same cells in each input: a 20% change beyond a ~2% between-run spread is starred; the same
    change within a ~15% between-run spread is not."""
    import math

    def run(folder, scale, spreads, seed0):
        reps = []
        for k, sp in enumerate(spreads):
            for model, base in (("resnet18", 10.0), ("m2", 5.0)):
                reps.append(make_report(samples(base * scale * sp, seed=seed0 + k), model=model,
                                        created=f"2026-01-0{k + 1}T00:00:00+0000"))
        return _sweep(folder, reps)

    quiet = cmp.compare(cmp.load_inputs([run(tmp_path / "qa", 1.0, (1.0, 1.02, 0.98), 0),
                                         run(tmp_path / "qb", 1.2, (1.0, 1.02, 0.98), 10)]))
    assert quiet["between_run"]["df"] == 8 and quiet["between_run"]["sd"] == pytest.approx(0.02, abs=0.01)
    v = next(r for r in quiet["rows"] if r["cell"]["model"] == "resnet18")["values"]["qb"]
    assert v["real"] is True and cmp.ratio_text(v).endswith("*")
    noisy = cmp.compare(cmp.load_inputs([run(tmp_path / "na", 1.0, (1.0, 1.2, 0.85), 0),
                                         run(tmp_path / "nb", 1.2, (1.0, 1.2, 0.85), 10)]))
    assert noisy["between_run"]["log_sd"] > 0.1 and math.isfinite(noisy["between_run"]["half_width"])
    w = next(r for r in noisy["rows"] if r["cell"]["model"] == "resnet18")["values"]["nb"]
    assert w["significant"] is True and w["real"] is False and "*" not in cmp.ratio_text(w)
