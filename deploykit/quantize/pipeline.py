"""``deploykit quantize``: an fp32 model (registry name, exported on demand, or an ONNX file) -> an int8 artifact,
cached like any artifact (``<models>/<model>/int8_..._<quantizer>..._c<calibration hash>.onnx`` + manifest).

Every int8 artifact carries in its manifest: the recipe (quantizer, profile, op types, excluded nodes, 7-bit
weights or not and why), the calibration set (folder, count, SHA-256 of the preprocessed tensor, method), the
fidelity against the fp32 model on held-out inputs (top-1 agreement, cosine, max-abs, SQNR; judged by
``floors.INT8_FLOOR``), what ONNX Runtime (or OpenVINO for NNCF) actually runs in int8, and for models with
attention blocks the softmax path per block (Q/DQ placement and the error the int8 softmax adds). ``--eval-data``
adds real top-1/top-5 of fp32 and int8 side by side; ``--sensitivity`` the per-tensor SQNR table.

The model comes from ``export.source.resolve_model`` (the one resolver: model names exported on demand, files with
or without a manifest); the recipe from its traits (``models.traits``), or from its graph when it declares none.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from deploykit import __version__
from deploykit.core.atomic import check_output_file, copy_file, run_dir, write_json
from deploykit.core.config import ExportConfig, QuantizeConfig, default_models_dir
from deploykit.core.errors import InputError, UsageError, VerificationError
from deploykit.core.lazy import version_of
from deploykit.export import artifacts
from deploykit.onnxio.files import check_model, opset_of
from deploykit.export.source import ResolvedModel, resolve_model
from deploykit.models.select import is_model_name
from deploykit.models.traits import ModelTraits, QuantRecipe, traits_from_graph
from deploykit.core.hashing import file_sha256
from deploykit.quantize import calib as calib_mod
from deploykit.quantize.floors import INT8_FLOOR

RECIPE_VERSION = 4  # bump when the op-type choices or Q/DQ placement change: old int8 artifacts are rebuilt
SENSITIVITY_SAMPLES = 4
SOFTMAX_SAMPLES = 4


class QuantizeVerificationError(VerificationError):
    """The int8 model is below the fidelity floors; carries the report (with sensitivity when asked)."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclass
class Source:
    """The fp32 model being quantized (``resolve_model``'s answer), its traits and the recipe they name."""

    model: ResolvedModel
    traits: ModelTraits
    traits_from: str  # "declared" (the model's cfg, via its manifest) | "graph" (inferred from attention blocks)
    recipe: QuantRecipe
    has_attention: bool  # attention blocks found in the graph (passes.attention)
    opset: int
    family: str | None  # label
    warnings: list[str] = field(default_factory=list)

    def __getattr__(self, name):  # label, path, sha256, manifest, input_name, input_shape, mean, std, crop_pct ...
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)


@dataclass
class QuantizeResult:
    path: Path
    manifest: dict
    reused: bool
    seconds: float
    report: dict
    warnings: list[str] = field(default_factory=list)


def quantize_model(ref: str, qcfg: QuantizeConfig, *, export: ExportConfig | None = None, batch: int = 1,
                   resolution: int | None = None, models_dir: Path | None = None, progress=None) -> QuantizeResult:
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    if not qcfg.calib_data:  # before any work (an export can take minutes)
        raise UsageError("--calib-data DIR is required: a folder of images, preprocessed like the model's inputs "
                         "(or '--calib-data synthetic' for a smoke test on noise)")
    if qcfg.softmax == "auto":  # a measurement on a target: bench/softmax_auto.resolve_softmax decides it first
        raise UsageError("--softmax auto is decided by measuring both softmax builds on a target: give the target "
                         "(deploykit quantize MODEL --softmax auto -t ort, or bench / run with --softmax auto)")
    models_dir = Path(models_dir or (export.models_dir if export else default_models_dir()))
    src = _resolve_source(ref, batch=batch, resolution=resolution, export=export, models_dir=models_dir, say=say)
    if qcfg.preprocess:  # the user's preprocessing wins over the file's (export/source.apply_preprocess)
        from deploykit.export.source import apply_preprocess

        src.model = apply_preprocess(src.model, dict(qcfg.preprocess))
    has_attention = src.has_attention
    warnings = list(src.warnings)
    n, c, h, w = src.input_shape
    if h != w:
        raise UsageError(f"{src.label}: input is {h}x{w}; deploykit calibrates square inputs only")
    pp = calib_mod.Preprocess(resolution=h, channels=c, mean=src.mean, std=src.std,
                              crop_pct=qcfg.crop_pct or src.crop_pct or calib_mod.DEFAULT_CROP_PCT,
                              interpolation=src.interpolation, channel_order=src.channel_order,
                              value_range=src.value_range)

    # data first: the calibration tensor's hash is part of the artifact's identity
    say("reading calibration data")
    calib, held_out, fid_note = _calibration_data(qcfg, pp, (c, h, w))
    if calib.folder == calib_mod.SYNTHETIC:
        warnings.append(calib_mod.SYNTHETIC_WARNING)
    eval_set = None
    if qcfg.eval_data:
        eval_set = calib_mod.load_labelled(qcfg.eval_data, pp, qcfg.eval_size, seed=qcfg.seed)

    softmax = "none"
    if has_attention:
        softmax = qcfg.softmax or (src.recipe.softmax if qcfg.quantizer == "ort" else "float")
    if qcfg.quantizer == "nncf" and softmax == "int8":
        raise UsageError("--softmax int8 needs the QDQ path (--quantizer ort): NNCF's transformer mode keeps the "
                         "softmax output float (OpenVINO reads the QDQ file too)")
    from deploykit.quantize.ort_qdq import resolve_reduce_range

    reduce_range, rr_reason = resolve_reduce_range(qcfg.reduce_range)
    if qcfg.quantizer == "ort" and qcfg.profile == "trt" and qcfg.reduce_range is None:
        reduce_range, rr_reason = False, "trt profile: TensorRT uses the full int8 range"
    settings = _settings(src, qcfg, calib, pp, softmax, reduce_range, src.opset)
    variant = _variant(src, settings, qcfg, softmax, reduce_range, calib.sha256)
    suffix = ".xml" if qcfg.quantizer == "nncf" else ".onnx"
    dest = Path(qcfg.output) if qcfg.output else models_dir / artifacts.folder_name(src.label) / f"{variant}{suffix}"
    if dest.suffix != suffix:
        raise UsageError(f"--output must end in {suffix} for --quantizer {qcfg.quantizer}, got {dest}")
    if not qcfg.output:
        _inside(dest, models_dir)

    if not qcfg.force:
        manifest = _reusable(dest, settings)
        if manifest is not None:  # reuse needs no write: a read-only store serves it
            report = dict(manifest.get("quantization", {}))
            if eval_set is not None or qcfg.sensitivity:
                report.update(_evaluate_again(src, dest, qcfg, eval_set, held_out, manifest, models_dir))
            return QuantizeResult(dest, manifest, True, time.perf_counter() - t0, report,  # each warning once
                                  list(dict.fromkeys(warnings + manifest.get("quantization", {}).get("warnings", []))))
    check_output_file(dest, "--output" if qcfg.output else "int8 artifact")
    from deploykit.core.guarded import build_lock

    with build_lock(dest, say):  # one build of an int8 artifact at a time; a second run waits, then reuses it
        if not qcfg.force:
            manifest = _reusable(dest, settings)
            if manifest is not None:
                report = dict(manifest.get("quantization", {}))
                if eval_set is not None or qcfg.sensitivity:
                    report.update(_evaluate_again(src, dest, qcfg, eval_set, held_out, manifest, models_dir))
                return QuantizeResult(dest, manifest, True, time.perf_counter() - t0, report,
                                      list(dict.fromkeys(warnings + manifest.get("quantization", {}).get("warnings",
                                                                                                         []))))
        return _quantize(src, qcfg, dest, settings, calib, held_out, eval_set, pp, fid_note, warnings, reduce_range,
                         rr_reason, models_dir, say, t0)


def _quantize(src, qcfg, dest, settings, calib, held_out, eval_set, pp, fid_note, warnings, reduce_range, rr_reason,
              models_dir, say, t0) -> QuantizeResult:
    """Build, check and write the int8 artifact (under its build lock)."""
    # every scratch file (ours and ONNX Runtime's pre.quant.* / ort.quant.* / calibration folders) in one per-run
    # folder of the store: removed on any exit, and swept by the next run when this one is killed
    with run_dir(models_dir, "quantize", redirect_tempfile=True) as tmp:
        try:
            if qcfg.quantizer == "ort":
                report, qpath, qproto = _build_ort(src, qcfg, calib, held_out, tmp, say)
            else:
                report, qpath, qproto = _build_nncf(src, qcfg, calib, held_out, tmp, say, reduce_range)
        except Exception as exc:  # the runtime failing on the model during calibration: one line, not its stack
            from deploykit.core.errors import DeployKitError, RunFailure, runtime_raised, squash

            if isinstance(exc, DeployKitError) or not runtime_raised(exc):
                raise
            raise RunFailure(f"{src.label}: the runtime failed while calibrating / quantizing it "
                             f"({qcfg.quantizer}): {squash(exc, 300)}") from None
        report["reduce_range"] = {"enabled": reduce_range, "reason": rr_reason}
        report["calibration"] = {**calib.describe(), "method": qcfg.calib_method, "preprocess": pp.describe(),
                                 "fidelity_inputs": fid_note}
        report["warnings"] = warnings
        report.pop("_outputs")
        fid = report["fidelity"]
        if eval_set is not None:
            say(f"evaluating fp32 and int8 on {len(eval_set.x)} labelled images")
            report["accuracy"] = _accuracy(src.path, qpath, qcfg.quantizer, eval_set)
        if qcfg.sensitivity:
            if qproto is None:
                raise UsageError("--sensitivity reads the Q/DQ graph: use --quantizer ort")
            say("per-layer sensitivity (SQNR of every quantized tensor)")
            import onnx

            from deploykit.quantize.sensitivity import sensitivity

            pre = onnx.load(str(tmp / "pre.onnx"))
            report["sensitivity"] = sensitivity(pre, qproto, held_out[:SENSITIVITY_SAMPLES])
        if qcfg.verify and not fid["passed"]:
            raise QuantizeVerificationError(
                f"{src.label}: the int8 model is below the fidelity floor: {fid['reason']} on {fid['samples']} "
                "inputs (nothing was written; --sensitivity shows which layers to --exclude, --no-verify keeps "
                "the file anyway)", report)
        manifest = _manifest(src, dest, settings, report, qpath)
        _write(dest, qpath, manifest)
    return QuantizeResult(dest, manifest, False, time.perf_counter() - t0, report, warnings)


# ---- source ----------------------------------------------------------------------------------------------

def _resolve_source(ref: str, *, batch: int, resolution: int | None, export: ExportConfig | None,
                    models_dir: Path, say) -> Source:
    """The fp32 model to quantize (the one resolver: a model name is exported on demand) and the recipe its traits
    name: declared (the model's cfg, via its manifest), else inferred from the graph (attention blocks found -> the
    ViT recipe, else the CNN recipe), which a warning says. A recipe name deploykit does not know is an error
    (never the CNN recipe by default)."""
    import onnx

    from deploykit.passes.attention import find_attention
    from deploykit.passes.fuse import export_transform

    if is_model_name(ref):
        export = replace(export or ExportConfig(model=ref, models_dir=models_dir), model=ref)
    else:
        export = None
    model = resolve_model(ref, batch=batch, resolution=resolution, export=export, progress=say, fuse=export_transform)
    if model.precision == "int8":
        raise InputError(f"{model.path} is already quantized (it carries quantization ops); quantize its fp32 source")
    proto = onnx.load(str(model.path), load_external_data=False)
    has_attention = any(s.pv_matmul for s in find_attention(proto))
    warnings = list(model.warnings)
    traits, traits_from, family = model.traits, "declared", model.family
    if traits is None:
        traits, traits_from = traits_from_graph(has_attention), "graph"
        family = family or traits.recipe
        warnings.append(f"{model.label} declares no model traits: quantized with the {traits.recipe!r} recipe "
                        f"(attention blocks {'found' if has_attention else 'not found'} in the graph)")
    elif traits.attention != has_attention:
        warnings.append(f"{model.label} declares {'' if traits.attention else 'no '}attention blocks but "
                        f"{'none were' if traits.attention else 'some were'} found in its graph (passes.attention): "
                        "the softmax path follows the graph")
    return Source(model=model, traits=traits, traits_from=traits_from, recipe=traits.quant_recipe(),
                  has_attention=has_attention, opset=opset_of(proto), family=family, warnings=warnings)


def _calibration_data(qcfg: QuantizeConfig, pp, chw) -> tuple:
    """(calibration set, held-out fidelity inputs, note on where the fidelity inputs come from)."""
    if qcfg.calib_data == calib_mod.SYNTHETIC:
        calib = calib_mod.synthetic(chw, qcfg.calib_size, qcfg.seed)
        held = calib_mod.synthetic(chw, qcfg.fidelity_samples, qcfg.seed + 1)
        return calib, held.x, "synthetic noise (another seed)"
    folder = qcfg.calib_data
    assert folder, "quantize_model refuses a run without --calib-data first"
    calib = calib_mod.load_images(folder, pp, qcfg.calib_size, seed=qcfg.seed)
    if qcfg.eval_data:
        ev = calib_mod.load_images(qcfg.eval_data, pp, qcfg.fidelity_samples, seed=qcfg.seed + 1, what="--eval-data")
        return calib, ev.x, f"{len(ev.files)} images from --eval-data"
    if calib.found > len(calib.files):
        held = calib_mod.load_images(folder, pp, qcfg.fidelity_samples, seed=qcfg.seed + 1,
                                     exclude=set(calib.files))
        return calib, held.x, f"{len(held.files)} held-out images from --calib-data (not used for calibration)"
    return calib, calib.x[:qcfg.fidelity_samples], (
        "the calibration images themselves (the folder has no others; give --eval-data for held-out inputs)")


def _settings(src: Source, qcfg: QuantizeConfig, calib, pp, softmax: str, reduce_range: bool, opset: int) -> dict:
    src_settings = None
    if src.manifest:
        src_settings = {k: v for k, v in src.manifest.get("settings", {}).items() if k != "versions"}
    versions = {"onnxruntime": version_of("onnxruntime"), "onnx": version_of("onnx")}
    if qcfg.quantizer == "nncf":
        versions.update(openvino=version_of("openvino"), nncf=version_of("nncf"))
    return {
        "model": src.label,
        "precision": "int8",
        "batch": src.input_shape[0],
        "resolution": src.input_shape[-1],
        "opset": opset,
        "source_sha256": src.sha256,
        "source_settings": src_settings,
        "quantizer": qcfg.quantizer,
        "profile": qcfg.profile if qcfg.quantizer == "ort" else None,
        "softmax": softmax,
        "calibration": {"data": "synthetic" if calib.folder == calib_mod.SYNTHETIC else "folder",
                        "sha256": calib.sha256, "size": len(calib.files), "method": qcfg.calib_method},
        "reduce_range": reduce_range,
        "per_channel": qcfg.per_channel,
        "exclude": sorted(qcfg.exclude),
        "preprocess": pp.describe(),
        "recipe": RECIPE_VERSION,
        "versions": versions,
    }


def _variant(src: Source, settings: dict, qcfg: QuantizeConfig, softmax: str, reduce_range: bool,
             calib_sha: str) -> str:
    ss = settings["source_settings"] or {}
    tag = [qcfg.quantizer + (f"-{qcfg.profile}" if qcfg.quantizer == "ort" else "")]
    if softmax != "none":
        tag.append(f"sm{softmax}")
    if qcfg.calib_method != "minmax":
        tag.append(qcfg.calib_method)
    if reduce_range:
        tag.append("w7")
    if not qcfg.per_channel:
        tag.append("pt")
    tag.append(f"c{calib_sha[:8]}")
    if qcfg.exclude:
        tag.append("x" + hashlib.sha256(json.dumps(sorted(qcfg.exclude)).encode()).hexdigest()[:6])
    return artifacts.variant_name("int8", settings["batch"], settings["resolution"], settings["opset"],
                                  dynamic_batch=bool(ss.get("dynamic_batch")), seed=ss.get("seed", 0) or 0,
                                  weights_sha=ss.get("weights_sha256"), options=ss.get("options"), tag="_".join(tag))


def _inside(dest: Path, models_dir: Path) -> None:
    """An artifact path made from names (the model's label) must stay inside the store."""
    try:
        dest.resolve().relative_to(models_dir.resolve())
    except ValueError:
        raise InputError(f"refusing to write {dest}: the model name makes it a path outside the store "
                         f"{models_dir}") from None


def _reusable(dest: Path, settings: dict) -> dict | None:
    manifest = artifacts.reusable(dest, settings)
    if manifest is None:
        return None
    if dest.suffix == ".xml":
        bin_path = dest.with_suffix(".bin")
        if not bin_path.is_file() or file_sha256(bin_path) != manifest.get("bin_sha256"):
            return None
    return manifest


# ---- building -------------------------------------------------------------------------------------------

def _build_ort(src: Source, qcfg: QuantizeConfig, calib, held_out: np.ndarray, tmp: Path, say):
    import onnx

    from deploykit.passes.attention import find_attention, qdq_placement
    from deploykit.quantize.evaluate import OpenVinoModel, OrtModel, fidelity_metrics
    from deploykit.quantize.ort_qdq import make_plan, pre_process, quantize_qdq
    from deploykit.quantize.softmax import softmax_errors
    from deploykit.runtimes.base import read_runtime_graph

    say("pre-processing (shape inference, basic optimisations)")
    pre_process(src.path, tmp / "pre.onnx")
    pre = onnx.load(str(tmp / "pre.onnx"))
    plan = make_plan(pre, src.recipe, qcfg, family=src.family, traits_from=src.traits_from)
    say(f"calibrating on {len(calib.x)} inputs ({qcfg.calib_method}) and quantizing (QDQ, {qcfg.profile} profile)")
    qpath = tmp / "int8.onnx"
    quantize_qdq(tmp / "pre.onnx", qpath, plan, calib.x, src.input_name, src.input_shape[0])
    qproto = onnx.load(str(qpath))
    check_model(qproto, "the quantized graph")

    say(f"checking fidelity against fp32 on {len(held_out)} inputs")
    ref = OrtModel(src.path)(held_out)
    out = OrtModel(qpath)(held_out)
    report = {"quantizer": "onnxruntime quantize_static (QDQ)", "plan": plan.describe(),
              "fidelity": {"reference": "the fp32 ONNX model in onnxruntime (CPU)", "runtime": "onnxruntime (CPU)",
                           **fidelity_metrics(ref, out, INT8_FLOOR)},
              "_outputs": (ref, out)}
    if qcfg.check_openvino:
        say("running the int8 file in OpenVINO")
        ov_out = OpenVinoModel(qpath)(held_out)
        report["openvino"] = {"runtime": "openvino (CPU, INFERENCE_PRECISION_HINT=f32)",
                              **fidelity_metrics(ref, ov_out, INT8_FLOOR)}
    report["activations_absorbed"] = _absorbed(pre, qproto)
    sites = find_attention(pre)
    if sites:
        placement = qdq_placement(qproto)
        errors = {}
        if plan.softmax == "int8":
            say("measuring the error of the int8 softmax per attention block")
            errors = {r["softmax"]: r for r in softmax_errors(pre, sites, placement, held_out[:SOFTMAX_SAMPLES])}
        report["softmax"] = {
            "mode": plan.softmax,
            "blocks": [{**p, "error": errors.get(p["softmax"])} for p in placement],
            "qlinear_softmax_pattern": sum(p["qlinear_softmax_pattern"] for p in placement),
            "tensorrt_mha_pattern": sum(p["tensorrt_mha_pattern"] for p in placement),
        }
    rt = read_runtime_graph("ort", qpath)
    rt.pop("op_histogram", None)
    report["runtime"] = {"onnxruntime": rt}
    from deploykit.passes.inspect import quantization_summary

    report["qdq"] = quantization_summary(qproto)
    return report, qpath, qproto


def _absorbed(pre, qproto) -> dict:
    from deploykit.onnxio.files import op_histogram

    before, after = op_histogram(pre), op_histogram(qproto)
    out = {}
    for op in ("Relu", "Clip"):
        if before.get(op):
            out[op] = {"float_graph": before[op], "int8_graph": after.get(op, 0),
                       "absorbed_into_quantized_range": before[op] - after.get(op, 0)}
    return out


def _build_nncf(src: Source, qcfg: QuantizeConfig, calib, held_out: np.ndarray, tmp: Path, say, reduce_range: bool):
    from deploykit.quantize.evaluate import OpenVinoModel, OrtModel, fidelity_metrics
    from deploykit.quantize.nncf_ov import quantize_nncf
    from deploykit.runtimes.base import read_runtime_graph

    say(f"calibrating on {len(calib.x)} inputs and quantizing with NNCF for OpenVINO")
    qpath = tmp / "int8.xml"
    info = quantize_nncf(src.path, qpath, calib.x, transformer=src.recipe.transformer, method=qcfg.calib_method,
                         reduce_range=reduce_range, exclude=qcfg.exclude, batch=src.input_shape[0])
    say(f"checking fidelity against fp32 on {len(held_out)} inputs")
    ref = OrtModel(src.path)(held_out)
    out = OpenVinoModel(qpath)(held_out)
    report = {"quantizer": "nncf.quantize (OpenVINO IR)", "nncf": info,
              "fidelity": {"reference": "the fp32 ONNX model in onnxruntime (CPU)",
                           "runtime": "openvino (CPU, INFERENCE_PRECISION_HINT=f32)",
                           **fidelity_metrics(ref, out, INT8_FLOOR)},
              "_outputs": (ref, out)}
    if src.recipe.transformer:
        report["softmax"] = {"mode": "float", "note": info["softmax_note"]}
    rt = read_runtime_graph("openvino", qpath)
    rt.pop("runtime_precisions", None)
    report["runtime"] = {"openvino": rt}
    return report, qpath, None


def _accuracy(fp32_path: Path, qpath: Path, quantizer: str, eval_set) -> dict:
    from deploykit.quantize.evaluate import OpenVinoModel, OrtModel, accuracy

    ref = OrtModel(fp32_path)(eval_set.x)
    out = (OrtModel(qpath) if quantizer == "ort" else OpenVinoModel(qpath))(eval_set.x)
    a32, a8 = accuracy(ref, eval_set.labels), accuracy(out, eval_set.labels)
    return {"eval_data": eval_set.folder, "images": len(eval_set.files), "classes": len(eval_set.classes),
            "class_order": "sub-folder names sorted -> output indices 0..K-1",
            "fp32": a32, "int8": a8,
            "top1_drop_points": round(100 * (a32["top1"] - a8["top1"]), 3),
            "prediction_agreement": float(np.mean(np.argmax(ref, 1) == np.argmax(out, 1)))}


def _evaluate_again(src: Source, dest: Path, qcfg: QuantizeConfig, eval_set, held_out, manifest,
                    models_dir: Path) -> dict:
    """Accuracy / sensitivity for a reused artifact (not cached: they depend on the data given this time)."""
    extra: dict[str, Any] = {}
    if eval_set is not None:
        extra["accuracy"] = _accuracy(src.path, dest, qcfg.quantizer, eval_set)
    if qcfg.sensitivity:
        if qcfg.quantizer != "ort":
            raise UsageError("--sensitivity reads the Q/DQ graph: use --quantizer ort")
        import onnx

        from deploykit.quantize.ort_qdq import pre_process
        from deploykit.quantize.sensitivity import sensitivity

        with run_dir(models_dir, "quantize", redirect_tempfile=True) as tmp:
            pre_process(src.path, tmp / "pre.onnx")
            pre = onnx.load(str(tmp / "pre.onnx"))
        extra["sensitivity"] = sensitivity(pre, onnx.load(str(dest)), held_out[:SENSITIVITY_SAMPLES])
    return extra


# ---- writing --------------------------------------------------------------------------------------------

def _manifest(src: Source, dest: Path, settings: dict, report: dict, qpath: Path) -> dict:
    source = dict(src.manifest.get("source", {})) if src.manifest else {
        "model": src.label, "family": src.family, "weights": None, "traits": src.traits.describe()}
    # the preprocessing the calibration used (the user's, the file's, or the manifest's), for every later reader
    source.update(mean=list(src.mean), std=list(src.std), crop_pct=src.crop_pct, interpolation=src.interpolation,
                  channel_order=src.channel_order, value_range=src.value_range)
    source.update(fp32_artifact=str(Path(src.path).resolve()), fp32_sha256=src.sha256)  # absolute: any cwd
    stored = dict(report)
    if "sensitivity" in stored:
        stored["sensitivity"] = stored["sensitivity"][:200]
    m = {
        "schema": artifacts.MANIFEST_SCHEMA,
        "schema_version": artifacts.MANIFEST_VERSION,
        "created": artifacts.now_iso(),
        "artifact": dest.name,
        "sha256": None,  # set by _write, from the file as written (with its external data, if any)
        # the whole model: an IR's weights are in its .bin
        "bytes": qpath.stat().st_size + (qpath.with_suffix(".bin").stat().st_size if qpath.suffix == ".xml" else 0),
        "settings": settings,
        "source": source,
        "quantization": stored,
        "verification": {"reference": report["fidelity"]["reference"], "passed": report["fidelity"]["passed"],
                         "reason": report["fidelity"]["reason"], "tolerance": report["fidelity"].get("tolerance")},
        "versions": {"deploykit": __version__, **settings["versions"]},
    }
    if qpath.suffix == ".onnx":
        import onnx

        from deploykit.export.exporter import graph_summary

        m["onnx"] = graph_summary(onnx.load(str(qpath), load_external_data=False))
    else:
        m["bin_sha256"] = file_sha256(qpath.with_suffix(".bin"))
    return m


def _write(dest: Path, qpath: Path, manifest: dict) -> None:
    """Model (and .bin, or its external data), then the manifest last: an interrupted write never leaves a reusable
    artifact."""
    if qpath.suffix == ".xml":
        copy_file(qpath.with_suffix(".bin"), dest.with_suffix(".bin"))
        # the IR's .xml names its .bin by the xml's own name; OpenVINO finds <stem>.bin beside it
        copy_file(qpath, dest)
    else:
        import onnx

        from deploykit.onnxio.files import save_onnx, uses_external_data

        if uses_external_data(onnx.load(str(qpath), load_external_data=False)):  # weights renamed after dest
            manifest["external_data"] = save_onnx(onnx.load(str(qpath)), dest, external=True)
        else:
            copy_file(qpath, dest)
    manifest["sha256"] = artifacts.artifact_sha256(dest, manifest)
    write_json(artifacts.manifest_path(dest), manifest)


def int8_builder(qcfg: QuantizeConfig):
    """The ``quantize`` callable ``export.source.resolve_model`` takes (``bench --int8``): builds or reuses the int8
    variant of a model reference and returns its path."""

    def build(ref: str, batch: int, resolution: int | None, export: ExportConfig | None, progress) -> Path:
        models_dir = export.models_dir if export else default_models_dir()
        return quantize_model(ref, qcfg, export=export, batch=batch, resolution=resolution, models_dir=models_dir,
                              progress=progress).path

    return build
