"""Resolve what the user named: a model (registry or timm: / tv:, exported on demand, cached) or their own file.

The one resolver: bench, quantize and gate all ask here for a model file with its input shape, preprocessing
(mean, std, crop) and traits, whichever way the model was named.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from deploykit.core.config import ExportConfig
from deploykit.core.errors import InputError
from deploykit.export import artifacts
from deploykit.onnxio.files import (external_data_files, graph_precision, image_input_from_specs, image_input_shape,
                                    load_onnx, model_sha256)
from deploykit.models.registry import IMAGENET_MEAN, IMAGENET_STD, MODELS, get_cfg
from deploykit.models.select import looks_like_file  # also re-exported: callers ask here
from deploykit.models.traits import ModelTraits


@dataclass
class ResolvedModel:
    label: str  # model name, or the file's stem
    kind: str  # "registry" (a model name, exported on demand) | "onnx-file" | "native-file" (e.g. OpenVINO IR)
    path: Path
    sha256: str
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    precision: str  # fp32 | fp16 | int8 (from the graph)
    manifest: dict | None = None
    family: str | None = None  # display label
    export_seconds: float | None = None
    reused: bool | None = None
    # what preprocessing and quantization need (from the manifest or the model's cfg; ImageNet's mean/std and a
    # warning for a file without a manifest)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    crop_pct: float | None = None
    interpolation: str = "bilinear"
    channel_order: str = "rgb"
    value_range: float = 1.0  # pixels scaled to [0, value_range] before mean / std
    # where the preprocessing comes from: manifest | metadata (the file's own) | flags (the user's) | default
    preprocess_source: str = "manifest"
    traits: ModelTraits | None = None  # None: unknown (no manifest, or a pass-through model): infer from the graph
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        d = {
            "label": self.label,
            "kind": self.kind,
            "path": str(self.path),
            "sha256": self.sha256,
            "family": self.family,
            "precision": self.precision,
            "input": {"name": self.input_name, "shape": list(self.input_shape), "dtype": self.input_dtype},
            # how images become this input (calibration, --eval-data), and where that came from
            "preprocess": {"mean": list(self.mean), "std": list(self.std), "crop_pct": self.crop_pct,
                           "interpolation": self.interpolation, "channel_order": self.channel_order,
                           "value_range": self.value_range, "source": self.preprocess_source},
        }
        if self.manifest:
            src = self.manifest.get("source", {})
            d["source"] = {k: src.get(k) for k in ("model", "arch", "from", "weights")}
            d["export_settings"] = {k: v for k, v in self.manifest.get("settings", {}).items() if k != "versions"}
            d["verification_passed"] = self.manifest.get("verification", {}).get("passed")
            if self.manifest.get("settings", {}).get("precision") == "int8":
                source_settings = self.manifest["settings"].get("source_settings") or {}
                d["export_settings"] = {k: v for k, v in source_settings.items()}
                d["quantize_settings"] = {k: v for k, v in self.manifest["settings"].items()
                                          if k not in ("versions", "source_settings")}
        return d


# a reader for a runtime-native model file: path -> (list of onnx_io.InputSpec, graph precision)
NativeReader = Callable[[Path], tuple[list, str]]


def resolve_model(ref: str, *, batch: int, resolution: int | None, export: ExportConfig | None = None,
                  progress=None, readers: dict[str, NativeReader] | None = None, quantize=None,
                  fuse=None, preprocess: dict | None = None) -> ResolvedModel:
    """``preprocess``: the user's preprocessing (mean, std, crop_pct, interpolation, channel_order, value_range),
    which wins over the manifest's / the file's metadata (``apply_preprocess``); the rest as ``_resolve``."""
    return apply_preprocess(_resolve(ref, batch=batch, resolution=resolution, export=export, progress=progress,
                                     readers=readers, quantize=quantize, fuse=fuse), preprocess)


def _resolve(ref: str, *, batch: int, resolution: int | None, export: ExportConfig | None = None,
             progress=None, readers: dict[str, NativeReader] | None = None, quantize=None,
             fuse=None) -> ResolvedModel:
    """A ready-to-run model file for ``ref`` with its single image input's concrete shape.

    ONNX files and registry models work everywhere; other formats (``.xml`` OpenVINO IR) only when the target
    passes a reader for that suffix in ``readers``.

    ``quantize``: a callable ``(ref, batch, resolution, export, progress) -> path`` that builds (or reuses) the
    int8 variant of ``ref`` (``bench --int8``; the quantize layer passes ``deploykit.quantize``'s builder); the
    int8 file is then resolved like any artifact file, its manifest pointing back to the fp32 source.

    ``fuse``: the graph passes a registry model's export runs (``export.exporter.export_model``)."""
    if quantize is not None:
        path = Path(quantize(ref, batch, resolution, export, progress))
        reader = (readers or {}).get(path.suffix)
        if path.suffix != ".onnx" and reader is not None:  # NNCF's OpenVINO IR, for the target that reads it
            return _native_artifact(path, batch, reader, ref)
        resolved = _resolve_file(path, batch, None)
        if resolved.manifest is not None and resolved.manifest["settings"].get("model") in MODELS:
            resolved.kind = "registry"
        return resolved
    if looks_like_file(ref) and ref not in MODELS:
        path = Path(ref)
        reader = (readers or {}).get(path.suffix)
        if path.suffix != ".onnx" and reader is not None:
            return _resolve_native(path, batch, resolution, reader)
        return _resolve_file(path, batch, resolution)
    get_cfg(ref)  # unknown name -> InputError with suggestions
    from deploykit.export.exporter import export_model

    ecfg = replace(export or ExportConfig(model=ref), model=ref, batch=batch, resolution=resolution)
    res = export_model(ecfg, progress=progress, fuse=fuse)
    proto = load_onnx(res.path, load_external_data=False)
    name, shape, dtype = image_input_shape(proto, batch, resolution or res.manifest["settings"]["resolution"],
                                           where=ref)
    return ResolvedModel(label=ref, kind="registry", path=res.path, sha256=res.manifest["sha256"],
                         input_name=name, input_shape=shape, input_dtype=dtype, precision=graph_precision(proto),
                         manifest=res.manifest, export_seconds=None if res.reused else res.seconds,
                         reused=res.reused, **_from_manifest(res.manifest, ref))


def _resolve_native(path: Path, batch: int, resolution: int | None, reader: NativeReader) -> ResolvedModel:
    import hashlib

    specs, precision = reader(path)
    name, shape, dtype = image_input_from_specs(specs, batch, resolution, where=str(path))
    h = hashlib.sha256()
    for part in (path, path.with_suffix(".bin")):  # IR: the graph and its weights
        if part.is_file():
            with open(part, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return ResolvedModel(label=path.stem, kind="native-file", path=path, sha256=h.hexdigest(), input_name=name,
                         input_shape=shape, input_dtype=dtype, precision=precision)


def _native_artifact(path: Path, batch: int, reader: NativeReader, ref: str) -> ResolvedModel:
    """An int8 artifact in a target's own format (NNCF's IR) as the target reads it, with its manifest's facts
    (precision, preprocessing, the fp32 file it was made from)."""
    resolved = _resolve_native(path, batch, None, reader)
    manifest, _problem = artifacts.manifest_problem(path)
    if manifest is not None:
        resolved.manifest = manifest
        resolved.label = manifest.get("settings", {}).get("model") or resolved.label
        resolved.precision = manifest.get("settings", {}).get("precision") or resolved.precision
        for k, v in _from_manifest(manifest, ref).items():
            setattr(resolved, k, v)
        if manifest.get("settings", {}).get("model") in MODELS:
            resolved.kind = "registry"
    return resolved


def _resolve_file(path: Path, batch: int, resolution: int | None) -> ResolvedModel:
    if path.suffix == ".xml":
        raise InputError(f"{path}: OpenVINO IR files are read by the openvino target only (--target openvino)")
    proto = load_onnx(path, load_external_data=False)  # weights are not needed here (and may be external)
    name, shape, dtype = image_input_shape(proto, batch, resolution, where=str(path))
    sha = model_sha256(path, external_data_files(proto))
    manifest, problem = artifacts.manifest_problem(path)
    if manifest is not None and manifest.get("sha256") != sha:
        manifest = None  # a manifest that does not describe this file's content is ignored
    info: dict[str, Any]
    if manifest is None:
        info = _from_metadata(proto, path)
        if problem:
            info["warnings"].insert(0, f"{problem}: ignored")
        label = path.stem
    else:
        label = manifest["settings"]["model"]
        info = _from_manifest(manifest, label)
    return ResolvedModel(label=label, kind="onnx-file", path=path, sha256=sha, input_name=name, input_shape=shape,
                         input_dtype=dtype, precision=graph_precision(proto), manifest=manifest, **info)


PREPROCESS_KEYS = ("mean", "std", "crop_pct", "interpolation", "channel_order", "value_range")


def _from_metadata(proto, path: Path) -> dict:
    """The preprocessing a file without a manifest states in its metadata (``deploykit.preprocess``), else
    ImageNet's with a warning that says so."""
    import json

    from deploykit.onnxio.files import PREPROCESS_KEY, get_metadata

    raw = get_metadata(proto, PREPROCESS_KEY)
    if raw is not None:
        try:
            values = json.loads(raw)
            if not isinstance(values, dict):
                raise ValueError("not an object")
            return {**_checked_preprocess(values, f"{path.name} metadata {PREPROCESS_KEY}"),
                    "preprocess_source": "metadata", "warnings": []}
        except (ValueError, InputError) as exc:
            return {"preprocess_source": "default", "warnings": [
                f"{path.name}: its {PREPROCESS_KEY} metadata is unusable ({exc}): images are normalised with the "
                "ImageNet mean/std (state the file's with --mean/--std ...)"]}
    return {"preprocess_source": "default", "warnings": [
        f"{path.name} has no deploykit manifest and no preprocessing metadata: images are normalised with the "
        "ImageNet mean/std (state the file's with --mean, --std, --crop-pct, --channel-order, --value-range)"]}


def _checked_preprocess(values: dict, where: str) -> dict:
    """Preprocessing values (from a file's metadata or the user's flags), checked: 1 or 3 finite means, positive
    stds, crop in (0, 1], a known interpolation, rgb/bgr, a positive value range."""
    import math

    out: dict[str, Any] = {}
    for k, v in values.items():
        if k not in PREPROCESS_KEYS:
            raise InputError(f"{where}: unknown preprocessing key {k!r} (known: {', '.join(PREPROCESS_KEYS)})")
        if v is None:
            continue
        if k in ("mean", "std"):
            vals = tuple(float(x) for x in (v if isinstance(v, (list, tuple)) else [v]))
            if len(vals) not in (1, 3) or not all(math.isfinite(x) for x in vals) or \
                    (k == "std" and not all(x > 0 for x in vals)):
                raise InputError(f"{where}: {k} must be 1 or 3 finite numbers{' above 0' if k == 'std' else ''}, "
                                 f"got {v!r}")
            out[k] = vals * 3 if len(vals) == 1 else vals
        elif k == "crop_pct":
            if not (isinstance(v, (int, float)) and 0 < float(v) <= 1):
                raise InputError(f"{where}: crop_pct must be in (0, 1], got {v!r}")
            out[k] = float(v)
        elif k == "interpolation":
            if v not in ("bilinear", "bicubic", "nearest"):
                raise InputError(f"{where}: interpolation must be bilinear, bicubic or nearest, got {v!r}")
            out[k] = v
        elif k == "channel_order":
            if v not in ("rgb", "bgr"):
                raise InputError(f"{where}: channel_order must be rgb or bgr, got {v!r}")
            out[k] = v
        else:
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < float(v) <= 65535):
                raise InputError(f"{where}: value_range must be a positive number (1 or 255), got {v!r}")
            out[k] = float(v)
    return out


def apply_preprocess(model: ResolvedModel, values: dict | None) -> ResolvedModel:
    """``model`` with the preprocessing the user stated (``--mean`` ...), which wins over the file's."""
    from dataclasses import replace

    if not values:
        return model
    checked = _checked_preprocess(dict(values), "preprocessing")
    warnings = [w for w in model.warnings if "ImageNet mean/std" not in w]
    return replace(model, **checked, preprocess_source="flags", warnings=warnings)


def _registered(model: str | None):
    """The registry cfg of ``model`` when it is a registered name (not a pass-through: that would import timm or
    torchvision just to read what the manifest already says), else None."""
    if model and model in MODELS and MODELS.namespace_of(model) is None:
        return get_cfg(model)
    return None


def _from_manifest(manifest: dict, where: str) -> dict:
    """Family, preprocessing and traits as a manifest records them (an int8 artifact's ``source`` is its fp32
    source's). Manifests written before traits were recorded take them from the registry."""
    src = manifest.get("source") or {}
    cfg = _registered(manifest.get("settings", {}).get("model"))
    if "traits" in src:
        traits = ModelTraits.from_dict(src["traits"], f"{where}: manifest") if src["traits"] is not None else None
    else:
        traits = cfg.traits if cfg is not None else None
    family = src.get("family") or (cfg.family if cfg is not None else None)
    return {"family": family, "traits": traits,
            "mean": tuple(src.get("mean") or IMAGENET_MEAN), "std": tuple(src.get("std") or IMAGENET_STD),
            "crop_pct": src.get("crop_pct"), "interpolation": src.get("interpolation") or "bilinear",
            "channel_order": src.get("channel_order") or "rgb", "value_range": float(src.get("value_range") or 1.0),
            "preprocess_source": "manifest"}
