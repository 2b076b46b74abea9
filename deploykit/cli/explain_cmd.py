"""deploykit explain: two runs side by side per layer, and where the time between them goes."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import (batch_option, calibration_options, models_dir_option, print_json, quantize_config,
                                  resolution_option, stages, stderr_console, stdout_console)
from deploykit.cli.runtime_options import runtime_option, target_option

DEFAULT_TOP = 12


@click.command("explain")
@click.argument("a_ref", metavar="A")
@click.argument("b_ref", metavar="[B]", required=False)
@click.option("--a", "a_set", multiple=True, metavar="KEY=VALUE",
              help="Set a run field / runtime option / model option of A (precision=fp32, target=openvino, "
                   "threads=4, ...); repeatable.")
@click.option("--b", "b_set", multiple=True, metavar="KEY=VALUE", help="The same for B.")
@target_option(help="Target both runs use unless --a/--b target=... says otherwise.")
@runtime_option("threads")
@resolution_option()
@batch_option()
@calibration_options
@click.option("--iterations", type=click.IntRange(1, 10_000), default=30, show_default=True,
              help="Profiled inferences per run (each layer's time is its median over them).")
@click.option("--top", type=click.IntRange(1, 10_000), default=DEFAULT_TOP, show_default=True,
              help="Layers shown, largest time gap first.")
@models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole explanation as JSON.")
def command(a_ref, b_ref, a_set, b_set, target, threads, resolution, batch, iterations, top, models_dir, as_json,
            **calib):
    """Why is B slower (or faster) than A? Profile both per layer on their targets, map every executed node back
    to the float ONNX graph, and split the time gap into layers that ran int8, layers that ran in float, Q/DQ,
    reformats, fusions one run has and the other lost, and what could not be mapped.

    \b
    deploykit explain deit_small -t ort --resolution 224          fp32 (A) vs int8 (B), the default pair
    deploykit explain deit_small --a precision=fp32 --b precision=int8 -t openvino
    deploykit explain resnet18 --b target=openvino                 one precision, two targets
    deploykit explain runs/a/spec.json runs/b/report.json           two run specs (or reports that carry one)
    deploykit explain model.onnx model_int8.onnx                    two ONNX files

    A and B are model names, ONNX files, or run spec / report JSON files; with A alone, B is the same model. A
    model name alone (no --a / --b) compares fp32 (A) with int8 (B); otherwise a model side without a precision runs
    fp32. The int8 build is the quantize
    pipeline's (cached); --calib-data defaults to synthetic here (the kernels that run, and so the time, do not
    depend on the calibration values; the accuracy does). Layer times come from the runtime's profiler (as in
    'bench --per-layer'): their sum runs above the measured latency by the profiler's cost per node.
    """
    from deploykit.explain.diff import explain

    a, b = _specs(a_ref, b_ref, a_set, b_set, target=target, threads=threads, resolution=resolution, batch=batch,
                  calib=calib)
    with stages(stderr_console(), "building and profiling A and B") as say:
        e = explain(a, b, iterations=iterations, progress=say,
                    models_dir=Path(models_dir) if models_dir else None)
    if as_json:
        print_json(e.to_json())
        return
    render(e, top)


def _pairs(values, flag: str) -> dict:
    from deploykit.core.errors import UsageError

    out = {}
    for v in values:
        for item in (p.strip() for p in v.split(",") if p.strip()):
            key, sep, val = item.partition("=")
            if not sep or not key.strip():
                raise UsageError(f"{flag} {item!r}: expected KEY=VALUE (e.g. {flag} precision=int8)")
            out[key.strip()] = val.strip()
    return out


def _specs(a_ref, b_ref, a_set, b_set, *, target, threads, resolution, batch, calib):
    """The two run specs of the command line (see the command's help)."""
    from deploykit.core.errors import UsageError
    from deploykit.spec.run import RunSpec, from_values, read_spec

    a_vals, b_vals = _pairs(a_set, "--a"), _pairs(b_set, "--b")
    if calib.get("calib_data") is None:
        calib["calib_data"] = "synthetic"
    qcfg = quantize_config(**calib)
    b_ref = b_ref or a_ref
    common = {"target": target, "threads": threads, "resolution": resolution, "batch": batch}
    common = {k: v for k, v in common.items() if v is not None}
    # one model, nothing said about either side: the question users ask, fp32 vs int8; otherwise a side without a
    # precision runs fp32 (like for like: OpenVINO would pick bf16 on a CPU with bf16 units)
    pair = not a_vals and not b_vals

    def build(ref: str, vals: dict, default_precision: str | None) -> RunSpec:
        if ref.lower().endswith(".json"):
            base = read_spec(ref)
            if vals:
                return from_values(vals, base=base, where=ref, quantize=qcfg)
            return base
        is_file = Path(ref).suffix.lower() in (".onnx", ".xml")
        values = {"model": ref, **common}
        if not is_file and "precision" not in vals and default_precision:
            values["precision"] = default_precision
        values.update(vals)
        return from_values(values, base=RunSpec(model=ref), quantize=qcfg)

    same = b_ref == a_ref and not a_ref.lower().endswith(".json")
    a = build(a_ref, a_vals, "fp32")
    b = build(b_ref, b_vals, "int8" if same and pair else "fp32")
    if a.to_dict() == b.to_dict():
        raise UsageError("A and B are the same run: give a second model / file, or tell them apart with --a / --b "
                         "(e.g. --b precision=int8, --b target=openvino)")
    return a, b


def render(e, top: int) -> None:
    from deploykit.cli.tables import Col, print_fitted
    from deploykit.explain.diff import BUCKETS
    from deploykit.report.numbers import ms

    con = stdout_console()
    cols = [Col("node", "node (float graph)", priority=0), Col("op", "op", priority=1),
            Col("ran_a", "A ran", priority=4), Col("ran_b", "B ran", priority=3),
            Col("a_ms", "A ms", right=True, priority=2), Col("b_ms", "B ms", right=True, priority=2),
            Col("delta", "B-A ms", right=True, priority=0), Col("bucket", "bucket", priority=5)]

    def ran(n, side):
        ops = "/".join(n[f"{side}_ops"]) or "-"
        return f"{n[f'ran_{side}']} {ops}" if n[f"{side}_ops"] else n[f"ran_{side}"]

    rows = [{"node": n["node"], "op": n["op_type"] or "?", "ran_a": ran(n, "a"), "ran_b": ran(n, "b"),
             "a_ms": ms(n["a_ms"]), "b_ms": ms(n["b_ms"]), "delta": _signed(n["delta_ms"]), "bucket": n["bucket"]}
            for n in e.top(top)]
    print_fitted(con, cols, rows, title=f"A = {e.a.label} ({e.a.target}), B = {e.b.label} ({e.b.target}): "
                                        f"the {len(rows)} layers with the largest gap")
    fam_cols = [Col("op", "op type", priority=0), Col("n", "nodes", right=True, priority=3),
                Col("ran_b", "B ran as", priority=2), Col("a_ms", "A ms", right=True, priority=1),
                Col("b_ms", "B ms", right=True, priority=1), Col("delta", "B-A ms", right=True, priority=0)]
    fam_rows = [{"op": f["op_type"], "n": str(f["nodes"]), "ran_b": e._ran_as(f["op_type"], "b"),
                 "a_ms": ms(f["a_ms"]), "b_ms": ms(f["b_ms"]), "delta": _signed(f["delta_ms"])}
                for f in e.families()[:8]]
    print_fitted(con, fam_cols, fam_rows, title="by op type of the float graph")
    b_cols = [Col("bucket", "where the gap goes", priority=0), Col("delta", "B-A ms", right=True, priority=0)]
    b_rows = [{"bucket": _BUCKET_TEXT[k], "delta": _signed(e.buckets[k])} for k in BUCKETS]
    b_rows.append({"bucket": f"total (profiled {ms(e.a.total_ms)} -> {ms(e.b.total_ms)} ms)",
                   "delta": _signed(e.delta_ms)})
    print_fitted(con, b_cols, b_rows, title=None)
    con.print(e.verdict(), highlight=False, markup=False, soft_wrap=True)
    slow = e.slower_in_int8()
    if slow:
        shown = ", ".join(slow[:6]) + (f" and {len(slow) - 6} more" if len(slow) > 6 else "")
        con.print(f"slower in int8 than in float ({len(slow)}): {shown} -- quantize --exclude keeps them float",
                  highlight=False, markup=False, soft_wrap=True)
    for note in e.notes:
        con.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)


_BUCKET_TEXT = {"int8_layers": "layers that ran int8", "float_layers": "layers in float in both",
                "qdq": "Q/DQ (QuantizeLinear / DequantizeLinear)", "reformat": "reformats (reorders, layout)",
                "fusion": "fusions one run has and the other lost", "unmapped": "unmapped"}


def _signed(v: float) -> str:
    from deploykit.report.numbers import ms

    return ("+" if v >= 0 else "") + ms(v)
