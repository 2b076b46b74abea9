"""What a model reference names, and shell-style globs over model names.

A reference is a model file (a path, or a name ending in .onnx / .xml, or an existing file) or a model name: a
registry name or ``timm:NAME`` / ``tv:NAME``. Globs (``parc_*``, ``resnet?8``, ``timm:convnext_*``) expand
against model names, never against files (the shell globs files).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from deploykit.core.errors import InputError
from deploykit.core.registry import is_glob
from deploykit.models.registry import MODELS


def looks_like_file(ref: str) -> bool:
    return ref.endswith((".onnx", ".xml")) or os.sep in ref or (os.altsep or "\0") in ref or Path(ref).is_file()


def is_model_name(ref: str) -> bool:
    """``ref`` names a model (registry or pass-through) rather than a file."""
    return ref in MODELS or not looks_like_file(ref)


def expand_model_refs(refs: Iterable[str]) -> list[str]:
    """``refs`` with every glob replaced by the model names it matches (registration order; sorted within a
    timm: / tv: namespace); files and plain names are kept as they are. Duplicates are dropped (first wins).
    A glob that matches nothing is an InputError with close names."""
    out: list[str] = []
    for ref in refs:
        if looks_like_file(ref) and ref not in MODELS or not is_glob(ref):
            names = [ref]
        else:
            names = MODELS.match(ref)
            if not names:
                raise InputError(MODELS.no_match_message(ref))
        out += [n for n in names if n not in out]
    return out
