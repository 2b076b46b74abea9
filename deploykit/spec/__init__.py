"""The run spec (``RunSpec``): one frozen, serialisable description of one run, built and checked in one place.
Below bench/ (which measures it) and above the runtimes, quantize and export layers (whose configs it holds)."""

from deploykit.spec.loadgen import LoadgenConfig  # noqa: F401
from deploykit.spec.run import (  # noqa: F401
    INT8,
    LATENCY,
    SPEC_FILE,
    RunSpec,
    from_values,
    generic_keys,
    options_text,
    read_spec,
    runtime_options_from,
    write_spec,
)
