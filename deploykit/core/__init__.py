"""Lowest layer: errors, lazy imports of optional dependencies, atomic file writes, registries."""
