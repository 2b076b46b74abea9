"""ParC layers (conv / fft / matmul) exported to ONNX and run by ONNX Runtime and OpenVINO with PyTorch's outputs."""

from __future__ import annotations

import pytest
import torch

from deploykit.models.layers.parc import IMPLS, ParC


def _export(module, x, tmp_path):
    from deploykit.core.config import ExportConfig
    from deploykit.export.exporter import _torch_export

    proto = _torch_export(module, x.numpy(), ExportConfig(model="parc_layer", opset=18))
    path = tmp_path / "parc.onnx"
    path.write_bytes(proto.SerializeToString())
    return proto, path


@pytest.mark.slow
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("axis,dense,channels", [("H", False, 7), ("W", True, 6)])
def test_exports_and_runs_on_onnxruntime_and_openvino(tmp_path, impl, axis, dense, channels):
    import onnxruntime as ort
    import openvino as ov

    from deploykit.onnxio.files import op_types
    from deploykit.onnxio.verify import compare

    torch.manual_seed(2)
    m = ParC(channels, 14, axis, impl, groups=1 if dense else None).eval()
    x = torch.randn(2, channels, 9, 12)  # resized (14 -> 9 or 12), non-square, batch 2, odd/even channels
    with torch.no_grad():
        ref = m(x).numpy()
    proto, path = _export(m, x, tmp_path)
    ops = op_types(proto)
    if impl == "fft":
        dfts = [n for n in proto.graph.node if n.op_type == "DFT"]
        assert len(dfts) == 2  # one forward, one inverse; the kernel's spectrum is a constant
        for n in dfts:  # full complex DFTs only: the forms every DFT-capable runtime reads the same way
            attrs = {a.name: a.i for a in n.attribute}
            assert attrs.get("onesided", 0) == 0, attrs
        complex_types = {10 + 4, 15}  # COMPLEX64, COMPLEX128
        assert not any(vi.type.tensor_type.elem_type in complex_types for vi in proto.graph.value_info)
    else:
        assert "DFT" not in ops
        assert ("Conv" in ops) == (impl == "conv") and ("MatMul" in ops) == (impl == "matmul")

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert compare(ref, got)["rel_err"] <= 1e-5

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled([x.numpy()])[0]
    assert compare(ref, got)["rel_err"] <= 1e-5
