"""Export + verification of one CNN and one ViT through real torch -> ONNX -> ONNX Runtime."""

import json
import os

import numpy as np
import onnxruntime as ort
import pytest

from deploykit.core.config import ExportConfig
from deploykit.core.errors import InputError, UsageError, VerificationError
from deploykit.export import artifacts
from deploykit.export import exporter as exporter_mod
from deploykit.export.exporter import export_model
from deploykit.passes.fuse import export_transform
from deploykit.onnxio.verify import check_reference, compare
from deploykit.core.hashing import file_sha256
from tests.conftest import files_under


pytestmark = pytest.mark.slow  # every test here exports a real model


@pytest.mark.parametrize("fixture", ["resnet18_64", "deit_tiny_64"])
def test_export_writes_a_verified_artifact_and_manifest(fixture, request):
    res = request.getfixturevalue(fixture)
    m = res.manifest
    assert res.path.is_file() and res.path.parent.name == m["settings"]["model"]
    assert res.path.name == "fp32_b1_r64_op18.onnx"
    assert m["sha256"] == file_sha256(res.path) and m["bytes"] == res.path.stat().st_size
    assert m["onnx"]["opset"] == 18
    assert m["onnx"]["inputs"][0]["shape"] == [1, 3, 64, 64]
    assert m["onnx"]["outputs"][0]["shape"] == [1, 1000]
    v = m["verification"]
    assert v["passed"] and v["runs"][0]["rel_err"] < 1e-3 and v["runs"][0]["cosine"] > 0.9999
    assert v["runs"][0]["top1"] == 1.0
    on_disk = json.loads(artifacts.manifest_path(res.path).read_text())
    assert on_disk["sha256"] == m["sha256"]
    # the saved reference reproduces with a fresh ONNX Runtime session
    ref = np.load(artifacts.reference_path(res.path, 0, 1))
    out = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"]).run(None, {"input": ref["input"]})[0]
    assert compare(ref["output"], out)["cosine"] > 0.9999


def test_same_settings_reuse_and_force_rebuilds(resnet18_64, store):
    mtime = resnet18_64.path.stat().st_mtime_ns
    again = export_model(ExportConfig(model="resnet18", resolution=64, models_dir=store), fuse=export_transform)
    assert again.reused and again.path == resnet18_64.path and again.path.stat().st_mtime_ns == mtime


def test_tampered_artifact_is_rebuilt_not_reused(tmp_path):
    cfg = ExportConfig(model="resnet18", resolution=32, models_dir=tmp_path)
    first = export_model(cfg, fuse=export_transform)
    with open(first.path, "ab") as fh:
        fh.write(b"\0")
    second = export_model(cfg, fuse=export_transform)
    assert not second.reused and file_sha256(second.path) == second.manifest["sha256"]
    forced = export_model(ExportConfig(model="resnet18", resolution=32, models_dir=tmp_path, force=True), fuse=export_transform)
    assert not forced.reused


def test_an_artifact_from_other_model_code_is_rebuilt(tmp_path):
    """The manifest records a hash of the code that built the model (builder module, registry, layers); an
    artifact whose hash differs -- exported by another deploykit version or before a fix to the builder -- is
    rebuilt, not reused."""
    from deploykit.models.registry import get_cfg, source_sha256

    cfg = ExportConfig(model="resnet18", resolution=32, models_dir=tmp_path)
    first = export_model(cfg, fuse=export_transform)
    code = source_sha256(get_cfg("resnet18"))
    assert code and first.manifest["settings"]["model_source_sha256"] == code
    assert source_sha256(get_cfg("parc_resnet50")) not in (None, code)  # another builder module
    mpath = artifacts.manifest_path(first.path)
    old = json.loads(mpath.read_text())
    old["settings"]["model_source_sha256"] = "0" * 64  # as if exported by other model code
    mpath.write_text(json.dumps(old))
    second = export_model(cfg, fuse=export_transform)
    assert not second.reused and second.manifest["settings"]["model_source_sha256"] == code
    assert export_model(cfg, fuse=export_transform).reused


def test_dynamic_batch_runs_at_other_batch_sizes(tmp_path):
    res = export_model(ExportConfig(model="resnet18", resolution=32, dynamic_batch=True, models_dir=tmp_path), fuse=export_transform)
    assert res.path.name.startswith("fp32_bdyn_")
    assert [r["batch"] for r in res.manifest["verification"]["runs"]] == [1, 2]
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((5, 3, 32, 32), np.float32)})[0].shape == (5, 1000)


def test_output_path_and_bad_output(tmp_path):
    out = tmp_path / "custom" / "r18.onnx"
    res = export_model(ExportConfig(model="resnet18", resolution=32, output=str(out), models_dir=tmp_path / "m"), fuse=export_transform)
    assert res.path == out and out.is_file() and (tmp_path / "custom" / "r18.manifest.json").is_file()
    with pytest.raises(InputError, match=".onnx"):
        export_model(ExportConfig(model="resnet18", resolution=32, output=str(tmp_path / "x.bin")), fuse=export_transform)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create folder"):
        export_model(ExportConfig(model="resnet18", resolution=32, output=str(blocker / "sub" / "m.onnx")), fuse=export_transform)


def test_interrupted_export_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter_mod, "save_reference", boom)  # after the model's atomic write
    with pytest.raises(KeyboardInterrupt):
        export_model(ExportConfig(model="resnet18", resolution=32, models_dir=tmp_path), fuse=export_transform)
    # the .onnx landed atomically but without a manifest it is never reused
    left = files_under(tmp_path)
    assert all(".dk-tmp-" not in p.name for p in left)
    assert not any(p.name.endswith(".manifest.json") for p in left)
    monkeypatch.setattr(exporter_mod, "verify_onnx_bytes", boom)
    target = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):
        export_model(ExportConfig(model="resnet18", resolution=32, models_dir=target), fuse=export_transform)
    assert files_under(target) == []  # interrupted before the write: nothing at all


def test_failed_verification_writes_nothing(tmp_path):
    with pytest.raises(exporter_mod.ExportError, match="does not match PyTorch"):
        export_model(ExportConfig(model="resnet18", resolution=32, models_dir=tmp_path, rtol=0.0, min_cosine=1.1), fuse=export_transform)
    assert not any(p.suffix == ".onnx" for p in files_under(tmp_path))


def test_degenerate_reference_is_refused():
    with pytest.raises(VerificationError, match="constant"):
        check_reference(np.zeros((1, 1000), np.float32), "m")
    with pytest.raises(VerificationError, match="NaN"):
        check_reference(np.array([[1.0, np.nan]]), "m")


def test_bad_export_settings():
    with pytest.raises(UsageError):
        ExportConfig(model="resnet18", batch=0)
    with pytest.raises(UsageError):
        ExportConfig(model="resnet18", opset=3)
    with pytest.raises(InputError, match="did you mean"):
        export_model(ExportConfig(model="resnet_18"), fuse=export_transform)


@pytest.mark.skipif(os.environ.get("DEPLOYKIT_FAST") == "1", reason="DEPLOYKIT_FAST=1 skips the legacy exporter")
def test_opset_below_18_uses_the_torchscript_exporter(tmp_path):
    res = export_model(ExportConfig(model="resnet18", resolution=32, opset=17, models_dir=tmp_path), fuse=export_transform)
    assert res.manifest["onnx"]["opset"] == 17
    assert "dynamo=False" in res.manifest["export"]["exporter"]
    assert res.manifest["verification"]["passed"]


def test_export_exports_every_match(cli_runner, tmp_path):
    import json

    from deploykit.cli import cli

    r = cli_runner.invoke(cli, ["export", "mobilenet_v*", "--resolution", "32", "--json", "--models-dir",
                                str(tmp_path)])
    assert r.exit_code == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [x["manifest"]["settings"]["model"] for x in rows] == ["mobilenet_v2", "mobilenet_v3_large"]
    assert all(x["manifest"]["verification"]["passed"] for x in rows)
