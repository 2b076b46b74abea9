"""The one registry pattern used for models, runtimes (targets) and later quantizers.

    MODELS = Registry("model")
    @MODELS.register("resnet50", family="cnn", ...)
    def build(...): ...

Lookup of an unknown name raises InputError with the closest names suggested.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from deploykit.core.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, loader: Callable[[], None] | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._loader = loader
        self._loaded = loader is None

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._loaded = True  # set first: the loader imports modules that call add()
            self._loader()

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item
        return item

    def register(self, name: str) -> Callable[[T], T]:
        def deco(item: T) -> T:
            return self.add(name, item)

        return deco

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._items[name]
        except KeyError:
            raise InputError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        msg = f"unknown {self.kind} {name!r}"
        if close:
            msg += "; did you mean " + ", ".join(repr(c) for c in close) + "?"
        msg += f" ('deploykit {self.kind}s' lists them)" if self.kind in ("model", "target") else ""
        return msg

    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._items

    def names(self) -> list[str]:
        self._ensure_loaded()
        return list(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._ensure_loaded()
        return iter(list(self._items.items()))
