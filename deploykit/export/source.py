"""Resolve what the user named: a registry model (exported on demand, cached) or their own ONNX file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deploykit.core.config import ExportConfig
from deploykit.core.errors import InputError
from deploykit.export import artifacts
from deploykit.onnxio.files import graph_precision, image_input_from_specs, image_input_shape, load_onnx
from deploykit.models.registry import MODELS, get_cfg
from deploykit.core.hashing import file_sha256


@dataclass
class ResolvedModel:
    label: str  # registry name, or the file's stem
    kind: str  # "registry" | "onnx-file" | "native-file" (a runtime's own format, e.g. OpenVINO IR)
    path: Path
    sha256: str
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str
    precision: str  # fp32 | fp16 | int8 (from the graph)
    manifest: dict | None = None
    family: str | None = None
    export_seconds: float | None = None
    reused: bool | None = None

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
                d["export_settings"] = {k: v for k, v in (self.manifest["settings"].get("source_settings") or {}).items()}
                d["quantize_settings"] = {k: v for k, v in self.manifest["settings"].items()
                                          if k not in ("versions", "source_settings")}
        return d


def looks_like_file(ref: str) -> bool:
    return ref.endswith((".onnx", ".xml")) or os.sep in ref or (os.altsep or "\0") in ref or Path(ref).is_file()


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
            resolved.kind, resolved.family = "registry", get_cfg(resolved.manifest["settings"]["model"]).family
        return resolved
    if looks_like_file(ref) and ref not in MODELS:
        path = Path(ref)
        if path.suffix != ".onnx" and path.suffix in (readers or {}):
            return _resolve_native(path, batch, resolution, readers[path.suffix])
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
                         manifest=res.manifest, family=get_cfg(ref).family,
                         export_seconds=None if res.reused else res.seconds, reused=res.reused)


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
    proto = load_onnx(path)
    name, shape, dtype = image_input_shape(proto, batch, resolution, where=str(path))
    sha = file_sha256(path)
    manifest = artifacts.read_manifest(path)
    if manifest is not None and manifest.get("sha256") != sha:
        manifest = None  # a manifest that does not describe this file's content is ignored
    family = manifest.get("source", {}).get("family") if manifest else None
    if family is None and manifest is not None and manifest.get("settings", {}).get("model") in MODELS:
        family = get_cfg(manifest["settings"]["model"]).family
    label = manifest["settings"]["model"] if manifest else path.stem
    return ResolvedModel(label=label, kind="onnx-file", path=path, sha256=sha, input_name=name, input_shape=shape,
                         input_dtype=dtype, precision=graph_precision(proto), manifest=manifest, family=family)
