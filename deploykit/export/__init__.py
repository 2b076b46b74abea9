"""PyTorch -> ONNX export, checking, verification against PyTorch, and the artifact store."""
