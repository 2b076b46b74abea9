"""The artifact store as a user sees it: what takes room, and pruning it (``deploykit cache list|prune``).

A *variant* is one artifact with everything named after it in its model's folder: ``<model>/<stem>.onnx`` (or
an OpenVINO ``.xml`` / ``.bin``), its ``.manifest.json``, its external data and its reference outputs
(``<stem>.ref-b1-s0.npz``). Files in a model folder that belong to no manifest are listed as their own variant
(``manifest: no``). The ``.cache`` folder (compiled OpenVINO blobs, TensorRT engines, complexity counts, the
GEMM peak) is listed per subfolder / file as ``.cache`` entries. Pruning removes whole variants and cache entries,
never a part of one, and removes folders it leaves empty.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

MANIFEST_SUFFIX = ".manifest.json"
CACHE = ".cache"


@dataclass(frozen=True)
class Entry:
    model: str  # the model's folder, or ".cache"
    variant: str  # the artifact's stem, or the cache entry's name
    files: tuple[Path, ...]
    bytes: int
    modified: float  # newest modification time of its files (epoch seconds)
    managed: bool  # a manifest describes it (variants) / a cache entry

    def record(self) -> dict:
        return {"model": self.model, "variant": self.variant, "files": len(self.files), "bytes": self.bytes,
                "modified": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.modified)),
                "manifest": self.managed, "paths": [str(f) for f in self.files]}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _entry(model: str, variant: str, files: list[Path], managed: bool) -> Entry:
    stats = [f.stat() for f in files]
    return Entry(model, variant, tuple(files), sum(s.st_size for s in stats),
                 max((s.st_mtime for s in stats), default=0.0), managed)


def list_store(models_dir: Path) -> list[Entry]:
    """Every variant of every model folder, then the cache entries; sorted by model, newest variant first."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    out: list[Entry] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        if folder.name == CACHE:
            continue
        files = _files(folder)
        stems = sorted((f.name[:-len(MANIFEST_SUFFIX)] for f in files if f.name.endswith(MANIFEST_SUFFIX)),
                       key=len, reverse=True)  # the longest stem claims a file first (fp32 vs fp32_x)
        groups: dict[tuple[str, bool], list[Path]] = {}
        for f in files:
            rel = f.relative_to(folder).as_posix()
            stem = next((s for s in stems if rel == s or rel.startswith(s + ".") or rel.startswith(s + "/")), None)
            key = (stem, True) if stem else (rel.split("/", 1)[0].split(".", 1)[0], False)
            groups.setdefault(key, []).append(f)
        variants = [_entry(folder.name, name, fs, managed) for (name, managed), fs in groups.items()]
        out += sorted(variants, key=lambda e: -e.modified)
    cache = root / CACHE
    if cache.is_dir():
        for item in sorted(cache.iterdir()):
            fs = _files(item) if item.is_dir() else [item]
            if fs:
                out.append(_entry(CACHE, item.name, fs, True))
    return out


def select_prune(entries: list[Entry], *, older_than_s: float | None = None, keep: int | None = None,
                 now: float | None = None) -> list[Entry]:
    """The entries to remove: those not modified for ``older_than_s`` seconds, and/or all but the ``keep`` newest
    variants of each model (cache entries and files no manifest describes go by their age only). Both given: an
    entry goes when either says so."""
    now = time.time() if now is None else now
    chosen: list[Entry] = []
    per_model: dict[str, int] = {}
    for e in sorted(entries, key=lambda e: (e.model, -e.modified)):
        old = older_than_s is not None and now - e.modified > older_than_s
        surplus = False
        if keep is not None and e.model != CACHE and e.managed:
            per_model[e.model] = per_model.get(e.model, 0) + 1
            surplus = per_model[e.model] > keep
        if old or surplus:
            chosen.append(e)
    return chosen


def remove(entries: list[Entry], models_dir: Path) -> int:
    """Delete the entries' files and the folders they leave empty (inside ``models_dir`` only); the bytes freed."""
    root = Path(models_dir).resolve()
    freed = 0
    for e in entries:
        for f in e.files:
            try:
                f.resolve().relative_to(root)
            except ValueError:
                continue  # never outside the store
            try:
                size = f.stat().st_size
                f.unlink()
                freed += size
            except FileNotFoundError:
                continue
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            d.rmdir()  # only empty ones
        except OSError:
            pass
    return freed


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s`` or a number of days -> seconds."""
    from deploykit.core.errors import UsageError

    t = str(text).strip().lower()
    unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}.get(t[-1:], None)
    num = t[:-1] if unit else t
    try:
        value = float(num)
    except ValueError:
        raise UsageError(f"--older-than: expected an age such as 30d, 12h or 90m, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise UsageError(f"--older-than: expected a non-negative age, got {text!r}")
    return value * (unit or 86400)
