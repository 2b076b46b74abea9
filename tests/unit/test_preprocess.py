"""How images become a model's input: the manifest's, a file's own metadata, or the user's flags -- checked, and
named in the report (a user's ONNX file must not be fed with a silent default)."""

import json

import numpy as np
import pytest

from deploykit.core.errors import InputError, UsageError
from deploykit.export.source import apply_preprocess, resolve_model
from deploykit.onnxio.files import PREPROCESS_KEY, set_metadata
from deploykit.quantize.calib import Preprocess, load_image
from tests.samples import tiny_onnx


def _with_metadata(path, values):
    import onnx

    proto = onnx.load(str(path))
    set_metadata(proto, PREPROCESS_KEY, values if isinstance(values, str) else json.dumps(values))
    onnx.save(proto, str(path))
    return path


def test_a_file_without_manifest_or_metadata_says_it_uses_imagenets_default(tmp_path):
    m = resolve_model(str(tiny_onnx(tmp_path / "t.onnx")), batch=1, resolution=None)
    assert m.preprocess_source == "default" and any("ImageNet mean/std" in w for w in m.warnings)
    assert m.describe()["preprocess"]["source"] == "default"


def test_a_files_own_metadata_is_read_and_a_bad_one_is_named(tmp_path):
    path = _with_metadata(tiny_onnx(tmp_path / "t.onnx"), {"mean": [0.5], "std": [0.25, 0.25, 0.25],
                                                           "channel_order": "bgr", "value_range": 255})
    m = resolve_model(str(path), batch=1, resolution=None)
    assert m.preprocess_source == "metadata" and not m.warnings
    assert m.mean == (0.5, 0.5, 0.5) and m.channel_order == "bgr" and m.value_range == 255.0
    bad = _with_metadata(tiny_onnx(tmp_path / "b.onnx"), {"std": [0, 1, 1]})
    m = resolve_model(str(bad), batch=1, resolution=None)
    assert m.preprocess_source == "default" and "unusable" in m.warnings[0] and "std" in m.warnings[0]


def test_the_users_flags_win_and_are_checked(tmp_path):
    m = resolve_model(str(tiny_onnx(tmp_path / "t.onnx")), batch=1, resolution=None,
                      preprocess={"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "value_range": 255.0})
    assert m.preprocess_source == "flags" and not m.warnings and m.value_range == 255.0
    with pytest.raises(InputError, match="channel_order must be rgb or bgr"):
        apply_preprocess(m, {"channel_order": "grb"})
    with pytest.raises(InputError, match="mean must be 1 or 3 finite numbers"):
        apply_preprocess(m, {"mean": (float("nan"),)})


def test_channel_order_and_value_range_reach_the_pixels(tmp_path):
    from PIL import Image

    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 10  # red-ish
    Image.fromarray(rgb).save(tmp_path / "i.png")
    base = dict(resolution=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=1.0)
    x = load_image(tmp_path / "i.png", Preprocess(**base))
    assert x[0, 0, 0] == pytest.approx(200 / 255) and x[2, 0, 0] == pytest.approx(10 / 255)
    y = load_image(tmp_path / "i.png", Preprocess(**base, channel_order="bgr", value_range=255.0))
    assert y[0, 0, 0] == pytest.approx(10.0) and y[2, 0, 0] == pytest.approx(200.0)
    with pytest.raises(UsageError):
        Preprocess(resolution=8, channel_order="hsv")
