"""ONNX graph passes (BN folding, identity removal) with node-count deltas and numeric verification, plus
analysis: what a graph costs (inspect) and what each runtime fused when it loaded it (runtime_fusion)."""
