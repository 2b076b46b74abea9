"""Reading the files deploykit reads (manifests, caches, baselines, gate files) against a schema with bounds.

Two verdicts, one rule each: an invalid *cache* (a file deploykit wrote for itself) is absent -- ``valid`` says
so and the caller rebuilds it; an invalid *user file* (a baseline, a gate file, an ONNX file's manifest given on
the command line) is a one-line ``InputError`` naming the file and the first violation (``check``).

Every reader refuses non-finite numbers (JSON's NaN / Infinity, TOML's nan / inf): no bound can be checked on
them and no setting or measurement is ever meant to be one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from deploykit.core.errors import InputError
from deploykit.core.guarded import MAX_CACHE_BYTES
from deploykit.core.guarded import read_json as guarded_json

# a JSON file deploykit reads is at most this big (a report with 10^6 samples is ~20 MB)
MAX_JSON_BYTES = 256 * 1024 * 1024


def read_json(path: str | Path, what: str = "file"):
    """The JSON value in ``path``; a missing, unreadable, non-UTF-8, oversized or invalid file (NaN and Infinity
    included), a FIFO, a device or a folder is an InputError naming it (``core.guarded``: the opened descriptor is
    checked, so nothing blocks or reads without end)."""
    return guarded_json(path, max_bytes=MAX_JSON_BYTES, what=what, follow=True)


def read_cache_json(path: str | Path, *, max_bytes: int = MAX_CACHE_BYTES, schema: dict | None = None) -> Any:
    """A cache's JSON value, or None when it is missing or unusable in any way (a link, a FIFO, a device, too
    large, not JSON, a non-finite number, not fitting ``schema``): an invalid cache is an absent one."""
    try:
        data = guarded_json(path, max_bytes=max_bytes, what="cache")
    except InputError:
        return None
    if first_non_finite(data) is not None:
        return None
    if schema is not None and not valid(data, schema):
        return None
    return data


def first_non_finite(obj, path: str = "") -> str | None:
    stack = [(obj, path)]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where or "(top level)"
        if isinstance(value, dict):
            stack.extend((v, f"{where}/{k}" if where else str(k)) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{where}/{i}" if where else str(i)) for i, v in enumerate(value))
    return None


def check(obj, schema: dict, where: str) -> None:
    """Raise InputError (one line: the file, the JSON path, the violation) unless ``obj`` fits ``schema``."""
    bad = first_non_finite(obj)
    if bad is not None:
        raise InputError(f"{where}: {bad} is not a finite number")
    import jsonschema

    err = jsonschema.exceptions.best_match(strict_validator(schema).iter_errors(obj))
    if err is not None:
        path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise InputError(f"{where}: {path}: {' '.join(err.message.split())[:200]}")


def strict_validator(schema: dict):
    """A JSON Schema (2020-12) validator whose "integer" is a whole number written as one: JSON Schema lets 2.0
    pass as an integer, which Python code then passes on as a float (threads=2.0 -> a TypeError deep in a
    runtime)."""
    return _strict_class()(schema)


_STRICT = None


def _strict_class():
    global _STRICT
    if _STRICT is None:
        import jsonschema

        base = jsonschema.Draft202012Validator
        checker = base.TYPE_CHECKER.redefine(
            "integer", lambda _, x: isinstance(x, int) and not isinstance(x, bool))
        _STRICT = jsonschema.validators.extend(base, type_checker=checker)
    return _STRICT


def valid(obj, schema: dict) -> bool:
    """Whether ``obj`` fits ``schema`` (finite numbers only): the test for a cache, which is rebuilt when not."""
    try:
        check(obj, schema, "cache")
    except InputError:
        return False
    return True


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
