"""The target registry. A target module registers its Runtime class with ``@register_runtime("name")``; the
registry finds the modules by importing every module of the ``deploykit.runtimes`` package the first time it is
asked for a target -- a package scan, not a list, so a new target is one new module and nothing else."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

from deploykit.core.registry import Registry


PLUGIN_GROUP = "deploykit.targets"  # entry points of installed packages that add targets (their own module each)


def _discover() -> None:
    package = sys.modules[__package__]  # deploykit.runtimes: always imported before any of its modules
    for mod in pkgutil.iter_modules(package.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__package__}.{mod.name}")
    # a target from another installed package: its distribution declares an entry point in the group
    # 'deploykit.targets' naming the module that registers it (one module, as for deploykit's own targets)
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        importlib.import_module(ep.value.partition(":")[0])


TARGETS: Registry[Any] = Registry("target", loader=_discover)


def register_runtime(name: str):
    """Class decorator of a target: ``@register_runtime("ort") class OrtCpuRuntime(Runtime): ...``. Checks the
    target's declared capabilities against the methods it implements (TypeError: a bug in the target module)."""

    def deco(cls):
        cls.name = name
        cls.check_capabilities()
        return TARGETS.add(name, cls)

    return deco


def get_runtime(name: str):
    """The Runtime class of target ``name`` (unknown: InputError with the closest names)."""
    return TARGETS.get(name)


def ordered_targets() -> list[tuple[str, Any]]:
    """The registered targets, in the order `deploykit targets` lists them (``rank``, then name)."""
    return sorted(TARGETS.items(), key=lambda item: (item[1].rank, item[0]))
