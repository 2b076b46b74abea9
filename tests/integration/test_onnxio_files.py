"""Bad ONNX files and shapes: each a clean error, never a traceback from deep inside a library."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deploykit.core.errors import InputError, UsageError
from deploykit.onnxio.files import graph_precision, image_input_shape, load_onnx


def _identity_model(path, shape, n_inputs=1, elem=TensorProto.FLOAT):
    inputs = [helper.make_tensor_value_info(f"x{i}", elem, shape) for i in range(n_inputs)]
    out = helper.make_tensor_value_info("y", elem, shape)
    nodes = [helper.make_node("Identity", ["x0"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [out]), opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, path)
    return path


def test_missing_empty_corrupt_and_truncated_files(tmp_path, resnet18_64):
    with pytest.raises(InputError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_onnx(empty)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="not a valid ONNX"):
        load_onnx(garbage)
    data = resnet18_64.path.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a valid ONNX|checker"):
        load_onnx(truncated)


def test_non_image_inputs_are_refused(tmp_path):
    m = load_onnx(_identity_model(tmp_path / "vec.onnx", [1, 10]))
    with pytest.raises(InputError, match="N x C x H x W"):
        image_input_shape(m, 1, None)
    m = load_onnx(_identity_model(tmp_path / "two.onnx", [1, 3, 8, 8], n_inputs=2))
    with pytest.raises(InputError, match="2 inputs"):
        image_input_shape(m, 1, None)
    m = load_onnx(_identity_model(tmp_path / "chan.onnx", [1, 7, 8, 8]))
    with pytest.raises(InputError, match="channels"):
        image_input_shape(m, 1, None)
    m = load_onnx(_identity_model(tmp_path / "int.onnx", [1, 3, 8, 8], elem=TensorProto.INT64))
    with pytest.raises(InputError, match="float"):
        image_input_shape(m, 1, None)


def test_static_and_dynamic_dims(tmp_path):
    m = load_onnx(_identity_model(tmp_path / "fixed.onnx", [1, 3, 32, 32]))
    assert image_input_shape(m, None, None) == ("x0", (1, 3, 32, 32), "float32")
    with pytest.raises(UsageError, match="fixed batch"):
        image_input_shape(m, 4, None)
    with pytest.raises(UsageError, match="fixed height"):
        image_input_shape(m, 1, 64)
    dyn = load_onnx(_identity_model(tmp_path / "dyn.onnx", ["N", 3, "H", "W"]))
    assert image_input_shape(dyn, 2, 48)[1] == (2, 3, 48, 48)
    with pytest.raises(UsageError, match="--resolution"):
        image_input_shape(dyn, 2, None)


def test_graph_precision(resnet18_64):
    assert graph_precision(load_onnx(resnet18_64.path)) == "fp32"
