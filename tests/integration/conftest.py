"""Integration tests: real models exported, quantized and measured on real runtimes (ONNX Runtime, OpenVINO;
TensorRT and CUDA where present). Tests here that export or benchmark a real model carry the ``slow`` marker
(automatically when they use the exported-model fixtures of tests/conftest.py)."""
