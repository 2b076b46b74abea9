"""Resolve what the user named: a model (registry or timm: / tv:, exported on demand, cached) or their own file.

The one resolver: bench, quantize and gate all ask here for a model file with its input shape, preprocessing
(mean, std, crop) and traits, whichever way the model was named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
                  fuse=None) -> ResolvedModel:
    """A ready-to-run model file for ``ref`` with its single image input's concrete shape.

    ONNX files and registry models work everywhere; other formats (``.xml`` OpenVINO IR) only when the target
    passes a reader for that suffix in ``readers``.

    ``quantize``: a callable ``(ref, batch, resolution, export, progress) -> path`` that builds (or reuses) the
    int8 variant of ``ref`` (``bench --int8``; the quantize layer passes ``deploykit.quantize``'s builder); the
    int8 file is then resolved like any artifact file, its manifest pointing back to the fp32 source.

    ``fuse``: the graph passes a registry model's export runs (``export.exporter.export_model``)."""
    if quantize is not None:
        path = quantize(ref, batch, resolution, export, progress)
        resolved = _resolve_file(Path(path), batch, None)
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
    from dataclasses import replace

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
        info = {"warnings": [f"{path.name} has no deploykit manifest: images are normalised with the ImageNet "
                             "mean/std"]}
        if problem:
            info["warnings"].insert(0, f"{problem}: ignored")
        label = path.stem
    else:
        label = manifest["settings"]["model"]
        info = _from_manifest(manifest, label)
    return ResolvedModel(label=label, kind="onnx-file", path=path, sha256=sha, input_name=name, input_shape=shape,
                         input_dtype=dtype, precision=graph_precision(proto), manifest=manifest, **info)


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
            "crop_pct": src.get("crop_pct"), "interpolation": src.get("interpolation") or "bilinear"}
