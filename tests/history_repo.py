"""A git repository whose commits change a small conv net's cost, for the history / bisect tests and benchmark.

Every commit carries ``model.onnx`` (a stack of 3x3 convolutions + ReLU, then global average pooling) and a line
in ``CHANGELOG.txt``. The cost changes only where the plan says, by adding or removing real convolutions (each
one the same work): by default 20 convs; +1 at commit 10 (~+5%), +3 at commit 20 (~+14%), -4 at commit 27 (an
improvement, ~-17%); 32 commits. Commit dates are one day apart, so a plot's date axis means something.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BASE_CONVS = 20
# commit index -> convolutions added (negative: removed), and what the commit says
PLAN = {10: (+1, "add a 3x3 conv to the trunk (regression, ~+5%)"),
        20: (+3, "three more trunk convs (regression, ~+15%)"),
        27: (-4, "prune four trunk convs (improvement)")}
N_COMMITS = 32


def conv_net(path: Path, n_convs: int, *, channels: int = 16, size: int = 40) -> Path:
    """``n_convs`` identical-cost 3x3 convolutions (fixed weights per layer index) + ReLU, then GAP and flatten."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "input"
    for i in range(n_convs):
        w = (rng.standard_normal((channels, channels if i else 3, 3, 3)) * 0.1).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        x = f"r{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["output"]))
    graph = helper.make_graph(nodes, "convstack",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, channels])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@dataclass
class Commit:
    index: int
    sha: str
    convs: int
    message: str


def git(repo: Path, *args: str, env: dict | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}).stdout.strip()


def build_repo(repo: Path, *, n_commits: int = N_COMMITS, plan: dict | None = None, base: int = BASE_CONVS,
               **net) -> list[Commit]:
    """Create the repository at ``repo`` (a new folder); the commits in order."""
    plan = PLAN if plan is None else plan
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "perf@example.com")
    git(repo, "config", "user.name", "perf")
    convs = base
    out = []
    for i in range(n_commits):
        step = plan.get(i)
        if i == 0 or step:
            convs += step[0] if step else 0
            conv_net(repo / "model.onnx", convs, **net)
        msg = f"c{i:02d}: " + (step[1] if step else "initial model" if i == 0 else f"unrelated change {i}")
        with open(repo / "CHANGELOG.txt", "a") as f:
            f.write(msg + "\n")
        git(repo, "add", "-A")
        date = f"2026-11-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00"
        git(repo, "commit", "-q", "-m", msg, env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
        out.append(Commit(i, git(repo, "rev-parse", "HEAD"), convs, msg))
    return out


def measure_commits(repo: Path, commits: list[Commit], workdir: Path, *, min_time: float = 0.25,
                    threads: int = 1) -> list[dict]:
    """Bench reports (real measurements, one process: deploykit's bench pipeline) of every commit's model.onnx,
    each copied to the same path (one series); each report's ``created`` is its commit's date."""
    from deploykit.bench.plan import plan_runs, run_spec
    from deploykit.core.config import BenchConfig
    from deploykit.report.schema import build_report
    from deploykit.runtimes.options import RuntimeOptions
    from deploykit.spec.run import RunSpec

    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "model.onnx"
    reports = []
    for c in commits:
        path.write_bytes(subprocess.run(["git", "show", f"{c.sha}:model.onnx"], cwd=repo, check=True,
                                        capture_output=True).stdout)
        spec = RunSpec(model=str(path), target="ort", options=RuntimeOptions(threads=threads),
                       measure=BenchConfig(min_time=min_time, warmup=5, min_iters=20, energy="off", seed=0))
        (spec,) = plan_runs([spec])
        report = build_report(run_spec(spec, planned=True))
        report["created"] = git(repo, "log", "-1", "--format=%cd", "--date=format:%Y-%m-%dT%H:%M:%S+0000", c.sha)
        reports.append(report)
    return reports


def measure_relative(repo: Path, commits: list[Commit], anchor_sha: str, workdir: Path, *, rounds: int = 6,
                     block_time: float = 0.08, threads: int = 1) -> list[dict]:
    """Real measurements of every commit's model.onnx, each interleaved (ABBA blocks, bench/interleave.py, in this
    process) with a fixed anchor (the model at ``anchor_sha``), as a CI job with a reference artifact would: per
    commit the candidate's pooled p50 (ms) and the anchor-relative cost exp(median block log-ratio), which a load
    change on the machine moves far less than the raw latency."""
    import math

    from deploykit.bench.interleave import block_config, load_side, log_ratios, run_interleaved, summarize_side
    from deploykit.export.source import resolve_model
    from deploykit.runtimes.base import get_runtime
    from deploykit.runtimes.options import RuntimeOptions

    workdir.mkdir(parents=True, exist_ok=True)

    def show(sha: str, name: str) -> Path:
        p = workdir / name
        p.write_bytes(subprocess.run(["git", "show", f"{sha}:model.onnx"], cwd=repo, check=True,
                                     capture_output=True).stdout)
        return p

    runtime_cls = get_runtime("ort")
    options = RuntimeOptions(threads=threads)
    anchor = load_side("anchor", resolve_model(str(show(anchor_sha, "anchor.onnx")), batch=1, resolution=None),
                       runtime_cls, options)
    block = block_config(block_time=block_time, block_iters=5, block_warmup=1)
    out = []
    try:
        for c in commits:
            cand = load_side("candidate", resolve_model(str(show(c.sha, f"c{c.index:02d}.onnx")), batch=1,
                                                        resolution=None), runtime_cls, options)
            try:
                run = run_interleaved(anchor.side, cand.side, block, min_rounds=rounds, max_rounds=rounds)
            finally:
                cand.close()
            stats = summarize_side(run.rounds, "b")
            out.append({"commit": c, "p50": stats["p50"], "n": stats["n"],
                        "rel": math.exp(float(np.median(log_ratios(run.rounds, "p50"))))})
    finally:
        anchor.close()
    return out
