"""int8 post-training quantization: calibration data readers, ONNX Runtime QDQ, NNCF for OpenVINO, the softmax
path for attention, per-layer sensitivity, fidelity and accuracy against fp32 (``pipeline.quantize_model``)."""
