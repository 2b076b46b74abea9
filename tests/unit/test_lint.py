"""The linter and the type checker, configured in pyproject.toml ([tool.ruff], [tool.mypy]), report nothing.

Each skips (saying how to install it) where the tool is not installed; both come with the dev extra."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tool: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} not installed: pip install -e '.[dev]'")
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_ruff_reports_nothing():
    r = _run("ruff", "check", "--no-fix", "--output-format", "concise", "deploykit", "tests", "benchmarks",
             timeout=120)
    assert r.returncode == 0, f"ruff check (fix with `ruff check --fix` where it can):\n{r.stdout}{r.stderr}"


def test_mypy_reports_no_error():
    # the files and options come from pyproject.toml; the cache (.mypy_cache) makes a rerun take seconds
    r = _run("mypy", "--no-error-summary", "--no-pretty", timeout=600)
    assert r.returncode == 0, f"mypy:\n{r.stdout}{r.stderr}"
