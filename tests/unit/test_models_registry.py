"""Model registry: names, families, seeded init, non-degenerate outputs, user checkpoints."""

import pytest
import torch

from deploykit.core.errors import InputError, UsageError
from deploykit.models import create_model, get_cfg, list_models, model_stats

REQUIRED = {
    "cnn": {"resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large", "convnext_tiny", "efficientnet_b0"},
    "vit": {"vit_b_16", "deit_tiny", "deit_small", "swin_tiny", "mobilevit_s"},
}


def test_required_models_are_registered_with_their_family():
    for family, names in REQUIRED.items():
        listed = {c.name for c in list_models(family)}
        assert names <= listed, names - listed
    for c in list_models():
        assert c.family in ("cnn", "vit", "parc")
        assert len(c.mean) == 3 and len(c.std) == 3 and c.resolution > 0


def test_unknown_model_suggests_close_names():
    with pytest.raises(InputError) as e:
        get_cfg("resnet5")
    assert "did you mean" in str(e.value) and "resnet50" in str(e.value)
    with pytest.raises(InputError) as e:
        get_cfg("zzzz")
    assert "did you mean" not in str(e.value)


def test_seeded_init_is_deterministic_and_seed_dependent():
    a = create_model("resnet18", seed=3).state_dict()
    b = create_model("resnet18", seed=3).state_dict()
    c = create_model("resnet18", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_global_rng_is_left_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    create_model("resnet18", seed=9)
    assert torch.equal(torch.rand(3), expected)


def test_vit_b_16_head_is_not_zero_so_outputs_are_not_degenerate():
    m = create_model("vit_b_16", resolution=32)
    assert torch.any(m.heads.head.weight != 0)
    with torch.no_grad():
        y = m(torch.randn(2, 3, 32, 32))
    assert float(y.std()) > 1e-3
    assert not torch.equal(y[0], y[1])


def test_resolution_rules_are_usage_errors():
    with pytest.raises(UsageError, match="multiple of 16"):
        create_model("deit_tiny", resolution=100)
    with pytest.raises(UsageError, match="at least"):
        create_model("resnet18", resolution=8)


def test_user_weights_load_with_weights_only(tmp_path):
    src = create_model("resnet18", seed=11)
    ckpt = tmp_path / "r18.pt"
    torch.save({"state_dict": src.state_dict()}, ckpt)
    m = create_model("resnet18", seed=0, weights=ckpt)
    assert torch.equal(m.conv1.weight, src.conv1.weight)


def test_bad_weights_are_clean_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        create_model("resnet18", weights=tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InputError, match="cannot read weights"):
        create_model("resnet18", weights=junk)
    other = tmp_path / "mnv2.pt"
    torch.save(create_model("mobilenet_v2").state_dict(), other)
    with pytest.raises(InputError, match="do not fit"):
        create_model("resnet18", weights=other)


def test_meta_device_stats_match_the_real_model(tmp_path):
    stats = model_stats("resnet18", 224, cache_dir=tmp_path)
    real = sum(p.numel() for p in create_model("resnet18").parameters())
    assert stats["params"] == real
    # ResNet-18 at 224: 1.81 GMACs (conv + fc), the figure torchvision documents
    assert stats["macs"] / 1e9 == pytest.approx(1.81, rel=0.01)
    # MACs scale with the number of pixels for a fully convolutional trunk
    half = model_stats("resnet18", 112, cache_dir=tmp_path)
    assert half["macs"] == pytest.approx(stats["macs"] / 4, rel=0.1)  # odd sizes round up
    assert (tmp_path / ".cache" / "model-stats.json").is_file()


# ---- selecting models by glob ----------------------------------------------------------------------------------

def test_globs_expand_against_model_names_in_registry_order():
    from deploykit.models.select import expand_model_refs

    parc = ["parc_convnext_xt", "parc_resnet50", "parc_mobilenet_v2", "parc_net_s"]
    assert expand_model_refs(["parc_*"]) == parc
    assert expand_model_refs(["*resnet50"]) == ["resnet50", "parc_resnet50"]
    assert expand_model_refs(["resnet1?", "resnet18", "deit_[st]*"]) == ["resnet18", "deit_tiny", "deit_small"]
    # inside a pass-through namespace, against the library's own list
    assert expand_model_refs(["tv:regnet_y_4*"]) == ["tv:regnet_y_400mf"]
    # files are never globbed against the registry (the shell globs files)
    assert expand_model_refs(["models/*.onnx", "x*.onnx", "resnet18"]) == ["models/*.onnx", "x*.onnx", "resnet18"]


def test_a_glob_that_matches_nothing_names_close_names():
    from deploykit.models.select import expand_model_refs

    with pytest.raises(InputError) as e:
        expand_model_refs(["parx_*"])
    msg = str(e.value)
    assert "no model name matches 'parx_*'" in msg and "parc_convnext_xt" in msg
    with pytest.raises(InputError, match="no model name matches 'zzz\\*'") as e:
        expand_model_refs(["zzz*"])
    assert "close names" not in str(e.value)


def test_glob_errors_on_the_command_line(cli_runner, tmp_path):
    from deploykit.cli import cli
    from tests.conftest import assert_clean_error

    r = cli_runner.invoke(cli, ["bench", "parx_*", "--no-save"])
    assert_clean_error(r, 2, "no model name matches 'parx_*'", "parc_")
    r = cli_runner.invoke(cli, ["export", "zzz*"])
    assert_clean_error(r, 2, "no model name matches")
    r = cli_runner.invoke(cli, ["quantize", "deit_*", "--calib-data", "synthetic", "-o", str(tmp_path / "q.onnx")])
    assert_clean_error(r, 2, "--output names one file", "2 models")
    r = cli_runner.invoke(cli, ["export", "parc_*", "-o", str(tmp_path / "x.onnx")])
    assert_clean_error(r, 2, "--output names one file", "4 models")
