"""Unit tests: one module at a time, no real model exported or benchmarked (tests/conftest.py refuses a test
here that is marked slow, and fails any unmarked test that exports one), a few seconds in all:
``pytest tests/unit`` or ``pytest -m "not slow"``."""
