"""deploykit/sweep/spec.py: the cross product, cell keys, ParC options, LoadGen scenarios and QPS, skipped cells,
study files ([[matrix]] blocks, [bench] and [loadgen] settings) and the one-line errors; and the command line each
cell's child runs (deploykit bench or deploykit loadgen, sweep/executor.py)."""

from __future__ import annotations

import pytest

from deploykit.core.errors import InputError, UsageError
from deploykit.runtimes.base import get_runtime
from deploykit.sweep.executor import LocalExecutor, cell_args, write_cell_spec
from deploykit.sweep.spec import BenchSettings, Cell, Matrix, build_cells, load_study, spec_from


def test_the_cross_product_in_order_with_stable_keys():
    cells = build_cells([Matrix(models=("resnet18", "deit_tiny"), targets=("ort", "openvino"),
                                precision=("fp32", "int8"), batch=(1, 8), resolution=(64, 96), threads=(1, 2))])
    assert len(cells) == 2 * 2 * 2 * 2 * 2 * 2
    assert len({c.key for c in cells}) == len(cells)
    assert cells[0].key == "resnet18|ort|fp32|b1|r64|t1"
    assert cells[1].key == "resnet18|ort|fp32|b1|r64|t2"
    assert cells[2].key == "resnet18|openvino|fp32|b1|r64|t1"
    assert [c.model for c in cells[:32]] == ["resnet18"] * 32
    assert cells[-1].key == "deit_tiny|openvino|int8|b8|r96|t2"
    # the key does not depend on how the spec was written
    again = build_cells([Matrix(models=("resnet18",), targets=("ort",), precision=("fp32",), batch=(1,),
                                resolution=(64,), threads=(1,))])
    assert again[0].key == cells[0].key and again[0].safe_key == cells[0].safe_key
    assert cells[0].safe_key.startswith("resnet18-ort-fp32-b1-r64-t1-")


def test_defaults_are_one_cell_at_the_models_resolution_on_ort():
    (cell,) = build_cells([Matrix(models=("resnet18",))])
    assert cell == Cell(model="resnet18", target="ort", precision="fp32", batch=1, resolution=224, threads=None,
                        label="resnet18", family="cnn")
    assert cell.key == "resnet18|ort|fp32|b1|r224|tauto"
    assert cell.describe()["family"] == "cnn" and cell.describe()["scenario"] == "latency"


def test_parc_impl_makes_one_cell_per_implementation_for_parc_models_only():
    cells = build_cells([Matrix(models=("resnet18", "parc_convnext_xt"), resolution=(64,),
                                parc_impl=("conv", "fft", "matmul"))])
    keys = [c.key for c in cells]
    assert keys == ["resnet18|ort|fp32|b1|r64|tauto",
                    "parc_convnext_xt|ort|fp32|b1|r64|tauto|parc_impl=conv",
                    "parc_convnext_xt|ort|fp32|b1|r64|tauto|parc_impl=fft",
                    "parc_convnext_xt|ort|fp32|b1|r64|tauto|parc_impl=matmul"]
    assert cells[2].model_options == "parc_impl=fft" and cells[2].family == "parc"


def test_globs_expand_and_duplicates_across_matrices_run_once():
    cells = build_cells([Matrix(models=("resnet*",), resolution=(64,)),
                         Matrix(models=("resnet18",), resolution=(64, 96))])
    assert [c.key for c in cells] == ["resnet18|ort|fp32|b1|r64|tauto", "resnet50|ort|fp32|b1|r64|tauto",
                                      "resnet18|ort|fp32|b1|r96|tauto"]


def test_cells_the_architecture_or_the_machine_cannot_run_are_skipped_with_the_reason():
    cells = build_cells([Matrix(models=("swin_tiny",), targets=("ort", "trt"), resolution=(48, 96, 100))])
    by_key = {c.key: c for c in cells}
    assert "at least 64" in by_key["swin_tiny|ort|fp32|b1|r48|tauto"].skip
    assert "multiple of 32" in by_key["swin_tiny|ort|fp32|b1|r100|tauto"].skip
    assert by_key["swin_tiny|ort|fp32|b1|r96|tauto"].skip is None
    trt = by_key["swin_tiny|trt|fp32|b1|r96|tauto"]
    av = get_runtime("trt").availability()
    assert (trt.skip is None) == av.available
    if not av.available:
        assert trt.skip.startswith("target trt is unavailable here")


def test_model_files_are_keyed_by_their_absolute_path_and_labelled_by_their_stem(tmp_path, monkeypatch):
    f = tmp_path / "my_net.onnx"
    f.write_bytes(b"not checked here: the cell fails when it runs")
    monkeypatch.chdir(tmp_path)
    (cell,) = build_cells([Matrix(models=("my_net.onnx",))])
    assert cell.model == str(f.resolve()) and cell.label == "my_net" and cell.resolution is None
    assert cell.key == f"{f.resolve()}|ort|fp32|b1|rauto|tauto"
    with pytest.raises(InputError, match="model file not found: missing.onnx"):
        build_cells([Matrix(models=("missing.onnx",))])


@pytest.mark.parametrize("matrix,error,match", [
    (Matrix(models=("resnt18",)), InputError, "unknown model 'resnt18'; did you mean 'resnet18'"),
    (Matrix(models=("resnet18",), targets=("onnx",)), InputError, "unknown target 'onnx'"),
    (Matrix(models=("nothing_like_it*",)), InputError, "no model name matches"),
    (Matrix(models=("resnet18",), precision=("fp64",)), UsageError, "unknown precision 'fp64'"),
    (Matrix(models=("resnet18",), parc_impl=("fast",)), UsageError, "unknown parc_impl 'fast'"),
    (Matrix(models=("resnet18",), batch=(0,)), UsageError, "batch must be a positive integer"),
    (Matrix(), UsageError, "no models"),
])
def test_bad_specs_are_one_line_errors(matrix, error, match):
    with pytest.raises(error, match=match):
        build_cells([matrix])


def test_flags_are_comma_separated_lists_and_name_themselves_in_errors():
    spec = spec_from(("resnet18,deit_tiny",), targets=("ort,openvino",), resolution=("64", "96"),
                     bench={"min_time": 0.5, "max_time": None})
    assert len(spec.cells()) == 2 * 2 * 2
    assert spec.bench == BenchSettings(min_time=0.5)
    with pytest.raises(UsageError, match="--batch: expected a whole number, got 'x'"):
        spec_from(("resnet18",), batch=("1,x",))
    with pytest.raises(UsageError, match="--threads: expected positive integers"):
        spec_from(("resnet18",), threads=("0",))
    with pytest.raises(UsageError, match="no models to sweep"):
        spec_from(())
    with pytest.raises(UsageError, match="max-time"):
        spec_from(("resnet18",), bench={"min_time": 10.0, "max_time": 2.0})


STUDY = """
name = "example"
description = "two models at two sizes"

[bench]
min_time = 0.2
max_time = 1
cell_timeout = 120
out = "reports/sweeps/example"

[[matrix]]
models = ["resnet18", "deit_tiny"]
targets = "ort,openvino"
resolution = [64, 96]

[[matrix]]       # int8 at 64 px only
models = ["resnet18"]
precision = ["int8"]
resolution = 64
"""


def test_a_study_file_with_several_matrix_blocks_and_bench_settings(tmp_path):
    f = tmp_path / "study.toml"
    f.write_text(STUDY)
    spec = spec_from(study=f)
    keys = [c.key for c in spec.cells()]
    assert len(keys) == 2 * 2 * 2 + 1
    assert keys[-1] == "resnet18|ort|int8|b1|r64|tauto"
    assert spec.bench == BenchSettings(min_time=0.2, max_time=1.0, cell_timeout=120.0, out="reports/sweeps/example")
    assert spec.source == str(f) and (spec.name, spec.description) == ("example", "two models at two sizes")
    # flags win over the file's [bench]
    assert spec_from(study=f, bench={"min_time": 0.5, "cell_timeout": None}).bench.min_time == 0.5
    # a study without [[matrix]] blocks: the top-level keys are the matrix
    f.write_text('models = ["resnet18"]\nbatch = [1, 4]\nout = "x"\n')
    spec = spec_from(study=f)
    assert [c.batch for c in spec.cells()] == [1, 4] and spec.bench.out == "x"


@pytest.mark.parametrize("text,match", [
    ("[[matrix]]\nmodels = ['resnet18']\ncolour = 'red'\n", r"\[\[matrix\]\] #1: unknown key 'colour'"),
    ("[[matrix]]\nmodels = ['resnet18']\n[[matrix]]\ntargets = ['ort']\n", r"#2: key 'models' is missing"),
    ("[[matrix]]\nmodels = ['resnet18']\nbatch = [1.5]\n", r"#1: batch: expected a whole number"),
    ("[bench]\nmin_tme = 1\n[[matrix]]\nmodels = ['resnet18']\n", r"\[bench\]: unknown key 'min_tme'"),
    ("[bench]\nmin_time = 'long'\n[[matrix]]\nmodels = ['resnet18']\n", r"\[bench\]: min_time must be a number"),
    ("[bench]\nwarmup = 1.5\n[[matrix]]\nmodels = ['resnet18']\n", r"warmup must be a number \(whole\)"),
    ("models = ['resnet18']\n[[matrix]]\nmodels = ['deit_tiny']\n", "outside the"),
    ("[bench]\nmin_time = 1\n", r"no \[\[matrix\]\] block and no models"),
    ("threads = 2\nfoo = 1\n", "unknown key 'foo'"),
    ("[[matrix]\nmodels = 1", "not valid TOML"),
])
def test_bad_study_files_name_the_file_and_the_key_at_fault(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises((UsageError, InputError), match=match) as exc:
        spec_from(study=f)
    assert str(f) in str(exc.value)


def test_study_and_matrix_flags_exclude_each_other(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(STUDY)
    with pytest.raises(UsageError, match="--target and --study both give the matrix"):
        spec_from(targets=("ort",), study=f)
    with pytest.raises(UsageError, match="model arguments and --study"):
        spec_from(("resnet18",), study=f)
    with pytest.raises(InputError, match="study file not found"):
        load_study(tmp_path / "nope.toml")


def test_a_cell_becomes_a_run_spec_file_its_child_runs(tmp_path):
    from dataclasses import replace

    from deploykit.spec.run import read_spec

    bench = BenchSettings(min_time=0.2, max_time=1.0, min_iters=20, warmup=3, calib_size=8)
    fp32 = Cell(model="resnet18", target="openvino", precision="fp32", batch=4, resolution=64, threads=2,
                settings=bench)
    spec = fp32.spec
    assert (spec.model, spec.target, spec.batch, spec.resolution, spec.options.threads) == ("resnet18", "openvino",
                                                                                              4, 64, 2)
    assert spec.runtime_options().precision == "fp32"  # fp32 asked for: OpenVINO would run bf16
    m = spec.measure
    assert (m.min_time, m.max_time, m.min_iters, m.warmup) == (0.2, 1.0, 20, 3) and spec.quantize is None
    assert spec.key == fp32.key == "resnet18|openvino|fp32|b4|r64|t2"
    path = write_cell_spec(fp32, None, tmp_path)
    assert read_spec(path) == spec  # the file is the spec, whole
    assert cell_args(fp32, bench, tmp_path) == ["run", str(tmp_path / "spec.json"), "--report-dir", str(tmp_path),
                                                "--format", "json", "--json"]
    assert cell_args(fp32, bench, "/r", models_dir="/m")[-2:] == ["--models-dir", "/m"]
    int8 = Cell(model="parc_net_s", target="ort", precision="int8", options=(("parc_impl", "fft"),), settings=bench)
    spec = int8.spec
    assert spec.int8 and spec.quantize.calib_data == "synthetic" and spec.quantize.calib_size == 8
    assert spec.model_options == (("parc_impl", "fft"),) and spec.resolution is None and spec.options.threads is None
    assert spec.runtime_options().precision is None  # ORT runs an int8 file as built
    # OpenVINO would run the float rest of an int8 graph in bf16 on CPUs with bf16 units: fp32 is asked for
    ov = replace(int8, target="openvino", options=()).spec
    assert ov.runtime_options().precision == "fp32" and ov.precision_label == "int8"


# ----------------------------------------------------------------------------------------------- LoadGen cells

def test_scenarios_make_loadgen_cells_and_server_cells_one_per_qps():
    cells = build_cells([Matrix(models=("resnet18",), resolution=(64,), scenario=("latency", "server", "offline"),
                                qps=(5, 2.5))])
    assert [c.key for c in cells] == ["resnet18|ort|fp32|b1|r64|tauto",
                                      "resnet18|ort|fp32|b1|r64|tauto|server@qps=5",
                                      "resnet18|ort|fp32|b1|r64|tauto|server@qps=2.5",
                                      "resnet18|ort|fp32|b1|r64|tauto|offline"]
    assert [(c.scenario, c.qps, c.loadgen) for c in cells] == [("latency", None, False), ("server", 5.0, True),
                                                               ("server", 2.5, True), ("offline", None, True)]
    d = cells[1].describe()
    assert (d["scenario"], d["qps_scheduled"], d["cell"]) == ("server", 5.0, cells[1].key)
    assert cells[3].describe()["qps_scheduled"] is None
    assert len({c.safe_key for c in cells}) == 4 and "-server-q5-" in cells[1].safe_key
    # server without qps: one cell at LoadGen's own (calibrated) rate; options come before the scenario
    (cell,) = build_cells([Matrix(models=("parc_net_s",), resolution=(64,), parc_impl=("fft",),
                                  scenario=("server",))])
    assert cell.key == "parc_net_s|ort|fp32|b1|r64|tauto|parc_impl=fft|server" and cell.qps is None


def test_latency_cells_keep_their_keys_and_folders():
    """Existing results tables and --resume find their cells: a latency cell's key and folder are as before."""
    plain = build_cells([Matrix(models=("resnet18", "parc_net_s"), resolution=(64,), parc_impl=("fft",))])
    mixed = build_cells([Matrix(models=("resnet18", "parc_net_s"), resolution=(64,), parc_impl=("fft",),
                                scenario=("latency", "server"), qps=(10,))])
    latency = [c for c in mixed if not c.loadgen]
    assert [c.key for c in latency] == [c.key for c in plain] == ["resnet18|ort|fp32|b1|r64|tauto",
                                                                   "parc_net_s|ort|fp32|b1|r64|tauto|parc_impl=fft"]
    assert [c.safe_key for c in latency] == [c.safe_key for c in plain]
    assert plain[0].safe_key == "resnet18-ort-fp32-b1-r64-tauto-" + plain[0].safe_key.rsplit("-", 1)[1]
    assert plain[0] == Cell(model="resnet18", target="ort", resolution=64, label="resnet18", family="cnn")


@pytest.mark.parametrize("kw,match", [
    ({"scenario": ("sever",)}, r"unknown scenario 'sever' \(choose from latency, server, offline"),
    ({"qps": (5,)}, r"qps applies to server cells, and this matrix has none \(scenario latency\)"),
    ({"scenario": ("offline",), "qps": (5,)}, "add scenario server"),
    ({"scenario": ("server",), "qps": (0,)}, "qps must be a positive number, got 0"),
])
def test_bad_scenarios_and_qps_are_one_line_errors(kw, match):
    with pytest.raises(UsageError, match=match):
        build_cells([Matrix(models=("resnet18",), **kw)])


def test_scenario_and_qps_flags_and_the_loadgen_settings_they_share():
    spec = spec_from(("resnet18",), resolution=("64",), scenario=("server,offline",), qps=("5,10", "20"),
                     bench={"latency_bound": 50.0, "duration": 2.0, "min_time": None})
    assert [(c.scenario, c.qps) for c in spec.cells()] == [("server", 5.0), ("server", 10.0), ("server", 20.0),
                                                           ("offline", None)]
    assert (spec.bench.latency_bound, spec.bench.duration, spec.bench.percentile) == (50.0, 2.0, None)
    with pytest.raises(UsageError, match="--qps: expected a finite number, got 'fast'"):
        spec_from(("resnet18",), scenario=("server",), qps=("5,fast",))
    with pytest.raises(UsageError, match="--qps: expected positive numbers, got -1"):
        spec_from(("resnet18",), scenario=("server",), qps=("-1",))
    with pytest.raises(UsageError, match="latency-bound must be a positive number"):
        spec_from(("resnet18",), bench={"latency_bound": 0.0})


SERVING = """
[loadgen]
latency_bound = 50
percentile = 90
duration = 2
min_queries = 64

[[matrix]]
models = ["resnet18"]
resolution = 64
scenario = "server"
qps = [5, 10]
"""


def test_a_study_file_with_loadgen_cells_and_a_loadgen_table(tmp_path):
    f = tmp_path / "serving.toml"
    f.write_text(SERVING)
    spec = spec_from(study=f)
    assert [c.key for c in spec.cells()] == ["resnet18|ort|fp32|b1|r64|tauto|server@qps=5",
                                             "resnet18|ort|fp32|b1|r64|tauto|server@qps=10"]
    assert spec.bench == BenchSettings(latency_bound=50.0, percentile=90.0, duration=2.0, min_queries=64)
    assert spec_from(study=f, bench={"duration": 5.0, "latency_bound": None}).bench.duration == 5.0  # flags win


@pytest.mark.parametrize("table,match", [
    ("[loadgen]\nbound = 5\n", r"\[loadgen\]: unknown key 'bound' \(loadgen settings: latency_bound, percentile"),
    ("[loadgen]\npercentile = 100\n", r"\[loadgen\]: percentile must be between 0 and 100"),
    ("[loadgen]\nmin_queries = 0.5\n", r"\[loadgen\]: min_queries must be a number \(whole\)"),
    ("[loadgen]\nduration = '10s'\n", r"\[loadgen\]: duration must be a number"),
    ("[bench]\nduration = 10\n", r"\[bench\]: unknown key 'duration' \(bench settings: min_time"),
    ("loadgen = 1\n", "'loadgen' must be a table"),
    ("[[matrix]]\nmodels = ['resnet18']\nqps = 'many'\n", r"#1: qps: expected a finite number, got 'many'"),
    ("[[matrix]]\nmodels = ['resnet18']\nqps = 5\n", r"#1: qps applies to server cells"),
    ("[[matrix]]\nmodels = ['resnet18']\nscenario = 'Server'\n", r"#1: unknown scenario 'Server'"),
])
def test_bad_loadgen_settings_in_a_study_name_the_file_and_the_key(tmp_path, table, match):
    f = tmp_path / "bad.toml"
    f.write_text(table + ("" if "[[matrix]]" in table else "[[matrix]]\nmodels = ['resnet18']\n"))
    with pytest.raises(UsageError, match=match) as exc:
        spec_from(study=f)
    assert str(f) in str(exc.value)


def test_a_loadgen_cell_becomes_a_loadgen_run_spec():
    settings = BenchSettings(latency_bound=50.0, percentile=95.0, duration=2.0, min_queries=64, calib_size=8)
    server = Cell(model="resnet18", target="openvino", batch=2, resolution=64, threads=2, scenario="server",
                  qps=12.5, settings=settings)
    spec = server.spec
    assert spec.loadgen and spec.scenario == "server" and spec.key.endswith("|server@qps=12.5")
    m = spec.measure
    assert (m.qps, m.latency_bound_ms, m.percentile, m.duration_s, m.min_queries) == (12.5, 50.0, 95.0, 2.0, 64)
    assert (m.batch, m.resolution) == (2, 64) and spec.runtime_options().precision == "fp32"
    assert cell_args(server, settings, "/r") == ["run", "/r/spec.json", "--report-dir", "/r", "--json"]
    # the model part is bench's: int8 with its calibration, model options; offline takes no qps/bound/percentile
    int8 = Cell(model="parc_net_s", target="ort", precision="int8", options=(("parc_impl", "fft"),),
                scenario="offline", settings=settings)
    spec = int8.spec
    assert spec.int8 and spec.quantize.calib_size == 8 and spec.model_options == (("parc_impl", "fft"),)
    assert (spec.measure.qps, spec.measure.latency_bound_ms, spec.measure.percentile) == (None, None, None)
    assert (spec.measure.duration_s, spec.measure.min_queries) == (2.0, 64)


def test_the_local_and_slurm_executors_run_cells_through_the_same_argv_builder(tmp_path):
    from deploykit.sweep.slurm import NodeRunner

    cell = Cell(model="resnet18", target="ort", resolution=64, scenario="server", qps=5)
    settings = BenchSettings(duration=2.0)
    for ex in (LocalExecutor(settings, tmp_path), NodeRunner(settings, tmp_path, models_dir=tmp_path / "m")):
        argv = ex.command(cell, tmp_path / "c")
        i = argv.index("run")
        assert argv[i:] == cell_args(cell, settings, tmp_path / "c", ex.models_dir)


def test_loadgen_cells_are_skipped_where_mlperf_loadgen_is_missing(monkeypatch):
    import deploykit.core.lazy as lazy

    real = lazy.is_installed
    monkeypatch.setattr(lazy, "is_installed", lambda module: module != "mlperf_loadgen" and real(module))
    m = Matrix(models=("resnet18",), resolution=(64,), scenario=("latency", "server"), qps=(5,))
    latency, server = build_cells([m])
    assert latency.skip is None
    assert server.skip.startswith("MLPerf LoadGen (mlperf_loadgen) is not installed here: pip install")
    assert all(c.skip is None for c in build_cells([m], targets_here=False))  # a cluster's node decides


def test_a_study_sets_the_int8_cells_softmax_auto_included():
    from deploykit.sweep.spec import bench_from_values

    assert bench_from_values({"softmax": "auto"}).quantize().softmax == "auto"
    assert bench_from_values({}).quantize().softmax is None
    with pytest.raises(UsageError, match="softmax must be one of float, int8, auto"):
        bench_from_values({"softmax": "fast"})
