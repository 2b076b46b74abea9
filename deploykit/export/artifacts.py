"""The artifact store: ``<models_dir>/<model>/<variant>.onnx`` plus ``<variant>.manifest.json``.

An artifact is reused when its manifest records the same settings and the file's SHA-256 still matches
the manifest (content-addressed); anything else is rebuilt. The manifest is written last, so an artifact
without a valid manifest is never reused.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from deploykit.core.hashing import file_sha256

MANIFEST_SCHEMA = "deploykit.manifest"
MANIFEST_VERSION = 1


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
    outside [A-Za-z0-9_.-] (a file stem's) -> ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label.replace(":", ".", 1))


def artifact_path(models_dir: Path, model: str, variant: str) -> Path:
    return Path(models_dir) / folder_name(model) / f"{variant}.onnx"


def manifest_path(onnx_path: Path) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + ".manifest.json")


def reference_path(onnx_path: Path, seed: int, batch: int) -> Path:
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}.ref-b{batch}-s{seed}.npz")


def read_manifest(onnx_path: Path) -> dict | None:
    p = manifest_path(onnx_path)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if data.get("schema") != MANIFEST_SCHEMA or data.get("schema_version") != MANIFEST_VERSION:
        return None
    return data


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
    if manifest.get("sha256") != file_sha256(onnx_path):
        return None
    return manifest


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
