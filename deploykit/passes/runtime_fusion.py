"""What each runtime actually fused and ran in int8 when it loaded a graph -- read back from the runtime, not
guessed from the ONNX file:

* ONNX Runtime: the optimized graph it executes (``SessionOptions.optimized_model_filepath``): FusedConv /
  NCHWc Conv nodes carrying an ``activation`` attribute (a ReLU/Clip fused into the convolution), the int8
  kernels (QLinearConv, QLinearMatMul, QGemm, QLinearAdd, QLinearSoftmax, ...) and what stayed float.
* OpenVINO: the compiled model's runtime graph (``CompiledModel.get_runtime_model()``): every executed layer
  with its ``runtimePrecision`` and the ``originalLayersNames`` merged into it (e.g. Conv + Add + Relu).
* TensorRT: the built engine's layer information (``IEngineInspector``), when TensorRT and an NVIDIA GPU are
  present.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

from deploykit.core.errors import InputError, UnavailableError, squash
from deploykit.core.lazy import require

ORT_INT8_KERNELS = (
    "QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSoftmax", "QLinearSigmoid",
    "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearReduceMean",
    "QLinearWhere", "QLinearReduceMean", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "ConvInteger",
    "MatMulInteger", "NhwcMaxPool", "QAttention", "QOrderedAttention",
)
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Gelu", "FastGelu",
               "QuickGelu", "Elu", "Selu")
_ORT_CONVS = ("Conv", "FusedConv", "NhwcFusedConv")


def ort_runtime_graph(source, *, graph_opt: str = "all", threads: int = 1) -> dict:
    """Load ``source`` (path or serialized bytes) in ONNX Runtime's CPU provider at ``graph_opt`` and summarise
    the optimized graph it runs."""
    import onnx

    from deploykit.onnxio.session import cpu_session

    with tempfile.TemporaryDirectory(prefix="dk-ortopt-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        cpu_session(source, graph_opt=graph_opt, threads=threads, what="the graph", optimized_model_path=str(out))
        opt = onnx.load(str(out), load_external_data=False)
    return summarize_ort_graph(opt, graph_opt)


def summarize_ort_graph(opt, graph_opt: str = "all") -> dict:
    from deploykit.onnxio.files import op_histogram
    from deploykit.passes.graph import attr

    hist = op_histogram(opt)
    convs = [n for n in opt.graph.node if n.op_type in _ORT_CONVS]
    fused_act = Counter()
    for n in convs + [n for n in opt.graph.node if n.op_type == "FusedGemm"]:
        act = attr(n, "activation")
        if act:
            fused_act[act.decode() if isinstance(act, bytes) else str(act)] += 1
    by_type = Counter(n.op_type for n in opt.graph.node)
    int8 = {k: by_type[k] for k in ORT_INT8_KERNELS if by_type.get(k)}
    return {
        "runtime": "onnxruntime",
        "graph_optimization": graph_opt,
        "nodes": sum(hist.values()),
        "op_histogram": hist,
        "float_convs": len(convs),
        "convs_with_fused_activation": sum(fused_act.values()),
        "fused_activations": dict(fused_act),
        "standalone_activations": {a: by_type[a] for a in ACTIVATIONS if by_type.get(a)},
        "int8_kernels": int8,
        "softmax": {"int8": by_type.get("QLinearSoftmax", 0), "float": by_type.get("Softmax", 0)},
        "quantize_ops_left": {k: by_type[k] for k in ("QuantizeLinear", "DequantizeLinear") if by_type.get(k)},
        "note": "NCHWc nodes (com.microsoft.nchwc) are the layout ONNX Runtime chose for this CPU" if any(
            n.domain == "com.microsoft.nchwc" for n in opt.graph.node) else None,
    }


def openvino_runtime_graph(path, *, precision_hint: str = "f32", threads: int = 1, device: str = "CPU") -> dict:
    """Compile ``path`` (ONNX or OpenVINO IR) with OpenVINO (``INFERENCE_PRECISION_HINT`` = ``precision_hint``;
    f32 keeps an "fp32" run from silently running bf16) and summarise the runtime graph it executes."""
    ov = require("openvino", "reading OpenVINO's runtime graph")
    core = ov.Core()
    op_types = _onnx_op_types(path)
    config = {"INFERENCE_PRECISION_HINT": precision_hint, "INFERENCE_NUM_THREADS": threads}
    if _is_qdq(path):  # an int8 QDQ graph: compile in a child first (OpenVINO's plugin has crashed on some)
        from deploykit.runtimes.openvino import check_compiles

        check_compiles(Path(path), device, config)
    try:
        model = core.read_model(str(path))
        compiled = core.compile_model(model, device, config)
    except Exception as exc:
        raise InputError(f"OpenVINO cannot compile {path}: {squash(exc)}") from None
    return summarize_openvino_runtime(compiled.get_runtime_model(), op_types, precision_hint)


def _is_qdq(path) -> bool:
    if not str(path).endswith(".onnx"):
        return False
    from deploykit.onnxio.files import load_onnx, op_types

    return "QuantizeLinear" in op_types(load_onnx(Path(path), load_external_data=False))


def _onnx_op_types(path) -> dict[str, str]:
    """ONNX node name -> op type (OpenVINO's originalLayersNames are the ONNX node names)."""
    if not str(path).endswith(".onnx"):
        return {}
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {n.name: n.op_type for n in m.graph.node if n.name}


def summarize_openvino_runtime(runtime_model, onnx_types: dict[str, str] | None = None,
                               precision_hint: str = "f32") -> dict:
    onnx_types = onnx_types or {}
    layers: Counter = Counter()
    precisions: dict[str, Counter] = {}
    fused: Counter = Counter()
    conv_with_act = 0
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()

        def get(key, default=""):
            return info[key].astype(str) if key in info else default

        ltype = get("layerType", op.get_type_name())
        if ltype in ("Const", "Input", "Output", "Parameter", "Result"):
            continue
        prec = get("runtimePrecision", "?")
        layers[ltype] += 1
        precisions.setdefault(ltype, Counter())[prec] += 1
        names = [n for n in get("originalLayersNames").split(",") if n]
        if len(names) > 1:
            merged = [onnx_types.get(n, "?") for n in names[1:]]
            for t in merged:
                fused[t] += 1
            if ltype in ("Convolution", "FullyConnected") and any(t in ACTIVATIONS for t in merged):
                conv_with_act += 1
    int8 = {lt: sum(c for p, c in pc.items() if p in ("u8", "i8")) for lt, pc in precisions.items()}
    int8 = {k: v for k, v in int8.items() if v}

    def split(lt):
        pc = precisions.get(lt, Counter())
        q = sum(c for p, c in pc.items() if p in ("u8", "i8"))
        return {"int8": q, "float": sum(pc.values()) - q}

    return {
        "runtime": "openvino",
        "inference_precision_hint": precision_hint,
        "layers": dict(layers.most_common()),
        "runtime_precisions": {lt: dict(pc) for lt, pc in precisions.items()},
        "int8_layers": int8,
        "fused_into_other_layers": dict(fused.most_common()),
        "layers_with_fused_activation": conv_with_act,
        "softmax": split("Softmax"),
        "matmul": split("MatMul"),
        "fake_quantize_executed": layers.get("FakeQuantize", 0),
    }


def tensorrt_runtime_graph(path, *, int8: bool | None = None) -> dict:
    """Build a TensorRT engine from the ONNX file and list its layers (types, precisions, fused names).
    Needs the ``trt`` extra and an NVIDIA GPU; a Q/DQ file builds in explicit-quantization mode."""
    trt = require("tensorrt", "reading TensorRT's layer information")
    import json

    logger = trt.Logger(trt.Logger.ERROR)
    try:
        builder = trt.Builder(logger)
    except Exception as exc:  # no CUDA device / driver
        raise UnavailableError(f"TensorRT cannot start a builder here (NVIDIA GPU needed): {exc}") from None
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT cannot parse {path}: {errs[:300]}")
    config = builder.create_builder_config()
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
    engine_bytes = builder.build_serialized_network(network, config)
    if engine_bytes is None:
        raise InputError(f"TensorRT failed to build an engine from {path}")
    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    inspector = engine.create_engine_inspector()
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    layers = info.get("Layers", [])
    types = Counter(layer.get("LayerType", "?") if isinstance(layer, dict) else "?" for layer in layers)
    return {"runtime": "tensorrt", "layers": len(layers), "layer_types": dict(types.most_common()),
            "layer_names": [layer.get("Name") if isinstance(layer, dict) else str(layer) for layer in layers]}
