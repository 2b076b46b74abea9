"""deploykit: export, quantize and measure vision models on real inference runtimes."""

__version__ = "0.1.0"
