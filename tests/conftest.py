"""Shared fixtures. Real components only: real torch models, real ONNX exports, real ONNX Runtime sessions.

Small models at small resolutions keep the suite fast on 2 CPU cores; the exported artifacts are built once
per session and shared (read-only) by the tests that need them.

The ``slow`` marker: every test that exports or benchmarks a real model carries it (``-m "not slow"`` runs the
quick rest). A test that uses one of the exported-model fixtures gets it here automatically; a test that
exports in-process without the marker fails (see ``_unmarked_tests_export_nothing``); tests that export or
benchmark through a subprocess carry ``@pytest.mark.slow`` themselves.

In parallel (``pytest -n N``, pytest-xdist; ``make test``): every worker is its own session with its own
temporary folders, so each session fixture is built per worker and nothing is shared by accident. The two
exported models are the exception worth sharing: the first worker to need one exports it under a file lock in
the folder all workers of the run share (xdist's basetemp parent), and every worker copies that artifact
folder into its own ``store``, where the artifact store reuses it (same settings, same SHA-256). Tests marked
``serial`` assert on timing with tight bounds; ``make test`` runs them after the parallel part, alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# fixtures that export real models: a test using any of them (directly or through another fixture) is slow
REAL_MODEL_FIXTURES = {"store", "resnet18_64", "deit_tiny_64"}


UNIT = REPO / "tests" / "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("slow") is not None and UNIT in Path(str(item.fspath)).parents:
            raise pytest.UsageError(f"{item.nodeid} exports or benchmarks a real model (marked slow): it belongs in "
                                    "tests/integration/")


@pytest.fixture(autouse=True)
def _unmarked_tests_export_nothing(request, monkeypatch):
    """A test without the slow marker must not export a real model: the exporter's torch step fails it."""
    if request.node.get_closest_marker("slow") is not None:
        return

    def refuse(*args, **kwargs):
        pytest.fail(f"{request.node.nodeid} exports a real model: mark it @pytest.mark.slow (or move the export "
                    "into a fixture of REAL_MODEL_FIXTURES)", pytrace=False)

    monkeypatch.setattr("deploykit.export.exporter._torch_export", refuse)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path, monkeypatch):
    """Every test writes artifacts and reports into its own temporary folders, never into the repo."""
    monkeypatch.setenv("DEPLOYKIT_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("DEPLOYKIT_REPORTS", str(tmp_path / "reports"))
    monkeypatch.delenv("DEPLOYKIT_DEBUG", raising=False)


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Path:
    """A session-wide artifact store holding the small exported models below."""
    return tmp_path_factory.mktemp("store")


def _exported(model: str, store: Path, tmp_path_factory):
    """``model`` at 64 px exported into ``store``; under pytest-xdist exported once per run (see the module doc)."""
    from deploykit.core.config import ExportConfig
    from deploykit.export.exporter import export_model
    from deploykit.passes.fuse import export_transform

    cfg = ExportConfig(model=model, resolution=64, models_dir=store)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import shutil
        from dataclasses import replace

        from filelock import FileLock

        shared = tmp_path_factory.getbasetemp().parent / "shared-store"  # the run's folder, above every worker's
        shared.mkdir(exist_ok=True)
        with FileLock(str(shared / f"{model}.lock")):
            done = export_model(replace(cfg, models_dir=shared), fuse=export_transform)
            shutil.copytree(done.path.parent, store / done.path.parent.name, dirs_exist_ok=True)
    return export_model(cfg, fuse=export_transform)  # reuses the copy under xdist


@pytest.fixture(scope="session")
def resnet18_64(store, tmp_path_factory):
    return _exported("resnet18", store, tmp_path_factory)


@pytest.fixture(scope="session")
def deit_tiny_64(store, tmp_path_factory):
    return _exported("deit_tiny", store, tmp_path_factory)


@pytest.fixture
def cli_runner():
    from click.testing import CliRunner

    return CliRunner()


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 600):
    """Run ``python -m deploykit ARGS`` as a real subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "deploykit", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def assert_clean_error(proc_or_result, code: int, *needles: str, alone: bool = True):
    """The expected exit code, no traceback, and one line 'error: ...' as the last line of stderr (the only
    line when ``alone``; progress lines may precede it when work had started)."""
    if hasattr(proc_or_result, "returncode"):
        rc, err = proc_or_result.returncode, proc_or_result.stderr
    else:
        rc, err = proc_or_result.exit_code, proc_or_result.stderr
    assert rc == code, f"exit {rc}, stderr: {err}"
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith("error: "), err
    assert sum(ln.startswith("error:") for ln in lines) == 1, err
    if alone:
        assert len(lines) == 1, err
    for n in needles:
        assert n.lower() in lines[-1].lower(), f"{n!r} not in {lines[-1]!r}"
    return lines[-1]


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).exists() else []


def train_on_digits(root: Path, *, epochs: int, size: int = 32) -> tuple[Path, dict]:
    """scikit-learn's digits written as a folder under ``root`` and a ResNet-18 trained on its train split (seeded,
    2 threads): (the data folder, the training description); the checkpoint is ``root / "r18.pt"``."""
    from deploykit.datasets.builtin import write_digits
    from deploykit.train.classifier import TrainConfig, train

    data = root / "digits"
    write_digits(data, size=size, seed=0)
    desc = train(TrainConfig(model="resnet18", data=str(data), resolution=size, epochs=epochs, seed=0, threads=2),
                 root / "r18.pt")
    return data, desc
