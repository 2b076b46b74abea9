"""Any timm / torchvision model by name (timm:NAME, tv:NAME): the library's own preprocessing config, seeded random
weights by default, --pretrained from the local cache only (a checkpoint the test writes into a temporary cache,
checked against the exported ONNX), one-line errors for unknown names and missing files, distinct artifacts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.core.errors import InputError
from deploykit.models import get_cfg
from tests.conftest import assert_clean_error, run_cli

QUICK = ["--resolution", "64", "--warmup", "1", "--min-iters", "3", "--min-time", "0", "--max-time", "10",
         "--threads", "1"]
TV_FILE = "squeezenet1_1-b8a52dc0.pth"  # the file name of torchvision's SqueezeNet1_1_Weights.IMAGENET1K_V1 URL


# ------------------------------------------------------------------------------------------- the library's config
def test_timm_models_take_timm_s_data_config():
    import timm.data
    from timm.models import get_pretrained_cfg

    for name in ("resnet10t", "test_vit", "convnext_small"):
        cfg = get_cfg(f"timm:{name}")
        data = timm.data.resolve_data_config({}, pretrained_cfg=get_pretrained_cfg(name).to_dict())
        assert cfg.resolution == data["input_size"][-1]
        assert cfg.mean == tuple(data["mean"]) and cfg.std == tuple(data["std"])
        assert cfg.crop_pct == data["crop_pct"] and cfg.interpolation == data["interpolation"]
        assert cfg.source == "timm" and cfg.traits is None and cfg.family is None
    r10 = get_cfg("timm:resnet10t")
    assert (r10.resolution, r10.crop_pct, r10.interpolation, r10.arch) == (176, 0.875, "bicubic", "resnet10t.c3_in1k")
    vit = get_cfg("timm:test_vit")
    assert vit.mean == (0.5, 0.5, 0.5) and vit.crop_pct == 0.95 and vit.resolution == 160


def test_torchvision_models_take_the_weights_enum_s_transforms():
    from torchvision.models import get_model_weights

    for name, weights in (("regnet_y_400mf", "DEFAULT"), ("resnet50.IMAGENET1K_V1", "IMAGENET1K_V1"),
                          ("resnet50.IMAGENET1K_V2", "IMAGENET1K_V2")):
        cfg = get_cfg(f"tv:{name}")
        t = get_model_weights(name.split(".")[0])[weights].transforms()
        assert cfg.resolution == t.crop_size[0] and cfg.crop_pct == t.crop_size[0] / t.resize_size[0]
        assert cfg.mean == tuple(t.mean) and cfg.std == tuple(t.std) and cfg.interpolation == t.interpolation.value
        assert cfg.num_classes == 1000 and cfg.source == "torchvision"
    # the two ResNet-50 weights are preprocessed differently (resize 256 vs 232)
    assert get_cfg("tv:resnet50.IMAGENET1K_V1").crop_pct != get_cfg("tv:resnet50.IMAGENET1K_V2").crop_pct
    assert get_cfg("tv:vit_b_16").resolution_multiple == 16


def test_unknown_names_suggest_close_ones(cli_runner):
    from deploykit.cli import cli

    with pytest.raises(InputError, match="did you mean 'timm:resnet10t'"):
        get_cfg("timm:resnet10")
    with pytest.raises(InputError, match="did you mean 'tv:resnet50'"):
        get_cfg("tv:resnet5")
    with pytest.raises(InputError, match="has no pretrained tag 'nosuch'.*resnet10t.c3_in1k"):
        get_cfg("timm:resnet10t.nosuch")
    with pytest.raises(InputError, match="has no weights 'V9'.*IMAGENET1K_V2"):
        get_cfg("tv:resnet50.V9")
    r = cli_runner.invoke(cli, ["export", "timm:nosuch"])
    assert_clean_error(r, 2, "unknown timm model 'timm:nosuch'")
    r = cli_runner.invoke(cli, ["bench", "tv:resnet5", "--no-save"])
    assert_clean_error(r, 2, "unknown torchvision model 'tv:resnet5'", "did you mean", "'tv:resnet50'")


# ------------------------------------------------------------------------------------------- export, random weights
def _export(*args, env=None):
    p = run_cli("export", *args, "--json", env=env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def _onnx_out(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.mark.slow
def test_a_torchvision_model_exports_with_seeded_random_weights(tmp_path):
    out = _export("tv:squeezenet1_1", "--resolution", "64", "--models-dir", str(tmp_path))
    m = out["manifest"]
    src = m["source"]
    assert src["from"] == "torchvision" and src["arch"] == "squeezenet1_1" and src["weights"] == "random (seeded)"
    assert src["weights_sha256"] is None and src["traits"] is None and src["crop_pct"] == 224 / 256
    assert m["settings"]["model"] == "tv:squeezenet1_1" and m["settings"]["pretrained"] is None
    assert m["verification"]["passed"] and m["onnx"]["inputs"][0]["shape"] == [1, 3, 64, 64]
    assert out["path"] == str(tmp_path / "tv.squeezenet1_1" / "fp32_b1_r64_op18.onnx")
    # the same as the seeded torchvision model
    import torch
    import torchvision

    from deploykit.models import create_model

    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = create_model("tv:squeezenet1_1", resolution=64)(torch.from_numpy(x)).numpy()
        torch.manual_seed(0)
        plain = torchvision.models.squeezenet1_1().eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ref, plain, rtol=0, atol=0)
    np.testing.assert_allclose(_onnx_out(out["path"], x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_timm_vit_exports_at_another_resolution(tmp_path):
    """test_vit has a fixed input size (160): it is built with img_size at 64."""
    out = _export("timm:test_vit", "--resolution", "64", "--models-dir", str(tmp_path))
    m = out["manifest"]
    assert m["verification"]["passed"] and m["onnx"]["inputs"][0]["shape"] == [1, 3, 64, 64]
    assert m["source"]["mean"] == [0.5, 0.5, 0.5] and m["source"]["interpolation"] == "bicubic"
    assert m["source"]["from"] == "timm" and m["source"]["arch"] == "test_vit.r160_in1k"


# ------------------------------------------------------------------------------------------- --pretrained
def _tv_checkpoint(torch_home):
    """A SqueezeNet 1.1 state_dict (seeded, not the default seed) where torchvision's cache keeps the published one."""
    import torch
    import torchvision

    torch.manual_seed(1234)
    model = torchvision.models.squeezenet1_1().eval()
    path = torch_home / "hub" / "checkpoints" / TV_FILE
    path.parent.mkdir(parents=True)
    torch.save(model.state_dict(), path)
    return model, path


def test_pretrained_without_the_cached_file_says_where_it_looked(tmp_path):
    env = {"TORCH_HOME": str(tmp_path / "th"), "HF_HOME": str(tmp_path / "hf")}
    p = run_cli("export", "tv:squeezenet1_1", "--pretrained", "--models-dir", str(tmp_path / "m"),
                env={**env, "HF_HUB_CACHE": ""})
    assert_clean_error(p, 2, "not in the local cache", str(tmp_path / "th" / "hub" / "checkpoints" / TV_FILE))
    p = run_cli("bench", "timm:resnet10t", "--pretrained", "--no-save", env={**env, "HF_HUB_CACHE": ""})
    line = assert_clean_error(p, 2, "not in the local cache",
                              str(tmp_path / "hf" / "hub" / "models--timm--resnet10t.c3_in1k"),
                              str(tmp_path / "th" / "hub" / "checkpoints" / "resnet10t_176_c3-f3215ab1.pth"),
                              alone=False)
    assert "model.safetensors" in line
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").rglob("*.onnx"))


def test_pretrained_usage_errors(cli_runner, tmp_path):
    from deploykit.cli import cli

    w = tmp_path / "w.pt"
    w.write_bytes(b"x")
    r = cli_runner.invoke(cli, ["export", "tv:squeezenet1_1", "--pretrained", "--weights", str(w)])
    assert_clean_error(r, 2, "--pretrained and --weights exclude each other")
    r = cli_runner.invoke(cli, ["quantize", "tv:squeezenet1_1", "--pretrained", "--weights", str(w),
                                "--calib-data", "synthetic"])
    assert_clean_error(r, 2, "--pretrained and --weights exclude each other")
    r = cli_runner.invoke(cli, ["export", "resnet18", "--pretrained"])
    assert_clean_error(r, 2, "resnet18 has no published weights", "tv:NAME")


@pytest.mark.slow
def test_pretrained_torchvision_weights_are_loaded_as_weights_only_and_must_match_their_published_hash(tmp_path):
    """A checkpoint at the published file name whose content does not hash to the prefix in that name (here: seeded
    weights, not the published ones) is refused, not labelled as the published weights; a file that loads is read
    with torch.load(weights_only=True) and handed to torchvision's own builder (its handling of the weights kept)."""
    import torch

    from deploykit.models.passthrough import load_checkpoint, tv_build_with_state

    model, ckpt = _tv_checkpoint(tmp_path / "th")
    env = {"TORCH_HOME": str(tmp_path / "th")}
    p = run_cli("export", "tv:squeezenet1_1", "--pretrained", "--resolution", "64", "--models-dir",
                str(tmp_path / "m"), env=env)
    assert_clean_error(p, 2, TV_FILE, "not the published weights", alone=False)
    # the loading itself, from a file whose name carries no hash: the same function as the seeded model
    plain = ckpt.with_name("squeezenet1_1.pth")
    ckpt.rename(plain)
    from torchvision.models import SqueezeNet1_1_Weights

    built = tv_build_with_state("squeezenet1_1", "squeezenet1_1", SqueezeNet1_1_Weights.IMAGENET1K_V1, 64,
                                load_checkpoint(plain, "test")).eval()
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(built(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_pretrained_timm_weights_come_from_the_hugging_face_cache(tmp_path):
    import safetensors.torch
    import timm
    import torch

    torch.manual_seed(99)
    model = timm.create_model("resnet10t").eval()
    repo = tmp_path / "hf" / "hub" / "models--timm--resnet10t.c3_in1k"
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    safetensors.torch.save_file(model.state_dict(), str(snap / "model.safetensors"))
    env = {"HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "th"), "HF_HUB_CACHE": "",
           "HF_HUB_OFFLINE": "1"}
    out = _export("timm:resnet10t", "--pretrained", "--resolution", "64", "--models-dir", str(tmp_path / "m"),
                  env=env)
    assert out["manifest"]["source"]["weights"] == str(snap / "model.safetensors")
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_onnx_out(out["path"], x), want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------- identity, quantize
@pytest.mark.slow
def test_a_pass_through_model_never_shares_an_artifact_with_a_registry_model(tmp_path):
    store = str(tmp_path / "m")
    reg = _export("resnet18", "--resolution", "32", "--models-dir", store)
    tv = _export("tv:resnet18", "--resolution", "32", "--models-dir", store)
    assert reg["path"] != tv["path"] and not tv["reused"]
    assert reg["manifest"]["settings"]["model"] == "resnet18" and tv["manifest"]["settings"]["model"] == "tv:resnet18"
    assert _export("tv:resnet18", "--resolution", "32", "--models-dir", store)["reused"]


@pytest.mark.slow
def test_quantize_infers_a_pass_through_model_s_traits_from_its_graph(tmp_path):
    p = run_cli("quantize", "timm:test_vit", "--resolution", "64", "--calib-data", "synthetic", "--calib-size", "4",
                "--fidelity-samples", "4", "--no-verify", "--json", "--models-dir", str(tmp_path))
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    plan = rep["report"]["plan"]
    assert plan["recipe"] == "vit" and plan["traits_from"] == "graph" and plan["softmax"] == "int8"
    assert rep["report"]["softmax"]["blocks"]
    assert "declares no model traits: quantized with the 'vit' recipe (attention blocks found" in p.stderr
    pp = rep["manifest"]["settings"]["preprocess"]  # timm's data config, not ImageNet defaults
    assert pp["mean"] == [0.5, 0.5, 0.5] and pp["crop_pct"] == 0.95 and pp["interpolation"] == "bicubic"
    assert rep["path"].startswith(str(tmp_path / "timm.test_vit"))
