"""Measurement core shared by every target: timer, stop rule, statistics, runner, fingerprint, fidelity."""
