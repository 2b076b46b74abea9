"""The artifact store: ``<models_dir>/<model>/<variant>.onnx`` plus ``<variant>.manifest.json``.

An artifact is reused when its manifest records the same settings and the file's SHA-256 still matches
the manifest (content-addressed); anything else is rebuilt. The manifest is written last, so an artifact
without a valid manifest is never reused. A manifest is read against ``MANIFEST_JSON_SCHEMA`` (types and bounds):
one that does not fit is treated as absent -- the artifact is rebuilt, a user's file is read without it.

Names that become paths (a model label -> its folder in the store) are made safe by ``folder_name``: never
``.``, ``..``, a leading dot or a separator, so a manifest cannot steer a write outside the store.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from deploykit.core.hashing import file_sha256

MANIFEST_SCHEMA = "deploykit.manifest"
MANIFEST_VERSION = 1

_SHA = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SHA_OR_NULL = {"anyOf": [_SHA, {"type": "null"}]}
_COUNT = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
_RES = {"type": "integer", "minimum": 1, "maximum": 65_536}
# a model label as deploykit writes one: a registry name, timm:/tv: NAME, or a file's stem
MODEL_LABEL = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^(?!\\.{1,2}$)[^/\\\\\\x00]+$"}
_FILE_NAME = {"type": "string", "minLength": 1, "maxLength": 255,
              "pattern": "^(?!\\.{1,2}$)[^/\\\\\\x00]+$"}  # a name in the artifact's own folder
_SETTINGS: dict[str, Any] = {
    "type": "object",
    "required": ["model", "precision", "batch", "resolution", "opset"],
    "properties": {
        "model": MODEL_LABEL,
        "precision": {"enum": ["fp32", "fp16", "bf16", "int8"]},
        "batch": _COUNT,
        "resolution": _RES,
        "opset": {"type": "integer", "minimum": 1, "maximum": 1000},
        "dynamic_batch": {"type": "boolean"},
        "seed": {"type": "integer"},
        "weights_sha256": _SHA_OR_NULL,
        "options": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        "source_sha256": _SHA,
        "source_settings": {"type": ["object", "null"]},
    },
}
MANIFEST_JSON_SCHEMA = {
    "type": "object",
    "required": ["schema", "schema_version", "artifact", "sha256", "settings", "source"],
    "properties": {
        "schema": {"const": MANIFEST_SCHEMA},
        "schema_version": {"const": MANIFEST_VERSION},
        "artifact": _FILE_NAME,
        "sha256": _SHA,
        "bin_sha256": _SHA,
        "bytes": {"type": "integer", "minimum": 0},
        "external_data": {"type": "array", "items": _FILE_NAME, "maxItems": 10_000},
        "settings": {**_SETTINGS, "properties": {**_SETTINGS["properties"], "source_settings": {
            "anyOf": [{"type": "null"}, {"type": "object", "properties": _SETTINGS["properties"]}]}}},
        "source": {
            "type": "object",
            "properties": {
                "model": {"type": ["string", "null"]},
                "family": {"type": ["string", "null"]},
                "weights": {"type": ["string", "null"]},
                "weights_sha256": _SHA_OR_NULL,
                "mean": {"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 4},
                "std": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1,
                        "maxItems": 4},
                "crop_pct": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0, "maximum": 10}]},
                "interpolation": {"anyOf": [{"type": "null"}, {"enum": ["bilinear", "bicubic", "nearest"]}]},
                "traits": {"anyOf": [{"type": "null"}, {
                    "type": "object", "required": ["attention", "recipe"],
                    "properties": {"attention": {"type": "boolean"}, "recipe": {"type": "string"}}}]},
                "fp32_artifact": {"type": "string"},
                "fp32_sha256": _SHA,
            },
        },
        "verification": {"type": "object", "properties": {"passed": {"type": ["boolean", "null"]}}},
        "onnx": {"type": "object", "properties": {
            "op_histogram": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}}},
        "quantization": {"type": "object", "properties": {
            "warnings": {"type": "array", "items": {"type": "string"}}}},
    },
}


def variant_name(precision: str, batch: int, resolution: int, opset: int, *, dynamic_batch: bool = False,
                 seed: int = 0, weights_sha: str | None = None, options: dict | None = None, tag: str = "") -> str:
    parts = [precision, "bdyn" if dynamic_batch else f"b{batch}", f"r{resolution}", f"op{opset}"]
    parts += [f"{k.split('_')[-1]}-{v}" for k, v in sorted((options or {}).items())]
    if seed:
        parts.append(f"s{seed}")
    if weights_sha:
        parts.append(f"w{weights_sha[:8]}")
    if tag:
        parts.append(tag)
    return "_".join(parts)


def folder_name(label: str) -> str:
    """The artifact folder of a model label: a registry name as it is; ``timm:NAME`` -> ``timm.NAME``; anything
    outside [A-Za-z0-9_.-] (a file stem's) -> ``_``; a leading dot (``.``, ``..``, hidden names) -> ``_``, so the
    folder is always a child of the store."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", label.replace(":", ".", 1))[:200]
    return "_" + name[1:] if name.startswith(".") else (name or "_")


def artifact_path(models_dir: Path, model: str, variant: str) -> Path:
    return Path(models_dir) / folder_name(model) / f"{variant}.onnx"


def manifest_path(onnx_path: Path) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + ".manifest.json")


def reference_path(onnx_path: Path, seed: int, batch: int) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.ref-b{batch}-s{seed}.npz")


def read_manifest(onnx_path: Path) -> dict | None:
    """The manifest beside ``onnx_path``, or None when there is none or it is unreadable or does not fit
    ``MANIFEST_JSON_SCHEMA`` (an invalid manifest is no manifest)."""
    return manifest_problem(onnx_path)[0]


def manifest_problem(onnx_path: Path) -> tuple[dict | None, str | None]:
    """(manifest, None), (None, None) when there is no manifest, or (None, why it was ignored)."""
    from deploykit.core.errors import InputError
    from deploykit.core.validate import check, read_json

    p = manifest_path(onnx_path)
    if not p.is_file():
        return None, None
    try:
        data = read_json(p, "manifest")
        check(data, MANIFEST_JSON_SCHEMA, f"manifest {p.name}")
    except InputError as exc:
        return None, exc.one_line()
    return data, None


def artifact_sha256(onnx_path: Path, manifest: dict | None = None) -> str:
    """The content identity of an artifact file: its bytes and the external data files it names (as its manifest
    lists them; an OpenVINO IR's .bin is checked apart)."""
    from deploykit.onnxio.files import model_sha256

    if Path(onnx_path).suffix != ".onnx":
        return file_sha256(onnx_path)
    return model_sha256(onnx_path, list((manifest or {}).get("external_data") or []))


def reusable(onnx_path: Path, settings: dict) -> dict | None:
    """The manifest of a valid artifact built with exactly ``settings``, else None."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        return None
    manifest = read_manifest(onnx_path)
    if manifest is None or manifest.get("settings") != json.loads(json.dumps(settings)):
        return None
    if not manifest.get("verification", {}).get("passed", True):
        return None
    if manifest.get("sha256") != artifact_sha256(onnx_path, manifest):
        return None
    return manifest


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
