"""ONNX graph passes (BN folding, identity removal) with node-count deltas and numeric verification, plus
analysis: what a graph costs (inspect). What each runtime fused when it loaded a graph is read back by the
runtime itself (``Runtime.runtime_graph`` in deploykit.runtimes)."""
