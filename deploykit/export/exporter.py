"""PyTorch -> ONNX: export, check, shape inference, verification against PyTorch, atomic write + manifest."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deploykit import __version__
from deploykit.core.atomic import atomic_path, ensure_dir, write_json
from deploykit.core.config import ExportConfig
from deploykit.core.errors import DeployKitError, InputError, squash
from deploykit.core.lazy import version_of
from deploykit.export import artifacts
from deploykit.onnxio.files import check_model, input_specs, op_histogram, opset_of
from deploykit.onnxio.session import cpu_session
from deploykit.onnxio.reference import check_fits, make_input, reference_key, save_reference, torch_reference
from deploykit.onnxio.verify import Tolerance, check_reference, compare, passes
from deploykit.models.registry import (check_resolution, create_model, get_cfg, pretrained_file, resolve_options,
                                       source_sha256)
from deploykit.core.hashing import file_sha256

# The graph passes run after export (``ExportConfig.fuse``) are passed in by the caller, from a layer above
# export: ``fuse(proto, batch=, resolution=, seed=) -> (proto, report dict)``, i.e.
# ``deploykit.passes.fuse.export_transform``.
GraphTransform = Callable[..., tuple]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DYNAMO_MIN_OPSET = 18


class ExportError(DeployKitError):
    """The exporter could not convert this model/option combination."""


@dataclass
class ExportResult:
    path: Path
    manifest: dict
    reused: bool
    seconds: float

    @property
    def verification(self) -> dict:
        return self.manifest.get("verification", {})


def export_settings(cfg: ExportConfig) -> tuple[dict, str]:
    """The settings that define an artifact (its cache key) and its variant name."""
    mcfg = get_cfg(cfg.model)
    res = check_resolution(mcfg, cfg.resolution)
    opts = resolve_options(mcfg, dict(cfg.options))
    weights_sha = None
    if cfg.pretrained:  # the published file from the local cache (an error saying where it looked if absent)
        weights_sha = file_sha256(pretrained_file(mcfg))
    elif cfg.weights is not None:
        wp = Path(cfg.weights)
        if not wp.is_file():
            raise InputError(f"weights file not found: {wp}")
        weights_sha = file_sha256(wp)
    settings = {
        "model": cfg.model,
        "precision": "fp32",
        "batch": cfg.batch,
        "resolution": res,
        "opset": cfg.opset,
        "dynamic_batch": cfg.dynamic_batch,
        "seed": cfg.seed,
        "weights_sha256": weights_sha,
        "model_source_sha256": source_sha256(mcfg),
        "pretrained": mcfg.pretrained.what if cfg.pretrained and mcfg.pretrained else None,
        "options": opts,
        "exporter": exporter_name(cfg.opset, fold_bn=cfg.fold_bn),
        "fold_bn": cfg.fold_bn,
        "fuse": cfg.fuse,
        "versions": {k: version_of(k) for k in ("torch", "torchvision", "timm", "onnxscript")},
    }
    tag = "_".join(t for t, on in (("nofold", not cfg.fold_bn), ("nofuse", not cfg.fuse)) if on)
    variant = artifacts.variant_name("fp32", cfg.batch, res, cfg.opset, dynamic_batch=cfg.dynamic_batch,
                                     seed=cfg.seed, weights_sha=weights_sha, options=opts, tag=tag)
    return settings, variant


def exporter_name(opset: int, fold_bn: bool = True) -> str:
    if not fold_bn:  # the only exporter setting that keeps BatchNormalization nodes in eval mode
        return "torch.onnx.export(dynamo=False, training=PRESERVE, do_constant_folding=False)"
    return "torch.onnx.export(dynamo=True)" if opset >= DYNAMO_MIN_OPSET else "torch.onnx.export(dynamo=False)"


def export_model(cfg: ExportConfig, progress=None, *, fuse: GraphTransform | None = None) -> ExportResult:
    """Export ``cfg.model`` to ONNX (or reuse a valid artifact with the same settings). ``fuse``: the graph
    passes run on the exported graph when ``cfg.fuse`` (``deploykit.passes.fuse.export_transform``)."""
    if cfg.fuse and fuse is None:
        raise TypeError("ExportConfig(fuse=True) needs the graph passes: export_model(cfg, fuse="
                        "deploykit.passes.fuse.export_transform), or ExportConfig(fuse=False)")
    say = progress or (lambda msg: None)
    t0 = time.perf_counter()
    settings, variant = export_settings(cfg)
    check_fits(get_cfg(cfg.model).input_shape(cfg.batch, settings["resolution"]), what=cfg.model)
    dest = Path(cfg.output) if cfg.output else artifacts.artifact_path(cfg.models_dir, cfg.model, variant)
    if dest.suffix != ".onnx":
        raise InputError(f"--output must end in .onnx, got {dest}")
    if not cfg.force:
        manifest = artifacts.reusable(dest, settings)
        if manifest is not None:  # reuse needs no write: a read-only store serves its artifacts
            return ExportResult(dest, manifest, True, time.perf_counter() - t0)
    ensure_dir(dest.parent)
    from deploykit.core.guarded import build_lock

    with build_lock(dest, say):  # one build of an artifact at a time; a second run waits, then reuses it
        if not cfg.force:
            manifest = artifacts.reusable(dest, settings)
            if manifest is not None:
                return ExportResult(dest, manifest, True, time.perf_counter() - t0)
        return _build(cfg, dest, settings, variant, say, t0, fuse)


def _build(cfg: ExportConfig, dest: Path, settings: dict, variant: str, say, t0: float,
           fuse: GraphTransform | None) -> ExportResult:
    mcfg = get_cfg(cfg.model)
    res = settings["resolution"]
    weights_file = pretrained_file(mcfg) if cfg.pretrained else cfg.weights
    say(f"building {cfg.model} ({mcfg.source} {mcfg.arch or cfg.model}, "
        + (f"{mcfg.pretrained.what} weights from {weights_file})" if cfg.pretrained and mcfg.pretrained
           else f"seed {cfg.seed})"))
    model = create_model(cfg.model, resolution=res, seed=cfg.seed, weights=cfg.weights, options=settings["options"],
                         pretrained=cfg.pretrained)
    x = make_input(mcfg.input_shape(cfg.batch, res), cfg.seed)
    ref = torch_reference(model, x)
    check_reference(ref, cfg.model)

    say(f"exporting to ONNX opset {cfg.opset} with {settings['exporter']}")
    t_exp = time.perf_counter()
    proto = _torch_export(model, x, cfg)
    export_s = time.perf_counter() - t_exp
    got = opset_of(proto)
    if got != cfg.opset:
        raise ExportError(f"the exporter produced opset {got}, not the requested {cfg.opset}; "
                          f"use --opset {got} or a version the exporter can convert to")
    proto = _infer_shapes(proto)
    check_model(proto, f"exported {cfg.model}")
    fusion = fusion_status(model, proto)
    if cfg.fuse and fuse is not None:  # checked above
        say("fusing: identity removal, BatchNormalization folding (verified against the unfused graph)")
        proto, passes_report = fuse(proto, batch=cfg.batch, resolution=res, seed=cfg.seed)
        fusion["passes"] = passes_report
        fusion["batchnorm_in_graph_after_passes"] = passes_report["batchnorm_after"]
    import json

    from deploykit.onnxio.files import PREPROCESS_KEY, set_metadata

    set_metadata(proto, PREPROCESS_KEY, json.dumps({
        "mean": list(mcfg.mean), "std": list(mcfg.std), "crop_pct": mcfg.crop_pct, "interpolation": mcfg.interpolation,
        "channel_order": "rgb", "value_range": 1.0}))  # the file says how to feed it, wherever it travels
    data = proto.SerializeToString()

    verification = {"skipped": True, "passed": True}
    if cfg.verify:
        say("verifying in ONNX Runtime against PyTorch")
        verification = verify_onnx_bytes(data, model, x, ref, Tolerance(rtol=cfg.rtol, min_cosine=cfg.min_cosine),
                                         dynamic_batch=cfg.dynamic_batch, what=cfg.model)
        if not verification["passed"]:
            raise ExportError(f"{cfg.model}: ONNX output does not match PyTorch: {verification['reason']} "
                              "(nothing was written; --no-verify keeps the file anyway)")

    manifest: dict[str, Any] = {
        "schema": artifacts.MANIFEST_SCHEMA,
        "schema_version": artifacts.MANIFEST_VERSION,
        "created": artifacts.now_iso(),
        "artifact": dest.name,
        "sha256": None,
        "bytes": len(data),
        "settings": settings,
        "source": {"model": cfg.model, "family": mcfg.family, "arch": mcfg.arch, "from": mcfg.source,
                   "weights": str(Path(weights_file).resolve()) if weights_file else "random (seeded)",
                   "weights_sha256": settings["weights_sha256"], "pretrained": settings["pretrained"],
                   **mcfg.preprocess(),
                   "traits": mcfg.traits.describe() if mcfg.traits is not None else None},
        "onnx": graph_summary(proto),
        "export": {"exporter": settings["exporter"], "seconds": round(export_s, 3)},
        "fusion": fusion,
        "verification": verification,
        "versions": {"deploykit": __version__, **settings["versions"], "onnx": version_of("onnx"),
                     "onnxruntime": version_of("onnxruntime")},
    }
    import hashlib

    manifest["sha256"] = hashlib.sha256(data).hexdigest()
    # write order: model, reference, manifest (the manifest marks a complete artifact)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    save_reference(artifacts.reference_path(dest, cfg.seed, cfg.batch), x, ref,
                   reference_key(manifest["sha256"], settings["weights_sha256"], cfg.seed, x.shape))
    write_json(artifacts.manifest_path(dest), manifest)
    return ExportResult(dest, manifest, False, time.perf_counter() - t0)


@contextlib.contextmanager
def _quiet_exporter():
    """The exporter prints progress and logs tracebacks for recoverable fallbacks; keep them off the terminal
    (set DEPLOYKIT_DEBUG=1 to see them)."""
    if os.environ.get("DEPLOYKIT_DEBUG"):
        yield None
        return
    sink = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch._export", "torch.export")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    import warnings

    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield sink
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)


def _torch_export(model, x: np.ndarray, cfg: ExportConfig):
    import onnx
    import torch

    xt = torch.from_numpy(x)
    try:
        with _quiet_exporter(), torch.inference_mode(False), torch.no_grad():
            if cfg.opset >= DYNAMO_MIN_OPSET and cfg.fold_bn:
                dyn = ({0: torch.export.Dim("batch", min=1, max=4096)},) if cfg.dynamic_batch else None
                program = torch.onnx.export(model, (xt,), None, dynamo=True, opset_version=cfg.opset,
                                            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                            dynamic_shapes=dyn, optimize=True, verify=False)
                assert program is not None  # dynamo=True returns the program
                return program.model_proto
            buf = io.BytesIO()
            axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if cfg.dynamic_batch else None
            keep_bn: dict[str, Any] = ({} if cfg.fold_bn
                       else {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False})
            # the stub says f is a path; the TorchScript exporter writes to a file object as well
            torch.onnx.export(model, (xt,), buf, dynamo=False, opset_version=cfg.opset,  # type: ignore[arg-type]
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes, **keep_bn)
            return onnx.load_from_string(buf.getvalue())
    except DeployKitError:
        raise
    except Exception as exc:
        msg = squash(exc, 400) or type(exc).__name__
        raise ExportError(f"exporting {cfg.model} to ONNX opset {cfg.opset} failed: "
                          f"{type(exc).__name__}: {msg}") from exc


def _infer_shapes(proto):
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=True, data_prop=True)
    except Exception as exc:
        raise ExportError(f"ONNX shape inference failed on the exported graph: {exc}") from exc


_ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Gelu")


def fusion_status(model, proto) -> dict:
    """BatchNormalization layers in the PyTorch model vs nodes in the exported graph (before deploykit's passes),
    and the activations left as separate nodes (runtimes fuse them at load; ``deploykit inspect --runtime``)."""
    from torch import nn

    bn_modules = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    hist = op_histogram(proto)
    bn_nodes = hist.get("BatchNormalization", 0)
    note = None
    if bn_modules and not bn_nodes:
        note = f"the exporter folded all {bn_modules} BatchNorm layers into the preceding convolutions (eval mode)"
    elif bn_nodes:
        note = f"{bn_nodes} BatchNormalization nodes left by the exporter"
    return {"batchnorm_in_pytorch": bn_modules, "batchnorm_in_exported_graph": bn_nodes, "note": note,
            "activations": {op: hist[op] for op in _ACTIVATIONS if op in hist}}


def graph_summary(proto) -> dict:
    def io_list(values):
        out = []
        for vi in values:
            tt = vi.type.tensor_type
            out.append({"name": vi.name, "shape": [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                                   for d in tt.shape.dim]})
        return out

    return {
        "opset": opset_of(proto),
        "ir_version": int(proto.ir_version),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "inputs": io_list([vi for vi in proto.graph.input if vi.name in {s.name for s in input_specs(proto)}]),
        "outputs": io_list(proto.graph.output),
        "nodes": len(proto.graph.node),
        "op_histogram": op_histogram(proto),
        "initializers": len(proto.graph.initializer),
    }


def verify_onnx_bytes(data: bytes, model, x: np.ndarray, ref: np.ndarray, tol: Tolerance, *, dynamic_batch: bool,
                      what: str) -> dict:
    """Run the ONNX model in ONNX Runtime (CPU, default optimisations) on ``x`` and compare with PyTorch."""
    import onnxruntime as ort

    sess = cpu_session(data, what=f"the exported {what}", error=ExportError)
    name = sess.get_inputs()[0].name
    cases = [(x, ref)]
    if dynamic_batch:  # prove the batch axis really is dynamic
        x2 = make_input((x.shape[0] + 1, *x.shape[1:]), seed=1)
        cases.append((x2, torch_reference(model, x2)))
    runs = []
    ok, reason = True, "ok"
    for xi, ri in cases:
        out = sess.run(None, {name: xi})[0]
        metrics = compare(ri, out)
        good, why = passes(metrics, tol)
        runs.append({"batch": int(xi.shape[0]), **metrics})
        if not good and ok:
            ok, reason = False, why
    return {
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        "reference": "pytorch fp32 (cpu)",
        "input": {"distribution": "standard normal (numpy PCG64)", "seed_note": "batch-1 extra case uses seed 1"},
        "tolerance": {"rtol": tol.rtol, "min_cosine": tol.min_cosine},
        "runs": runs,
        "passed": ok,
        "reason": reason,
    }
