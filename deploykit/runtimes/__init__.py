"""Inference runtimes (targets), all behind one Runtime interface and one registry. Every module of this package
is imported when the registry is first used (each target module registers itself); see base.py."""

from deploykit.runtimes.base import (  # noqa: F401
    TARGETS,
    Availability,
    ModelInput,
    Runtime,
    get_runtime,
    list_targets,
    read_runtime_graph,
    register_runtime,
)
from deploykit.runtimes.options import RuntimeOptions, TargetOptions, option  # noqa: F401
