"""Training the registry's real architectures on a labelled folder (``deploykit train``): small, seeded, on the CPU,
to measure accuracy offline (no pretrained weights can be downloaded here)."""
