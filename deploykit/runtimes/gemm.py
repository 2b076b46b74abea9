"""The GEMM graphs of `deploykit peak` (the PEAK capability): one MatMul A[m, k] . B[k, n], B a constant weight, in
the forms the CPU targets run as their fastest float and int8 kernels. A target lists its kernels
(``Runtime.peak_kernels``) and loads one at a shape (``Runtime.gemm_session``, usually through ``load_gemm``);
bench/peak.py times it with bench's timer, stop rule and statistics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.runtimes.base import GemmKernel, ModelInput

if TYPE_CHECKING:
    import numpy as np

    from deploykit.runtimes.base import Runtime

GRAPHS = ("fp32", "matmul_integer", "qlinear", "qdq")  # the kinds of gemm_model


def gemm_model(kind: str, m: int, k: int, n: int, seed: int = 0):
    """An ONNX graph computing A[m, k] . B[k, n] with B a constant (``kind``: fp32 MatMul, matmul_integer
    (uint8 x int8 -> int32), qlinear (QLinearMatMul uint8 x int8 -> uint8) or qdq (float input through
    QuantizeLinear/DequantizeLinear, int8 weight through DequantizeLinear, float MatMul))."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    init = []

    def const(name, arr):
        init.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    if kind == "fp32":
        a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
        nodes = [helper.make_node("MatMul", ["A", const("B", rng.uniform(-1, 1, (k, n)).astype(np.float32))], ["Y"])]
    else:
        # 7-bit weights (as ONNX Runtime's reduce_range): u8 x s8 pairs then never saturate the 16-bit sums of the
        # AVX2 kernels (VPMADDUBSW), so the product is exact on every ISA; the speed is the same
        w = rng.integers(-64, 64, (k, n), dtype=np.int8)
        scale = 1.0 / k
        if kind == "matmul_integer":
            a = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
            y = helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])
            nodes = [helper.make_node("MatMulInteger", ["A", const("B", w), const("a_zp", np.uint8(128)),
                                                        const("b_zp", np.int8(0))], ["Y"])]
        elif kind == "qlinear":
            a = helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])
            y = helper.make_tensor_value_info("Y", TensorProto.UINT8, [m, n])
            nodes = [helper.make_node("QLinearMatMul", [
                "A", const("a_scale", np.float32(0.02)), const("a_zp", np.uint8(128)),
                const("B", w), const("b_scale", np.float32(0.01)), const("b_zp", np.int8(0)),
                const("y_scale", np.float32(scale)), const("y_zp", np.uint8(128))], ["Y"])]
        elif kind == "qdq":
            a = helper.make_tensor_value_info("A", TensorProto.FLOAT, [m, k])
            y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
            nodes = [
                helper.make_node("QuantizeLinear", ["A", const("a_scale", np.float32(0.02)),
                                                    const("a_zp", np.uint8(128))], ["Aq"]),
                helper.make_node("DequantizeLinear", ["Aq", "a_scale", "a_zp"], ["Ad"]),
                helper.make_node("DequantizeLinear", [const("B", w), const("b_scale", np.float32(0.01)),
                                                      const("b_zp", np.int8(0))], ["Bd"]),
                helper.make_node("MatMul", ["Ad", "Bd"], ["Y"]),
            ]
        else:
            raise ValueError(f"unknown GEMM graph kind {kind!r}")
    graph = helper.make_graph(nodes, f"gemm_{kind}_{m}x{k}x{n}", [a], [y], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="deploykit-peak")
    model.ir_version = 8
    return model


def gemm_input(kernel: GemmKernel, m: int, k: int, seed: int = 0) -> np.ndarray:
    """The A operand for ``kernel``: uint8 for the integer graphs, float in [-1, 1) otherwise."""
    import numpy as np

    rng = np.random.default_rng(seed + 1)
    if kernel.input_dtype == "uint8":
        return rng.integers(0, 256, (m, k), dtype=np.uint8)
    return rng.uniform(-1, 1, (m, k)).astype(np.float32)


def load_gemm(runtime: Runtime, kernel: GemmKernel, m: int, k: int, n: int, folder: Path) -> Runtime:
    """Write ``kernel``'s graph at m x k x n into ``folder``, load it in ``runtime`` and bind its input; the runtime
    is closed again when that fails."""
    import onnx

    path = Path(folder) / f"{runtime.name}-{kernel.graph}-{m}x{k}x{n}.onnx"
    onnx.save(gemm_model(kernel.graph, m, k, n), str(path))
    # the Q/DQ graph is an int8 file: the runtime treats it as a quantized model (as bench does)
    runtime.load(ModelInput(path, "A", (m, k), kernel.input_dtype, precision="int8" if kernel.graph == "qdq" else None))
    try:
        runtime.set_input(gemm_input(kernel, m, k))
    except BaseException:
        runtime.close()
        raise
    return runtime
