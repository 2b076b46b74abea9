"""deploykit quantize: int8 post-training quantization with fidelity, softmax path and sensitivity reports."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import (POSITIVE, batch_option, calibration_options, check_model_flags, check_weights,
                                  expand_models, model_opt_option, model_option_flags, model_options,
                                  models_dir_option, opset_option, pop_preprocess, preprocess_options, print_json,
                                  quantize_config, resolution_option, resolve_models_dir, seed_option, stages,
                                  stderr_console, weights_options)
from deploykit.cli.common import FiniteFloatRange  # nan / inf refused
from deploykit.cli.runtime_options import runtime_option, target_option


@click.command("quantize")
@click.argument("model")
@calibration_options
@click.option("--quantizer", type=click.Choice(["ort", "nncf"]), default="ort", show_default=True,
              help="ort: ONNX Runtime static QDQ (an ONNX file for ORT, OpenVINO and TensorRT); nncf: NNCF for "
                   "OpenVINO (IR .xml/.bin).")
@click.option("--per-tensor", is_flag=True, help="Per-tensor weight scales instead of per-channel.")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None,
              help="Labelled images, one sub-folder per class (sorted names = class indices): real top-1/top-5 "
                   "of fp32 and int8 side by side.")
@click.option("--eval-size", type=POSITIVE, default=None, help="Evaluate on this many images (seeded sample).")
@click.option("--sensitivity", is_flag=True, help="Per-tensor SQNR against fp32, worst first (what to --exclude).")
@click.option("--top", type=POSITIVE, default=10, show_default=True, help="Rows of the sensitivity table shown.")
@click.option("--check-openvino", is_flag=True, help="Also run the QDQ file in OpenVINO and check its fidelity.")
@click.option("--crop-pct", type=FiniteFloatRange(0, 1, min_open=True), default=None,
              help="Resize the shorter side to resolution / crop-pct, then center-crop [default: 0.875].")
@preprocess_options(crop=False)
@click.option("--fidelity-samples", type=POSITIVE, default=16, show_default=True,
              help="Held-out inputs the int8 model is compared with fp32 on.")
@batch_option()
@resolution_option()
@opset_option()
@weights_options()
@model_opt_option(help="Model option.")
@model_option_flags
@seed_option(help="Seed of the weights and of the data sampling.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write here instead of <models-dir>/<model>/int8_....onnx (.xml for nncf).")
@models_dir_option
@click.option("--force", is_flag=True, help="Rebuild even if an int8 artifact with the same settings exists.")
@click.option("--no-verify", is_flag=True, help="Keep the file even when it is below the fidelity floor.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and this run's report as JSON.")
@target_option(help="The target --softmax auto measures both softmax builds on.")
@runtime_option("threads", help="Threads of the --softmax auto measurement [default: the target's].")
def command(model, calib_data, calib_size, calib_method, softmax, qdq_profile, exclude, reduce_range, quantizer,
            per_tensor, eval_data, eval_size, sensitivity, top, check_openvino, crop_pct, fidelity_samples, batch,
            resolution, opset, weights, pretrained, model_opts, seed, output, models_dir, force, no_verify,
            as_json, target, threads, **flags):
    """Quantize MODEL (a model name: from 'deploykit models', any timm:NAME or tv:NAME, or a glob of names such as
    'parc_*' for each match; or an fp32 .onnx file) to int8.

    Calibrates on --calib-data images preprocessed like the model's inputs, writes a QDQ ONNX file (or OpenVINO
    IR with --quantizer nncf) into the artifact store with a manifest, and checks it against the fp32 model
    on held-out inputs (top-1 agreement, cosine, max-abs error, SQNR). The same settings and calibration
    data twice reuse the artifact; --force rebuilds.
    """
    from deploykit.core.config import ExportConfig
    from deploykit.core.errors import UsageError
    from deploykit.models.select import is_model_name
    from deploykit.quantize.pipeline import QuantizeVerificationError, quantize_model

    check_weights(weights, pretrained)
    names = expand_models([model])
    if output and len(names) > 1:
        raise UsageError(f"--output names one file but {model!r} matches {len(names)} models")
    preprocess = pop_preprocess(flags)
    check_model_flags(names, flags)
    qcfg = quantize_config(calib_data=calib_data, calib_size=calib_size, calib_method=calib_method, softmax=softmax,
                           qdq_profile=qdq_profile or "cpu", exclude=exclude, reduce_range=reduce_range,
                           quantizer=quantizer,
                           per_channel=not per_tensor, eval_data=str(eval_data) if eval_data else None,
                           eval_size=eval_size, sensitivity=sensitivity, check_openvino=check_openvino,
                           crop_pct=crop_pct, fidelity_samples=fidelity_samples, seed=seed,
                           output=str(output) if output else None, force=force, verify=not no_verify,
                           preprocess=tuple(preprocess.items()))
    mdir = resolve_models_dir(models_dir)
    if output is not None:
        from deploykit.core.atomic import check_output_file

        check_output_file(output, "--output")
    auto_options = None
    if qcfg.softmax == "auto":  # measured on the target: it must run here and profile layers, before any work
        from deploykit.runtimes.base import get_runtime
        from deploykit.runtimes.options import RuntimeOptions

        cls = get_runtime(target)
        cls.ensure_available()
        cls.ensure_profiles_layers()
        auto_options = RuntimeOptions(threads=threads, precision=cls.int8_float_precision)
    err = stderr_console()
    results = []
    for name in names:
        export = None
        if is_model_name(name):
            export = ExportConfig(model=name, batch=batch, resolution=resolution, opset=opset, seed=seed,
                                  weights=str(weights) if weights else None, pretrained=pretrained,
                                  options=model_options(model_opts, **flags,
                                                        model=name if len(names) > 1 else None),
                                  models_dir=mdir)
        try:
            with stages(err, f"quantizing {name}") as say:
                cfg, auto = qcfg, None
                if auto_options is not None:
                    from deploykit.bench.pipeline import resolve_softmax

                    cfg, auto = resolve_softmax(name, target, auto_options, qcfg, batch=batch, resolution=resolution,
                                                export=export, say=say, preprocess=preprocess or None)
                result = quantize_model(name, cfg, export=export, batch=batch, resolution=resolution,
                                        models_dir=mdir, progress=say)
                if auto is not None:
                    result.report["softmax_auto"] = auto
        except QuantizeVerificationError as exc:
            _print_report(err, exc.report, top)
            raise
        for w in result.warnings:
            err.print(f"[yellow]warning:[/] {w}")
        results.append(result)
        if not as_json:
            verb = "reused" if result.reused else f"quantized in {result.seconds:.1f} s"
            err.print(f"[bold]{result.path}[/] ({verb}; {result.manifest['bytes'] / 1e6:.1f} MB)")
            _print_report(err, result.report, top)
            click.echo(str(result.path))
    if as_json:
        rows = [{"path": str(r.path), "reused": r.reused, "manifest": r.manifest, "report": r.report}
                for r in results]
        print_json(rows[0] if len(rows) == 1 else rows)


def _fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def _floor(f: dict, key: str) -> str:
    """`` (floor X)``: the fidelity floor a metric was compared with (the max-abs floor is relative to the
    output range, so it stands next to the relative value)."""
    v = (f.get("tolerance") or {}).get(key)
    return f" (floor {v:g})" if v is not None else ""


def _print_report(err, rep: dict, top: int) -> None:
    from rich.table import Table

    auto = rep.get("softmax_auto")
    if auto and auto.get("decision"):
        i, fl = auto["int8"], auto["float"]
        err.print(f"--softmax auto on {auto['target']}: {auto['decision']} (softmax + P.V matmul + Q/DQ: int8-softmax "
                  f"build {i['cost_ms']:.3f} ms, float-softmax build {fl['cost_ms']:.3f} ms"
                  f"{'; cached decision' if auto.get('cached') else ''})")
    elif auto:
        err.print(f"--softmax auto: the default ({auto.get('reason')})")
    f = rep.get("fidelity")
    if f:
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "n/a"}[f.get("passed")]
        err.print(f"fidelity vs fp32 on {f['samples']} inputs ({f.get('runtime')}): "
                  f"top-1 agreement {_fmt(f['top1'], '.3f')}, "
                  f"top-5 {_fmt(f.get('top5_agreement'), '.3f')}, "
                  f"cosine min {_fmt(f['cosine'])}{_floor(f, 'min_cosine')} "
                  f"/ mean {_fmt(f.get('cosine_mean'))}, max-abs {_fmt(f['max_abs'], '.3g')} = "
                  f"{_fmt(f['rel_err'], '.3f')} of the output range{_floor(f, 'rtol')}, "
                  f"SQNR {_fmt(f['sqnr_db'], '.1f')} "
                  f"dB -> {verdict}")
    ov = rep.get("openvino")
    if ov:
        err.print(f"OpenVINO runs the same file: cosine min {_fmt(ov['cosine'])}{_floor(ov, 'min_cosine')}, top-1 "
                  f"agreement {_fmt(ov['top1'], '.3f')}, max-abs {_fmt(ov['rel_err'], '.3f')} of the output range"
                  f"{_floor(ov, 'rtol')} -> {'pass' if ov.get('passed') else 'FAIL'}")
    rt = (rep.get("runtime") or {})
    if "onnxruntime" in rt:
        r = rt["onnxruntime"]
        k = ", ".join(f"{n} {c}" for n, c in r.get("int8_kernels", {}).items()) or "none"
        err.print(f"ONNX Runtime runs in int8: {k}; softmax int8 {r['softmax']['int8']}, float {r['softmax']['float']}")
    if "openvino" in rt:
        r = rt["openvino"]
        k = ", ".join(f"{n} {c}" for n, c in r.get("int8_layers", {}).items()) or "none"
        err.print(f"OpenVINO runs in int8: {k}; softmax int8 {r['softmax']['int8']}, float {r['softmax']['float']}")
    ab = rep.get("activations_absorbed")
    if ab:
        err.print("activations folded into the quantized range: " + ", ".join(
            f"{op} {v['absorbed_into_quantized_range']} of {v['float_graph']}" for op, v in ab.items()))
    sm = rep.get("softmax")
    if sm and sm.get("blocks"):
        err.print(f"softmax {sm['mode']}: {sm['qlinear_softmax_pattern']} of {len(sm['blocks'])} attention blocks "
                  f"run as QLinearSoftmax; TensorRT MHA Q/DQ placement in {sm['tensorrt_mha_pattern']}")
        rows = [b for b in sm["blocks"] if b.get("error")]
        if rows:
            t = Table(title="error the int8 softmax adds, per attention block")
            for col in ("block", "scale", "probs max-abs", "probs SQNR dB", "zeroed", "attn-out SQNR dB"):
                t.add_column(col, justify="right")
            for b in rows:
                e = b["error"]
                t.add_row(str(b["index"]), f"1/{1 / e['scale']:.0f}", _fmt(e["probs_max_abs"], ".4f"),
                          _fmt(e["probs_sqnr_db"], ".1f"), f"{e['zeroed_fraction']:.2%}",
                          _fmt(e["attn_sqnr_db"], ".1f"))
            err.print(t)
    elif sm and sm.get("note"):
        err.print(f"softmax {sm['mode']}: {sm['note']}")
    acc = rep.get("accuracy")
    if acc:
        t = Table(title=f"accuracy on {acc['images']} labelled images ({acc['classes']} classes)")
        for col in ("", "top-1", "top-5"):
            t.add_column(col, justify="right")
        for k in ("fp32", "int8"):
            t.add_row(k, _fmt(acc[k]["top1"]), _fmt(acc[k]["top5"]))
        err.print(t)
        err.print(f"top-1 drop {acc['top1_drop_points']:.2f} points; predictions agree on "
                  f"{acc['prediction_agreement']:.2%}")
    sens = rep.get("sensitivity")
    if sens:
        t = Table(title=f"sensitivity: the {min(top, len(sens))} quantized tensors with the lowest SQNR "
                        f"(of {len(sens)})")
        for col in ("kind", "tensor", "SQNR dB", "local dB", "read by (--exclude these)"):
            t.add_column(col)
        for r in sens[:top]:
            t.add_row(r["kind"], r["tensor"], _fmt(r["sqnr_db"], ".1f"), _fmt(r.get("local_sqnr_db"), ".1f"),
                      ", ".join(r["consumers"][:3]) + (" ..." if len(r["consumers"]) > 3 else ""))
        err.print(t)
