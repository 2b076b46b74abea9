"""Guard rails of the package structure: the layering contract (import-linter, deferred imports included), no
import cycle between deploykit's modules, every module importable and every command's help working with only the
base install, and help text on every command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[2]

# optional extras (and GPU-only packages) blocked in the "base install" test below
EXTRAS = ("openvino", "nncf", "tensorrt", "cuda", "pynvml", "mlperf_loadgen", "submitit", "ruptures")


def test_layering_contract_is_kept():
    """pyproject.toml's [tool.importlinter] contracts: imports only point down the layers, deferred imports
    included, and only the CLI imports click/rich."""
    lint = Path(sys.executable).with_name("lint-imports")
    cmd = [str(lint)] if lint.exists() else [sys.executable, "-c",
                                              "import sys; from importlinter.cli import lint_imports_command as c; "
                                              "sys.exit(c())"]
    proc = subprocess.run(cmd + ["--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "Contracts: 2 kept, 0 broken" in proc.stdout, proc.stdout[-2000:]


def import_cycles(package: str = "deploykit") -> list[list[str]]:
    """Strongly connected groups of modules (deferred imports included), Tarjan's algorithm on grimp's graph."""
    import grimp

    graph = grimp.build_graph(package, cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in sorted(graph.modules):
        if m not in index:
            visit(m)
    return cycles


def test_no_import_cycle_between_modules():
    assert import_cycles() == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "cyclic_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from cyclic_pkg import b\n")
    (pkg / "b.py").write_text("import cyclic_pkg.a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic_pkg") == [["cyclic_pkg.a", "cyclic_pkg.b"]]


_BASE_INSTALL = f"""
import importlib, importlib.abc, pkgutil, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Block())
import deploykit
failed = []
for m in pkgutil.walk_packages(deploykit.__path__, "deploykit."):
    if m.name.endswith(".__main__"):  # runs the CLI
        continue
    try:
        importlib.import_module(m.name)
    except Exception as exc:
        failed.append(f"{{m.name}}: {{type(exc).__name__}}: {{exc}}")
assert not failed, failed

import click
from click.testing import CliRunner
from deploykit.cli import cli

def walk(group, prefix):
    for name, cmd in sorted(group.commands.items()):
        yield prefix + [name], cmd
        if isinstance(cmd, click.Group):
            yield from walk(cmd, prefix + [name])

runner = CliRunner()
count = 0
for path, cmd in walk(cli, []):
    r = runner.invoke(cli, path + ["-h"], prog_name="deploykit")
    assert r.exit_code == 0, (path, r.output, r.exception)
    assert "Usage: deploykit " + " ".join(path) in r.output, (path, r.output)
    count += 1
print("commands", count)
"""


def test_every_module_imports_and_every_command_helps_without_the_extras():
    """With openvino, nncf, tensorrt, cuda-python, pynvml (every optional extra) made unimportable, each
    deploykit module still imports and each command's -h works."""
    proc = subprocess.run([sys.executable, "-c", _BASE_INSTALL], capture_output=True, text=True, cwd=REPO,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    from deploykit.cli import cli

    n = sum(1 + len(getattr(c, "commands", {})) for c in cli.commands.values())
    assert f"commands {n}" in proc.stdout


def _commands(group: click.Group, prefix: str = ""):
    for name, cmd in sorted(group.commands.items()):
        yield prefix + name, cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + name + " ")


def test_every_command_has_help_text():
    from deploykit.cli import cli

    for name, cmd in _commands(cli):
        assert (cmd.help or "").strip(), f"'deploykit {name} --help' shows no description"
