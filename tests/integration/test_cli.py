"""The command line: through Click's runner and as a real subprocess; every user error is one clean line."""

import json
import sys

import pytest

from deploykit.cli import cli
from tests.conftest import assert_clean_error, files_under, run_cli

QUICK = ["--resolution", "64", "--warmup", "1", "--min-iters", "5", "--min-time", "0", "--max-time", "10",
         "--threads", "1"]


def test_help_does_not_import_torch_or_runtimes():
    code = ("import sys\nfrom deploykit.cli import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt', 'onnx', 'numpy', 'timm') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "deploykit models" in proc.stdout


def test_version_and_help(cli_runner):
    r = cli_runner.invoke(cli, ["--version"])
    assert r.exit_code == 0 and "deploykit" in r.output
    r = cli_runner.invoke(cli, ["bench", "--help"])
    assert r.exit_code == 0 and "--min-time" in r.output


def test_models_json(cli_runner, tmp_path):
    r = cli_runner.invoke(cli, ["models", "--json", "--family", "vit", "--models-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    names = {x["name"] for x in rows}
    assert {"deit_small", "vit_b_16"} <= names and all(x["family"] == "vit" for x in rows)
    deit = next(x for x in rows if x["name"] == "deit_small")
    assert deit["params_m"] == pytest.approx(22.05, abs=0.05) and deit["input"] == [1, 3, 224, 224]


def test_targets_lists_ort(cli_runner):
    r = cli_runner.invoke(cli, ["targets", "--json"])
    rows = {x["target"]: x for x in json.loads(r.stdout)}
    assert rows["ort"]["available"] is True


@pytest.mark.parametrize("args,code,needles", [
    (["export", "resnet5"], 2, ["unknown model", "did you mean", "resnet50"]),
    (["bench", "resnet18", "--batch", "0"], 2, ["--batch"]),
    (["bench", "resnet18", "--resolution", "-1"], 2, ["--resolution"]),
    (["bench", "resnet18", "--target", "openvinoo"], 2, ["unknown target"]),
    (["bench", "resnet18", "--max-time", "1", "--min-time", "5"], 2, ["--max-time"]),
    (["bench", "resnet18", "--format", "pdf"], 2, ["report format"]),
    (["bench", "nosuch.onnx"], 2, ["not found"]),
    (["export", "deit_tiny", "--resolution", "100"], 2, ["multiple of 16"]),
    (["export", "resnet18", "--weights", "/nonexistent/w.pt"], 2, ["weights file not found"]),
    (["export", "resnet18", "--model-opt", "impl=fft"], 2, ["no option"]),
    (["bench"], 2, ["name the model", "deploykit bench resnet50"]),
    (["frobnicate"], 2, ["no such command"]),
])
def test_user_errors_are_one_clean_line(cli_runner, args, code, needles):
    r = cli_runner.invoke(cli, args)
    assert_clean_error(r, code, *needles)


def test_corrupt_onnx_and_non_image_model(cli_runner, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 100)
    assert_clean_error(cli_runner.invoke(cli, ["bench", str(bad), "--report-dir", str(tmp_path / "r")]), 2, "bad.onnx")
    assert files_under(tmp_path / "r") == []
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    vec = tmp_path / "vec.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), vec)
    assert_clean_error(cli_runner.invoke(cli, ["bench", str(vec)]), 2, "image model")


def test_unwritable_report_dir(cli_runner, tmp_path, resnet18_64):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    r = cli_runner.invoke(cli, ["bench", str(resnet18_64.path), *QUICK[2:], "--report-dir", str(blocker / "reports")])
    assert_clean_error(r, 2, "cannot create folder")


def test_bench_json_to_stdout_and_reports_written(cli_runner, tmp_path, resnet18_64):
    out = tmp_path / "reports"
    r = cli_runner.invoke(cli, ["bench", str(resnet18_64.path), *QUICK[2:], "--report-dir", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    (rep,) = json.loads(r.stdout)  # bench --json: always a list, one report per run
    assert rep["schema"] == "deploykit.report" and rep["model"]["label"] == "resnet18"
    written = sorted(p.suffix for p in files_under(out))
    assert written == [".csv", ".json", ".md"]


def test_interrupted_bench_leaves_no_report(cli_runner, tmp_path, resnet18_64, monkeypatch):
    from deploykit.bench import runner

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "measure", interrupted)
    import deploykit.bench.pipeline as pipeline

    monkeypatch.setattr(pipeline, "measure", interrupted)
    out = tmp_path / "reports"
    r = cli_runner.invoke(cli, ["bench", str(resnet18_64.path), *QUICK[2:], "--report-dir", str(out)])
    assert_clean_error(r, 130, "interrupted", alone=False)
    assert files_under(out) == []


@pytest.mark.slow
def test_export_and_bench_as_a_subprocess(tmp_path):
    env = {"DEPLOYKIT_MODELS": str(tmp_path / "m"), "DEPLOYKIT_REPORTS": str(tmp_path / "r")}
    p = run_cli("export", "deit_tiny", "--resolution", "32", env=env)
    assert p.returncode == 0, p.stderr
    onnx_path = p.stdout.strip().splitlines()[-1]
    assert onnx_path.endswith("deit_tiny/fp32_b1_r32_op18.onnx")
    assert "verified vs PyTorch" in p.stderr
    p = run_cli("bench", "deit_tiny", *QUICK[:1], "32", *QUICK[2:], env=env)
    assert p.returncode == 0, p.stderr
    assert "deit_tiny" in p.stdout and "p50" in p.stdout
    assert len(list((tmp_path / "r").glob("*-deit_tiny-ort.json"))) == 1
    p = run_cli("bench", "deit_tiny", "--batch", "-2", env=env)
    assert_clean_error(p, 2, "--batch")


def test_bench_on_several_targets_runs_them_all_in_fp32_unless_told(cli_runner, tmp_path, resnet18_64):
    """Like with like: ORT beside OpenVINO, no --precision: both asked for fp32 (OpenVINO would pick bf16 on a CPU
    with bf16 units); one target alone keeps its own default; an explicit --precision is what runs."""
    from deploykit.runtimes.base import get_runtime

    if not get_runtime("openvino").availability().available:
        pytest.skip("openvino is not installed here")
    r = cli_runner.invoke(cli, ["bench", str(resnet18_64.path), *QUICK[2:], "-t", "ort,openvino", "--no-save",
                                "--json"])
    assert r.exit_code == 0, r.stderr
    docs = json.loads(r.stdout)
    assert [d["target"]["name"] for d in docs] == ["ort", "openvino"]
    assert [d["settings"]["precision"] for d in docs] == ["fp32", "fp32"]
    alone = cli_runner.invoke(cli, ["bench", str(resnet18_64.path), *QUICK[2:], "-t", "openvino", "--no-save",
                                    "--json"])
    assert alone.exit_code == 0, alone.stderr
    assert json.loads(alone.stdout)[0]["settings"]["precision"] is None  # OpenVINO's own choice, recorded as ran
