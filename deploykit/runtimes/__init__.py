"""Inference runtimes (targets), all behind one Runtime interface and one registry."""

from deploykit.runtimes.base import (  # noqa: F401
    TARGETS,
    Availability,
    ModelInput,
    Runtime,
    get_runtime,
    list_targets,
    register_runtime,
)
