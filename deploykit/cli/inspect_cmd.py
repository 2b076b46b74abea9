"""deploykit inspect: what an ONNX graph holds and costs, and (with --runtime) what a runtime fused when it
loaded it."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import batch_option, print_json, resolution_option, stdout_console


def _read_back_targets() -> str:
    """The targets whose runtime graph can be read back (``Runtime.runtime_graph``), from the registry."""
    from deploykit.runtimes.base import ordered_targets

    return ", ".join(name for name, cls in ordered_targets() if cls.reads_back_graph())


@click.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@batch_option(default=None, show_default=False, help="Batch for a dynamic batch axis (for MACs).")
@resolution_option(help="Size of dynamic spatial dims (for MACs).")
@click.option("--runtime", "runtimes", multiple=True, metavar="TARGET",
              help=f"Also load the file in this target's runtime ({_read_back_targets()}) and read back what it "
                   "actually fused / ran in int8; repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def command(file, batch, resolution, runtimes, as_json):
    """Op histogram, parameters, MACs/FLOPs, input/output shapes, precision, Q/DQ count, BatchNormalization
    and activation fusion status, and the attention blocks' softmax path of FILE (an ONNX file)."""
    from deploykit.onnxio.files import load_onnx
    from deploykit.passes.inspect import inspect_model
    from deploykit.runtimes.base import read_back_target, read_runtime_graph

    for rt in runtimes:  # unknown (exit 2), without read-back (exit 2), unavailable (exit 3): before any work
        read_back_target(rt)
    proto = load_onnx(file)
    info = inspect_model(proto, batch=batch, resolution=resolution)
    if runtimes:
        info["runtime"] = {}
        for rt in runtimes:
            info["runtime"][rt] = read_runtime_graph(rt, file)
    if as_json:
        print_json({"file": str(file), **info})
        return
    _print(file, info)


def _counts(d) -> str:
    """``{'QLinearConv': 20, 'QGemm': 1}`` -> ``QLinearConv 20, QGemm 1`` (``none`` when empty)."""
    if not d:
        return "none"
    if isinstance(d, dict):
        return ", ".join(f"{k} {v}" for k, v in d.items())
    return str(d)


def _shape(dims) -> str:
    return "x".join(str(d) for d in dims) if isinstance(dims, (list, tuple)) else str(dims)


def _print(file, info: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = stdout_console()

    def line(text: str) -> None:  # one sentence, one line: the terminal wraps it, not us
        out.print(text, soft_wrap=True, markup=False)

    ins = ", ".join(f"{i['name']} {_shape(i['shape'])} {i['dtype']}" for i in info["inputs"])
    outs = ", ".join(f"{o['name']} {_shape(o['shape'])}" for o in info["outputs"])
    p = info["params"]
    out.print(f"[bold]{escape(str(file))}[/]: opset {info['opset']}, {info['nodes']} nodes, "
              f"precision {info['precision']}", soft_wrap=True)
    line(f"inputs: {ins}")
    line(f"outputs: {outs}")
    line("params: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in p.items()))
    if info["macs"] is not None:
        att = info.get("macs_attention")
        line(f"MACs: {info['macs'] / 1e9:.3f} G (FLOPs {info['flops'] / 1e9:.3f} G)"
             + (f", attention (activation x activation MatMuls) {att / 1e9:.3f} G" if att else "")
             + (f"; {info['macs_note']}" if info.get("macs_note") else ""))
    elif info.get("macs_note"):
        line(f"MACs: unknown; {info['macs_note']}")
    f = info["fusion"]
    line(f"BatchNormalization: {f['batchnorm']} ({f['batchnorm_foldable']} foldable by 'deploykit fuse'); "
         f"activations: {_counts(f['activations'])} ({f['activations_after_compute']} right after a "
         "Conv/Gemm/MatMul/Add)")
    q = info["quantization"]
    if q["dequantize_linear"]:
        line(f"Q/DQ: {q['quantize_linear']} QuantizeLinear, {q['dequantize_linear']} DequantizeLinear "
             f"({q['quantized_activation_tensors']} activations, {q['quantized_weight_tensors']} weights, "
             f"{q['per_channel_weights']} per-channel); types {_counts(q['types'])}; ReLU absorbed into "
             f"{f['quantized_convs_with_zero_floor']} conv output ranges; {q['tensorrt_note']}")
    else:
        line("Q/DQ: none")
    a = info["attention"]
    if a["blocks"]:
        line(f"attention: {a['blocks']} blocks; softmax output int8 in {a['softmax_int8_output']}, "
             f"QLinearSoftmax pattern in {a['qlinear_softmax_pattern']}, TensorRT MHA Q/DQ placement in "
             f"{a['tensorrt_mha_pattern']}")
    t = Table(title="op histogram")
    t.add_column("op")
    t.add_column("count", justify="right")
    for op, n in sorted(info["op_histogram"].items(), key=lambda kv: (-kv[1], kv[0])):
        t.add_row(op, str(n))
    out.print(t)
    for rt, r in (info.get("runtime") or {}).items():
        line(_runtime_line(rt, r))


def _runtime_line(target: str, r: dict) -> str:
    """One line on what a runtime ran (its ``runtime_graph`` read-back); any runtime without its own wording
    gets its scalar facts."""
    kind = r.get("runtime")
    if kind == "onnxruntime":
        return (f"ONNX Runtime ran: {r['nodes']} nodes; {r['convs_with_fused_activation']} of "
                f"{r['float_convs']} float convolutions with a fused activation "
                f"({_counts(r['fused_activations'])}); activations left {_counts(r['standalone_activations'])}; "
                f"int8 kernels {_counts(r['int8_kernels'])}; softmax int8 {r['softmax']['int8']}, float "
                f"{r['softmax']['float']}")
    if kind == "openvino":
        return (f"OpenVINO ran: layers {_counts(r['layers'])}; int8 layers {_counts(r['int8_layers'])}; "
                f"{r['layers_with_fused_activation']} layers with a fused activation; softmax int8 "
                f"{r['softmax']['int8']}, float {r['softmax']['float']}")
    if kind == "tensorrt" and r.get("layers", {}).get("available"):
        return (f"TensorRT ran: {r['layers']['layers']} layers, precision {r['precision']}; layer output precisions "
                f"{_counts(r['layers']['output_precisions'])}")
    facts = "; ".join(f"{k} {_counts(v) if isinstance(v, dict) else v}" for k, v in r.items()
                      if k != "runtime" and isinstance(v, (str, int, float, dict)))
    return f"{target} ran: {facts or 'nothing to report'}"
