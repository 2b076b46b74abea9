"""The generic ONNX layer under export, runtimes and passes: load / check / save ONNX files and read their
inputs (files), seeded reference inputs and saved reference outputs (reference), numeric comparison against a
reference (verify), and the one ONNX Runtime CPU session factory (session)."""
