"""studyreport/analysis.py on hand-built results tables with known truths (tests/results_tables.py): reading and
normalising tables, complexity exponents, attention crossovers, ParC implementations, int8 speed-ups, Pareto, the
serving table of LoadGen server cells."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from deploykit.core.errors import InputError
from deploykit.studyreport import analysis as A
from tests.results_tables import (CNN_K, EVIL, SERVER_BOUND_MS, SERVER_QPS, SPEEDUP, VIT_CROSSOVER, contract_table,
                                  write_table)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    df = contract_table(folder)
    write_table(df, folder)
    table, base = A.load_results(folder)
    return table, A.read_cell_reports(table, base)


@pytest.fixture(scope="module")
def analysis(sweep):
    df, cells = sweep
    return A.analyze(df, cells, n_boot=400)


# ------------------------------------------------------------------------------------------- reading

@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_tables_round_trip_with_contract_types(tmp_path, kind):
    df = contract_table(None)
    df.loc[0, "model"] = "NA"  # a model named like a missing value stays a string
    path = write_table(df, tmp_path, kind)
    for where in (tmp_path, path):
        got, base = A.load_results(where)
        assert base == tmp_path and len(got) == len(df) and list(got.columns[:len(A.COLUMNS)]) == A.COLUMNS
        assert got.loc[0, "model"] == "NA"
        assert got["model_options"].iloc[0] == "" and got["reason"].iloc[0] == ""
        assert got["p50_ms"].dtype == np.float64 and got["gpu_peak_mb"].isna().all()
        assert EVIL in set(got["model"])


def test_missing_columns_are_added_and_required_ones_checked():
    df = pd.DataFrame({"model": ["m"], "target": ["ort"], "precision": ["fp32"], "status": ["ok"],
                       "p50_ms": [1.0]})
    out = A.normalize(df)
    assert set(A.COLUMNS) <= set(out.columns) and out["scenario"].iloc[0] == "latency"
    assert math.isnan(out["gmacs"].iloc[0]) and out["family"].iloc[0] == ""
    with pytest.raises(InputError, match="no column.*status"):
        A.normalize(df.drop(columns=["status"]))
    with pytest.raises(InputError, match="no rows"):
        A.normalize(df.iloc[:0])


def test_unreadable_inputs_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        A.load_results(tmp_path / "nope.parquet")
    with pytest.raises(InputError, match="holds no results table"):
        A.load_results(tmp_path)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputError, match="expected a .parquet or .csv"):
        A.load_results(tmp_path / "x.json")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="cannot read results table"):
        A.load_results(tmp_path / "bad.parquet")


def test_cell_reports_give_samples_and_one_machine(sweep):
    df, cells = sweep
    ok = df[df["status"] == "ok"]
    assert set(cells.samples) == set(ok.index) and cells.unreadable == 0
    i = ok.index[0]
    assert np.median(cells.samples_of(i)) == pytest.approx(df.loc[i, "p50_ms"])
    (machine,) = cells.environments
    assert machine["cpu"] == "Test CPU 9000" and machine["cells"] == len(ok) and machine["hosts"] == ["testhost"]


def test_missing_cell_reports_are_counted_not_fatal(tmp_path):
    df = A.normalize(contract_table(None, families=("cnn",), targets=("ort",)))
    cells = A.read_cell_reports(df, tmp_path)  # reports named in the table but absent
    assert cells.samples == {} and cells.unreadable == (df["status"] == "ok").sum()


# ------------------------------------------------------------------------------------------- exponents

def test_exponents_recover_the_built_in_truths(analysis):
    ex = analysis.exponents
    assert len(ex) == 5 * 2 * 2  # five series (3 ParC impls) x 2 targets x 2 precisions, batch 1 only
    assert (ex["batch"] == 1).all() and (ex["points"] == 5).all()
    cnn = ex[ex["model"] == "resnet_syn"]
    assert np.allclose(cnn["k"], CNN_K, atol=0.01)
    assert ((cnn["k_ci_low"] <= CNN_K + 0.005) & (cnn["k_ci_high"] >= CNN_K - 0.005)).all()
    assert (cnn["ci_method"].str.contains("bootstrap of their raw samples")).all()
    vit = ex[ex["model"] == "deit_syn"]
    assert (vit["k_last"] > vit["k_first"] + 0.5).all()  # the exponent grows as attention takes over
    fft = ex[ex["model_options"] == "parc_impl=fft"]
    assert np.allclose(fft["k"], 1.05, atol=0.02)


def test_exponents_without_cell_reports_use_the_table_cis(sweep):
    df, _ = sweep
    ex = A.exponent_table(df, None, n_boot=200)
    assert (ex["ci_method"].str.contains("without raw samples")).all()
    assert (ex["k_ci_low"] < ex["k"]).all() and (ex["k"] < ex["k_ci_high"]).all()


# ------------------------------------------------------------------------------------------- attention

def test_attention_crossover_by_macs(analysis):
    am = analysis.attention_macs.set_index(["model", "model_options"])
    vit = am.loc[("deit_syn", "")]
    # attention 0.2 r^2 vs other 4 r (r = pixels / 224^2): equal at r = 20, side 224 sqrt(20)
    assert vit["crossover_side"] == pytest.approx(224 * math.sqrt(20), rel=1e-6)
    assert vit["how"] == "extrapolated beyond 896"
    assert am.loc[("parc_syn", "parc_impl=fft"), "how"] == "no attention MACs at any resolution"
    assert ("resnet_syn", "") not in am.index  # a CNN without attention MACs is not an attention model


def _macs_rows(model, res, att, other, family="vit"):
    return pd.DataFrame({"model": model, "target": "ort", "precision": "fp32", "status": "ok", "family": family,
                         "resolution": res, "gmacs": np.add(att, other), "gmacs_attention": att, "p50_ms": 1.0})


def test_attention_crossover_by_macs_interpolates_never_and_already():
    res = np.array([224.0, 448.0, 896.0])
    r = (res / 224) ** 2
    df = A.normalize(pd.concat([
        _macs_rows("crosses", res, 0.5 * r ** 2, 2.0 * r),           # equal at r = 4: side 448 exactly
        _macs_rows("windowed", res, 0.1 * r, 2.0 * r),                # window attention: a constant share
        _macs_rows("heavy", res, 3.0 * r ** 2, 1.0 * r),              # above half from the start
        _macs_rows("between", res, 0.5 * r ** 2, 3.0 * r),            # equal at r = 6: between 448 and 896
    ], ignore_index=True))
    am = A.attention_macs_table(df).set_index("model")
    assert am.loc["crosses", "crossover_side"] == pytest.approx(448.0)
    assert am.loc["between", "crossover_side"] == pytest.approx(224 * math.sqrt(6))
    assert am.loc["between", "how"] == "interpolated"
    assert am.loc["windowed", "crossover_side"] == np.inf and am.loc["windowed", "how"].startswith("never")
    assert am.loc["heavy", "how"].startswith("already")


def test_attention_crossover_by_time_covers_the_truth(analysis):
    at = analysis.attention_time
    vit = at[at["model"] == "deit_syn"]
    assert len(vit) == 4
    assert ((vit["side_ci_low"] <= VIT_CROSSOVER) & (VIT_CROSSOVER <= vit["side_ci_high"])).all(), vit
    assert vit["in_range"].all()
    assert analysis.attention_time_notes == []  # batches 2 and 4 have one resolution: not scaling series


# ------------------------------------------------------------------------------------------- ParC, int8

def test_the_parc_impl_option_table_finds_where_fft_overtakes(analysis):
    t = analysis.option("parc_impl").table
    assert set(t.columns) >= {"p50_conv_ms", "p50_fft_ms", "p50_matmul_ms", "fastest", "clear"}
    b1 = t[t["batch"] == 1]
    assert set(b1[b1["resolution"] >= 640]["fastest"]) == {"fft"}
    assert set(b1[b1["resolution"] <= 320]["fastest"]) == {"conv"}
    assert b1[b1["resolution"] == 896]["clear"].all()


def test_int8_speedups_per_pair_model_and_family(analysis):
    pairs = analysis.int8_pairs
    assert len(pairs) == 5 * 2 * (5 + 2)  # series x targets x (5 resolutions + batches 2, 4)
    for fam, s in SPEEDUP.items():
        assert np.allclose(pairs[pairs["family"] == fam]["speedup"], s, rtol=0.05)
    fam = analysis.int8_family.set_index(["family", "target"])
    assert fam.loc[("cnn", "ort"), "speedup_median"] == pytest.approx(SPEEDUP["cnn"], rel=0.03)
    assert fam.loc[("parc", "ort"), "models"] == 3
    assert pairs["clear"].all()


def test_int8_pairs_need_a_twin():
    df = A.normalize(pd.DataFrame({"model": ["a", "b"], "target": "ort", "precision": ["fp32", "int8"],
                                   "status": "ok", "p50_ms": [2.0, 1.0], "batch": 1, "resolution": 224}))
    assert A.int8_pairs(df).empty and A.int8_by_family(A.int8_pairs(df)).empty


def test_pareto_front():
    macs = [1.0, 2.0, 2.0, 4.0, 3.0, np.nan]
    lat = [1.0, 1.5, 3.0, 2.0, 2.5, 0.1]
    # (2, 3) is beaten by (2, 1.5); (3, 2.5) by (4, 2.0); NaN never on the front
    assert A.pareto_front(macs, lat).tolist() == [True, True, False, True, False, False]


# ------------------------------------------------------------------------------------------------ serving

@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_the_serving_table_lists_ok_server_cells_with_verdict_and_bound(tmp_path, kind):
    write_table(contract_table(tmp_path, families=("cnn", "vit"), targets=("ort",), serving=True), tmp_path, kind)
    df, base = A.load_results(tmp_path)
    cells = A.read_cell_reports(df, base)
    t = A.server_table(df, cells)
    assert len(t) == 2 * len(SERVER_QPS)  # the failed server cell is not in it
    assert list(t["model"]) == ["deit_syn"] * 4 + ["resnet_syn"] * 4
    assert list(t["qps_scheduled"]) == list(SERVER_QPS) * 2
    assert list(t["valid"]) == [True, False, False, False, True, True, True, False]  # from "True"/"False" in a CSV
    assert (t["latency_bound_ms"] == SERVER_BOUND_MS).all() and (t["percentile"] == 99.0).all()
    assert (t["p99_ms"][t["valid"] == True] <= SERVER_BOUND_MS).all()  # noqa: E712
    # no reports beside the table: the bound is unknown (NaN), the rest stays
    t = A.server_table(df)
    assert len(t) == 8 and t["latency_bound_ms"].isna().all()
    # latency analyses leave the server cells out
    assert set(A.latency_rows(df)["scenario"]) == {"latency"}
