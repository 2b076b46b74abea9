"""bench on the real ONNX Runtime CPU target: schema-valid reports whose numbers come from the samples."""

import csv
import io
import json
import shutil

import numpy as np
import pytest

from deploykit.bench.pipeline import run_benchmark
from deploykit.core.config import BenchConfig, ExportConfig
from deploykit.runtimes.options import RuntimeOptions
from deploykit.core.errors import InputError, UnavailableError, UsageError
from deploykit.report.render import to_csv, to_markdown, write_report_files
from deploykit.report.schema import build_report, load_report, validate

FAST = BenchConfig(resolution=64, warmup=2, min_iters=15, min_time=0.2, max_time=20, bootstrap=200)


@pytest.fixture(scope="module")
def r18_report(resnet18_64, store):
    result = run_benchmark("resnet18", "ort", FAST, RuntimeOptions(threads=1),
                           export=ExportConfig(model="resnet18", models_dir=store))
    return result, build_report(result)


def test_report_is_schema_valid_and_self_consistent(r18_report):
    result, rep = r18_report
    validate(rep)
    samples = np.array(rep["timing"]["samples_ms"])
    assert rep["timing"]["iterations"] == len(samples) >= 15
    assert rep["stats"]["p50"] == pytest.approx(np.percentile(samples, 50), rel=1e-4)
    assert rep["stats"]["max"] == pytest.approx(samples.max(), rel=1e-4)
    assert rep["timing"]["measured_wall_s"] >= 0.2
    assert rep["timing"]["measured_wall_s"] * 1000 >= samples.sum()  # the loop contains every sample
    assert rep["throughput"]["items_per_s"] == pytest.approx(len(samples) / rep["timing"]["measured_wall_s"], rel=1e-6)
    assert rep["timing"]["first_inference_ms"] > 0 and rep["timing"]["load_ms"] > 0
    assert len(rep["timing"]["warmup_ms"]) == 2
    assert rep["target"]["info"]["threads"] == 1 and rep["environment"]["threads"] == 1
    assert rep["target"]["precision"] == "fp32"
    assert rep["model"]["kind"] == "registry" and rep["model"]["input"]["shape"] == [1, 3, 64, 64]


def test_fidelity_against_pytorch_is_recorded(r18_report):
    _, rep = r18_report
    f = rep["fidelity"]
    assert f["reference"].startswith("pytorch")
    assert f["passed"] is True and f["cosine"] > 0.9999 and f["top1"] == 1.0 and f["max_abs"] < 1e-3


def test_environment_fingerprint(r18_report):
    env = r18_report[1]["environment"]
    assert env["cpu"]["model"] and env["cpu"]["usable_cores"] >= 1
    assert env["packages"]["onnxruntime"] and env["deploykit"]["version"]
    assert env["python"].count(".") == 2


def test_report_files_are_written_atomically_and_parse(r18_report, tmp_path):
    paths = write_report_files(r18_report[1], tmp_path / "out")
    assert sorted(p.suffix for p in paths) == [".csv", ".json", ".md"]
    assert load_report(paths[0])["stats"] == r18_report[1]["stats"]
    rows = list(csv.DictReader(io.StringIO(paths[2].read_text())))
    assert rows[0]["model"] == "resnet18" and float(rows[0]["p50_ms"]) == pytest.approx(r18_report[1]["stats"]["p50"], abs=1e-4)
    assert "| resnet18 |  | cnn | ort |" in paths[1].read_text()  # model, variant (none), family, target
    assert not [p for p in (tmp_path / "out").iterdir() if ".dk-tmp-" in p.name]
    # a second write in the same second gets its own name
    again = write_report_files(r18_report[1], tmp_path / "out")
    assert set(again).isdisjoint(paths)


def test_renderings_cover_every_report(r18_report):
    reps = [r18_report[1], r18_report[1]]
    assert to_csv(reps).count("\n") == 3
    assert to_markdown(reps).count("## resnet18 on ort") == 2


def test_plain_onnx_file_is_benchmarked_against_ort_reference(resnet18_64, tmp_path):
    own = tmp_path / "mine.onnx"
    shutil.copy(resnet18_64.path, own)  # no manifest beside it: a user's own file
    res = run_benchmark(str(own), "ort", FAST, RuntimeOptions.from_settings(threads=1, graph_opt="basic"))
    rep = build_report(res)
    assert rep["model"]["kind"] == "onnx-file" and rep["model"]["label"] == "mine"
    assert rep["fidelity"]["reference"].startswith("onnxruntime") and rep["fidelity"]["passed"]
    assert rep["target"]["info"]["graph_optimization"] == "basic"


def test_artifact_file_with_manifest_keeps_pytorch_reference(resnet18_64):
    res = run_benchmark(str(resnet18_64.path), "ort", FAST, RuntimeOptions(threads=1))
    assert res.model.label == "resnet18" and res.fidelity["reference"].startswith("pytorch")


def test_same_input_for_the_same_seed(resnet18_64):
    from deploykit.bench.fidelity import reference_outputs
    from deploykit.export.source import resolve_model

    m = resolve_model(str(resnet18_64.path), batch=1, resolution=None)
    x1, y1, _ = reference_outputs(m, 5)
    x2, y2, _ = reference_outputs(m, 5)
    x3, _, _ = reference_outputs(m, 6)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and not np.array_equal(x1, x3)


def test_bench_errors(resnet18_64, tmp_path):
    with pytest.raises(InputError, match="did you mean"):
        run_benchmark("resnet18", "orrt", FAST, RuntimeOptions())
    with pytest.raises(UsageError, match="fixed batch"):
        run_benchmark(str(resnet18_64.path), "ort", BenchConfig(batch=2), RuntimeOptions())
    with pytest.raises(UsageError, match="no --mode"):
        run_benchmark(str(resnet18_64.path), "torch", FAST, RuntimeOptions(mode="throughput"))
    with pytest.raises(InputError, match="not found"):
        run_benchmark(str(tmp_path / "none.onnx"), "ort", FAST, RuntimeOptions())


def test_unavailable_target_is_exit_3(monkeypatch):
    from deploykit.runtimes import ort

    monkeypatch.setattr(ort.OrtCpuRuntime, "requires", ("not_a_real_module_xyz",))
    with pytest.raises(UnavailableError, match="not installed") as e:
        run_benchmark("resnet18", "ort", FAST, RuntimeOptions())
    assert e.value.exit_code == 3


def test_schema_rejects_broken_reports(r18_report):
    bad = json.loads(json.dumps(r18_report[1]))
    bad["schema_version"] = 99
    with pytest.raises(InputError, match="schema version"):
        validate(bad)
    bad = json.loads(json.dumps(r18_report[1]))
    del bad["stats"]["p50"]
    with pytest.raises(InputError, match="p50"):
        validate(bad)
    bad = json.loads(json.dumps(r18_report[1]))
    bad["timing"]["samples_ms"] = []
    with pytest.raises(InputError, match="samples_ms"):
        validate(bad)
