"""The ParC family and VanillaNet-6: registration, published sizes, pairs that differ only by ParC, the same
function for every impl, export + ONNX Runtime + OpenVINO for every model and impl, int8 QDQ for the conv and
matmul impls, and VanillaNet's deploy-time fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploykit.models import create_model, get_cfg, list_models, model_stats

PAIRS = {"parc_convnext_xt": "convnext_xt", "parc_resnet50": "resnet50", "parc_mobilenet_v2": "mobilenet_v2",
         "parc_net_s": "mobilevit_s"}
IMPLS = ("conv", "fft", "matmul")
RES = 64  # every ParC model's smallest convenient input (ParC-Net-S needs a multiple of 32, >= 64)


# ------------------------------------------------------------------------------------------- registry
def test_parc_models_are_registered_with_the_impl_option():
    parc = {c.name for c in list_models("parc")}
    assert set(PAIRS) <= parc
    for name in PAIRS:
        cfg = get_cfg(name)
        assert cfg.family == "parc" and dict(cfg.options)["parc_impl"] == IMPLS
        assert cfg.option_defaults()["parc_impl"] == "conv"
    assert get_cfg("convnext_xt").family == "cnn" and get_cfg("vanillanet_6").family == "cnn"


@pytest.mark.parametrize("name", ["convnext_xt", "parc_convnext_xt", "parc_resnet50", "parc_net_s", "vanillanet_6"])
def test_sizes_match_the_published_figures(name, tmp_path):
    """Parameters (and VanillaNet's MACs) as `deploykit models` computes them, within 3% of the papers."""
    published = dict(get_cfg(name).published)
    stats = model_stats(name, 224, cache_dir=tmp_path)
    assert stats["params"] / 1e6 == pytest.approx(published["params_m"], rel=0.03)
    if "gmacs" in published:
        assert stats["macs"] / 1e9 == pytest.approx(published["gmacs"], rel=0.03)
    real = sum(p.numel() for p in create_model(name).parameters())
    assert stats["params"] == real  # the meta-device count is the real model's


def _replaced_prefixes(model) -> list[str]:
    from deploykit.models.layers.parc import ParC, ParCHW

    blocks = (ParCHW,) + tuple({type(m) for m in model.modules() if type(m).__name__ == "ParCNetBlock"})
    out = [name for name, m in model.named_modules() if isinstance(m, blocks)]
    loose = [name for name, m in model.named_modules() if isinstance(m, ParC)]
    return out or loose


@pytest.mark.parametrize("parc_name,plain_name", sorted(PAIRS.items()))
def test_each_pair_differs_only_where_parc_goes(parc_name, plain_name):
    """Outside the modules that hold ParC, the two models have the same parameters and buffers (names and
    shapes): the same skeleton, stem, head and every other block."""
    parc = create_model(parc_name, resolution=RES, device="meta")
    plain = create_model(plain_name, resolution=RES, device="meta")
    prefixes = _replaced_prefixes(parc)
    assert prefixes, "no ParC module found"

    def outside(model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()
                if not any(k == p or k.startswith(p + ".") for p in prefixes)}

    assert outside(parc) == outside(plain)
    assert set(parc.state_dict()) != set(plain.state_dict())


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_every_impl_is_the_same_function_of_the_same_weights(name):
    """Float64, 64 x 64 input (so every ParC kernel is resized): conv, fft and matmul agree to 1e-10."""
    models = {impl: create_model(name, resolution=RES, options={"parc_impl": impl}).double() for impl in IMPLS}
    ref_state = models["conv"].state_dict()
    for impl in ("fft", "matmul"):
        state = models[impl].state_dict()
        assert state.keys() == ref_state.keys() and all(torch.equal(state[k], ref_state[k]) for k in state)
    x = torch.randn(2, 3, RES, RES, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = {impl: m(x) for impl, m in models.items()}
    scale = outs["conv"].abs().max()
    assert float(outs["conv"].std()) > 0
    for impl in ("fft", "matmul"):
        assert float((outs[impl] - outs["conv"]).abs().max() / scale) <= 1e-10, impl


# ------------------------------------------------------------------------------------------- export
@pytest.fixture(scope="session")
def parc_artifact(store):
    """Export (once per session) a model at 64 x 64 with the given options into the shared store."""
    from deploykit.core.config import ExportConfig
    from deploykit.export.exporter import export_model
    from deploykit.passes.fuse import export_transform

    cache = {}

    def get(name, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = export_model(ExportConfig(model=name, resolution=RES, options=tuple(options.items()),
                                                   models_dir=store), fuse=export_transform)
        return cache[key]

    return get


def _openvino_outputs(path, x):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled([x])[0]


# Every model x every impl, except parc_net_s with fft/matmul: its 36 ParC layers are the depthwise form the
# other models and tests/integration/test_models_parc_layer_export.py already export with every impl, and those two exports alone took
# ~4 minutes on 2 busy cores (test_every_impl_is_the_same_function_of_the_same_weights covers parc_net_s's impls
# in PyTorch; benchmarks/parc_pairs.py exports and runs all of them at 224).
EXPORT_CASES = [(name, impl) for name in sorted(PAIRS) for impl in IMPLS if name != "parc_net_s" or impl == "conv"]


@pytest.mark.slow
@pytest.mark.parametrize("name,impl", EXPORT_CASES)
def test_exports_and_runs_on_onnxruntime_and_openvino(parc_artifact, name, impl):
    """deploykit export verifies the graph in ONNX Runtime against PyTorch (or writes nothing); OpenVINO
    (fp32 forced) reads the same file and matches PyTorch too."""
    from deploykit.export import artifacts
    from deploykit.onnxio.reference import load_reference
    from deploykit.onnxio.verify import compare

    res = parc_artifact(name, parc_impl=impl)
    assert f"impl-{impl}" in res.path.name
    ver = res.manifest["verification"]
    assert ver["passed"] and ver["runs"][0]["rel_err"] <= 1e-4 and ver["runs"][0]["cosine"] >= 0.99999
    hist = res.manifest["onnx"]["op_histogram"]
    assert ("DFT" in hist) == (impl == "fft")
    x, ref = load_reference(artifacts.reference_path(res.path, 0, 1))
    got = compare(ref, _openvino_outputs(res.path, x))
    assert got["rel_err"] <= 1e-4 and got["cosine"] >= 0.99999 and got["top1"] == 1.0


def test_a_model_at_another_resolution_matches_across_impls_on_onnxruntime(parc_artifact):
    """ParC-MobileNetV2's ParC layers (designed for 14 x 14 and 7 x 7 maps at 224) see 4 x 4 and 2 x 2 maps at 64:
    the three exported graphs give the same logits in ONNX Runtime."""
    import onnxruntime as ort

    from deploykit.onnxio.reference import make_input
    from deploykit.onnxio.verify import compare

    x = make_input((1, 3, RES, RES), seed=5)
    outs = {}
    for impl in IMPLS:
        sess = ort.InferenceSession(str(parc_artifact("parc_mobilenet_v2", parc_impl=impl).path),
                                    providers=["CPUExecutionProvider"])
        outs[impl] = sess.run(None, {"input": x})[0]
    for impl in ("fft", "matmul"):
        assert compare(outs["conv"], outs[impl])["rel_err"] <= 1e-4


# ------------------------------------------------------------------------------------------- int8
def _parc_nodes(proto, impl):
    """The graph nodes that compute ParC: non-square Conv kernels (conv) or MatMuls (matmul impl)."""
    inits = {i.name: tuple(i.dims) for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    nodes = []
    for n in proto.graph.node:
        if impl == "matmul" and n.op_type == "MatMul":
            nodes.append(n)
        elif impl == "conv" and n.op_type == "Conv":
            w = n.input[1]
            src = producer.get(w)
            shape = inits.get(src.input[0]) if src is not None and src.op_type == "DequantizeLinear" else inits.get(w)
            if shape and len(shape) == 4 and shape[2] != shape[3]:
                nodes.append(n)
    return nodes, producer


@pytest.mark.parametrize("impl", ["conv", "matmul"])
def test_int8_qdq_quantization_works_for_conv_and_matmul(parc_artifact, tmp_path, impl):
    """ONNX Runtime's quantize_static (QDQ, int8, per-channel weights) quantizes the ParC Conv / MatMul nodes
    themselves, and the int8 model runs on ONNX Runtime and OpenVINO close to the fp32 PyTorch output."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from deploykit.export import artifacts
    from deploykit.onnxio.reference import load_reference, make_input
    from deploykit.onnxio.verify import compare

    res = parc_artifact("parc_mobilenet_v2", parc_impl=impl)
    x, ref = load_reference(artifacts.reference_path(res.path, 0, 1))

    class Calib(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": make_input(x.shape, 100 + i)} for i in range(8)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path / f"int8_{impl}.onnx"
    quantize_static(str(res.path), str(out), Calib(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)
    proto = onnx.load(str(out))
    nodes, producer = _parc_nodes(proto, impl)
    assert len(nodes) == 8  # 4 ParC-H | ParC-W blocks
    for n in nodes:  # data and weights both arrive through DequantizeLinear: the op runs in int8
        assert all(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input[:2]), n.name
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for got in (sess.run(None, {"input": x})[0], _openvino_outputs(out, x)):
        c = compare(ref, got)
        assert c["cosine"] >= 0.99, c


@pytest.mark.parametrize("impl", ["conv", "fft"])
def test_deploykit_int8_parc_resnet50_runs_on_openvino(parc_artifact, store, impl):
    """`deploykit quantize` (cpu profile: uint8 activations) on ParC-ResNet50 makes a file OpenVINO compiles
    (in a child process first) and runs close to fp32. conv: the Concat that joins ParC-H and ParC-W feeds the
    BatchNorm's float Mul, so it stays float (its Q/DQ made OpenVINO 2026.4's CPU plugin die in
    compile_model). fft: the frequency domain (forward DFT ... inverse DFT) stays float (Q/DQ on the dense
    spectral MatMuls made OpenVINO refuse the graph), and every Conv outside it is still int8."""
    import onnx

    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.pipeline import quantize_model

    res = parc_artifact("parc_resnet50", parc_impl=impl)
    q = quantize_model(str(res.path), QuantizeConfig(calib_data="synthetic", calib_size=4, check_openvino=True,
                                                     fidelity_samples=2), models_dir=store)
    plan = q.report["plan"]
    proto = onnx.load(str(q.path))
    producer = {o: n for n in proto.graph.node for o in n.output}
    quantized_inputs = {n.input[0] for n in proto.graph.node if n.op_type == "QuantizeLinear"}
    if impl == "conv":
        assert len(plan["float_concats"]) == 4  # one per ParC bottleneck (layer3 blocks 3-5, layer4 block 2)
        concat_out = {n.output[0] for n in proto.graph.node if n.name in plan["float_concats"]}
        assert len(concat_out) == 4 and not concat_out & quantized_inputs
    else:
        spectral = set(plan["nodes_to_exclude"]) - set(plan["float_concats"])  # no other exclusions here
        assert len(spectral) == plan["spectral"] > 0 and spectral <= {n.name for n in proto.graph.node}
        assert not any(producer[i].name in spectral for i in quantized_inputs if i in producer)
        assert not [n.name for n in proto.graph.node if n.op_type == "DFT" and
                    producer.get(n.input[0]) is not None and producer[n.input[0]].op_type == "DequantizeLinear"]
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert convs and all(producer[n.input[0]].op_type == "DequantizeLinear" for n in convs)  # every Conv is int8
    assert q.report["openvino"]["cosine"] >= 0.99, q.report["openvino"]


# ------------------------------------------------------------------------------------------- VanillaNet
def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_vanillanet_deploy_form_is_the_training_form_fused():
    """BN folded into the activation's depthwise conv and each 1x1 pair merged: the same function (float64,
    1e-10), no BatchNorm left, one conv per layer, no shortcut anywhere."""
    from deploykit.models.vanillanet import build_vanillanet

    dims, strides = [16, 32, 48, 64, 64], [2, 2, 2, 1]
    torch.manual_seed(0)
    train = build_vanillanet(dims, strides, form="train").double().eval()
    _randomize_bn(train)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        before = train(x)
        deploy = train.switch_to_deploy()
        after = deploy(x)
    assert float((after - before).abs().max() / before.abs().max()) <= 1e-10
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())
    convs = [m for m in deploy.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + len(strides) + 1  # stem, one 1x1 per layer, classifier
    with pytest.raises(ValueError, match="slope"):
        t = build_vanillanet(dims, strides, form="train")
        t.stages[0].act_learn = 0.5
        t.switch_to_deploy()


def test_vanillanet_registered_forms(tmp_path):
    deploy = model_stats("vanillanet_6", 224, cache_dir=tmp_path)
    train = model_stats("vanillanet_6", 224, options={"form": "train"}, cache_dir=tmp_path)
    assert deploy["params"] < train["params"] and deploy["macs"] < train["macs"]
    m = create_model("vanillanet_6", resolution=32)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())
    with torch.no_grad():
        y = m(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 1000) and float(y.std()) > 1e-3  # variance-preserving init: logits are not ~0


def test_vanillanet_exports_and_runs_on_openvino(store):
    from deploykit.core.config import ExportConfig
    from deploykit.export import artifacts
    from deploykit.export.exporter import export_model
    from deploykit.passes.fuse import export_transform
    from deploykit.onnxio.reference import load_reference
    from deploykit.onnxio.verify import compare

    res = export_model(ExportConfig(model="vanillanet_6", resolution=32, models_dir=store), fuse=export_transform)
    assert res.manifest["verification"]["passed"]
    hist = res.manifest["onnx"]["op_histogram"]
    assert "BatchNormalization" not in hist and hist["Conv"] == 1 + 5 + 4 + 1  # stem, 5 activations, 4 layers, cls
    x, ref = load_reference(artifacts.reference_path(res.path, 0, 1))
    got = compare(ref, _openvino_outputs(res.path, x))
    assert got["rel_err"] <= 1e-4 and np.isfinite(ref).all()
