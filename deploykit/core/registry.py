"""The one registry pattern used for models, runtimes (targets) and quantization recipes.

    MODELS = Registry("model")
    MODELS.add("resnet50", cfg)

Lookup of an unknown name raises InputError with the closest names suggested.

Namespaces: ``add_namespace("timm", resolve, names)`` makes ``get("timm:convnext_small")`` call
``resolve("convnext_small")`` (which raises InputError for a name it does not know) and cache the result. Such names
are not listed by ``names()`` / ``items()`` (there may be thousands); ``in`` is true for any ``prefix:rest`` whose
prefix is a namespace (the name is meant for this registry; ``get`` says whether it exists).

``loader``: a callable run once before the first lookup (for registries filled by importing modules on demand).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Callable, Generic, Iterator, TypeVar

from deploykit.core.errors import InputError

T = TypeVar("T")
GLOB_CHARS = "*?["


class Registry(Generic[T]):
    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loader = loader
        self._loaded = loader is None
        self._namespaces: dict[str, tuple[Callable[[str], T], Callable[[], list[str]] | None]] = {}
        self._resolved: dict[str, T] = {}

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True  # set first: the loader imports modules that call add()
            if self._loader is not None:
                self._loader()

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if self.namespace_of(name) is not None:
            raise ValueError(f"{self.kind} {name!r}: the prefix is a namespace")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        def deco(item: T) -> T:
            return self.add(name, item)

        return deco

    def add_namespace(self, prefix: str, resolve: Callable[[str], T], names: Callable[[], list[str]] | None = None):
        """``prefix:NAME`` resolves through ``resolve(NAME)``; ``names()`` lists NAMEs for globs (optional)."""
        if prefix in self._namespaces:
            raise ValueError(f"{self.kind} namespace {prefix!r} is registered twice")
        self._namespaces[prefix] = (resolve, names)

    def namespaces(self) -> list[str]:
        return list(self._namespaces)

    def namespace_of(self, name: str) -> str | None:
        if not isinstance(name, str):
            return None
        prefix, sep, rest = name.partition(":")
        return prefix if sep and rest and prefix in self._namespaces else None

    def get(self, name: str) -> T:
        self._ensure_loaded()
        if name in self._items:
            return self._items[name]
        if name in self._resolved:
            return self._resolved[name]
        prefix = self.namespace_of(name)
        if prefix is not None:
            item = self._namespaces[prefix][0](name.partition(":")[2])
            self._resolved[name] = item
            return item
        raise InputError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        msg = f"unknown {self.kind} {name!r}"
        if close:
            msg += "; did you mean " + ", ".join(repr(c) for c in close) + "?"
        if self.kind in ("model", "target"):
            more = "".join(f", or {p}:NAME" for p in self._namespaces)
            msg += f" ('deploykit {self.kind}s' lists them{more})"
        elif self._items and len(self._items) <= 30:  # no command lists them: the message does
            plural = self.kind + ("es" if self.kind.endswith("s") else "s")
            msg += f" (known {plural}: {', '.join(self._items)})"
        return msg

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._items or self.namespace_of(name) is not None

    def names(self) -> list[str]:
        self._ensure_loaded()
        return list(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._ensure_loaded()
        return iter(list(self._items.items()))

    def match(self, pattern: str) -> list[str]:
        """Names matching the shell-style glob ``pattern`` (case-sensitive), in registration order;
        ``prefix:glob`` matches inside a namespace that can list its names."""
        self._ensure_loaded()
        prefix = self.namespace_of(pattern)
        if prefix is not None:
            lister = self._namespaces[prefix][1]
            if lister is None:
                raise InputError(f"{self.kind} names under {prefix}: cannot be listed, so {pattern!r} cannot be "
                                 "expanded; name one exactly")
            return [f"{prefix}:{n}" for n in lister() if fnmatch.fnmatchcase(n, pattern.partition(":")[2])]
        return [n for n in self._items if fnmatch.fnmatchcase(n, pattern)]

    def no_match_message(self, pattern: str) -> str:
        """One line for a glob that matches nothing, with close names."""
        prefix = self.namespace_of(pattern)
        pool = list(self._items)
        lister = self._namespaces[prefix][1] if prefix is not None else None
        if lister is not None:
            pool = [f"{prefix}:{n}" for n in lister()]
        close = close_to_pattern(pattern, pool)
        msg = f"no {self.kind} name matches {pattern!r}"
        if close:
            msg += "; close names: " + ", ".join(close)
        msg += f" ('deploykit {self.kind}s' lists them)" if self.kind in ("model", "target") and prefix is None else ""
        return msg


def is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS)


def close_to_pattern(pattern: str, names: list[str], n: int = 3, cutoff: float = 0.7) -> list[str]:
    """Names close to a glob that matched nothing: each literal piece of the pattern is compared with the best
    window of the name (the name's start for a pattern that does not start with a wildcard, its end likewise), and
    a name scores the mean over the pieces."""
    pieces = [p for p in re.split(r"\*|\?|\[[^\]]*\]?", pattern) if p]
    if not pieces:
        return []
    anchored_start = not is_glob(pattern[0])
    anchored_end = not is_glob(pattern[-1]) and not pattern.endswith("]")

    def window_ratio(piece: str, name: str, where: str | None) -> float:
        k = len(piece)
        if where == "start":
            windows = [name[:k]]
        elif where == "end":
            windows = [name[-k:]]
        else:
            windows = [name[i:i + k] for i in range(max(1, len(name) - k + 1))]
        return max(difflib.SequenceMatcher(None, piece, w).ratio() for w in windows)

    scored = []
    for name in names:
        total = 0.0
        for i, piece in enumerate(pieces):
            where = "start" if i == 0 and anchored_start else "end" if i == len(pieces) - 1 and anchored_end else None
            total += window_ratio(piece, name, where)
        score = total / len(pieces)
        if score >= cutoff:
            scored.append((-score, name))
    return [name for _, name in sorted(scored)[:n]]
