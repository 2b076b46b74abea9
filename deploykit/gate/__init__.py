"""The latency regression gate: its configuration and gate file (config, gatefile), the ABBA-interleaved run
that measures both sides with bench/ (run), the decision statistics (decision) and the outputs (JUnit, GitHub
annotations, Markdown summary, JSON document: output)."""
