"""Graph passes with node-count deltas, verified numerically against the graph before the passes.

``fuse_model`` runs the passes in order (``identity`` then ``fold-bn`` by default), records the op histogram
before and after and what each pass changed, then runs both graphs in ONNX Runtime with every graph
optimisation disabled (the most literal execution) on the same seeded inputs: the outputs must agree within
1e-4 of the output range (max-abs error / max |reference|), using ``onnxio.verify.compare``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from deploykit.core.errors import InputError, UsageError, VerificationError
from deploykit.core.registry import Registry
from deploykit.onnxio.files import op_histogram
from deploykit.onnxio.reference import make_input
from deploykit.onnxio.verify import Tolerance, compare, passes
from deploykit.passes.bn_fold import count_batchnorm, fold_batchnorm
from deploykit.passes.graph import GraphView, prune_unused_initializers, remove_nodes, rename_input

FUSE_TOLERANCE = Tolerance(rtol=1e-4, min_cosine=0.99999)

PASSES: Registry[Callable] = Registry("pass")


@PASSES.register("identity")
def eliminate_identity(model) -> dict:
    """Remove Identity nodes (their readers read the Identity's input instead). The TorchScript exporter with
    constant folding off emits one per shared initializer; an Identity that produces a graph output stays."""
    view = GraphView(model)
    dead = []
    for node in model.graph.node:
        if node.op_type != "Identity" or node.domain not in ("", "ai.onnx"):
            continue
        if node.output[0] in view.graph_outputs:
            continue
        rename_input(model, node.output[0], node.input[0])
        dead.append(node)
    remove_nodes(model, dead)
    return {"changed": len(dead)}


PASSES.add("fold-bn", fold_batchnorm)

DEFAULT_PASSES = ("identity", "fold-bn")


@dataclass
class FuseResult:
    model: object  # the rewritten onnx.ModelProto
    before: dict[str, int]
    after: dict[str, int]
    steps: list[dict] = field(default_factory=list)
    verification: dict | None = None
    pruned_initializers: int = 0

    @property
    def changed(self) -> int:
        return sum(s["changed"] for s in self.steps)

    def delta(self) -> dict[str, int]:
        ops = set(self.before) | set(self.after)
        d = {op: self.after.get(op, 0) - self.before.get(op, 0) for op in ops}
        return {k: v for k, v in sorted(d.items()) if v}

    def summary(self) -> dict:
        return {
            "passes": [s["pass"] for s in self.steps],
            "changed": self.changed,
            "nodes_before": sum(self.before.values()),
            "nodes_after": sum(self.after.values()),
            "op_histogram_before": self.before,
            "op_histogram_after": self.after,
            "delta": self.delta(),
            "batchnorm_before": self.before.get("BatchNormalization", 0),
            "batchnorm_after": self.after.get("BatchNormalization", 0),
            "steps": self.steps,
            "pruned_initializers": self.pruned_initializers,
            "verification": self.verification,
        }


def fuse_model(model, pass_names=DEFAULT_PASSES, *, verify: bool = True, batch: int | None = None,
               resolution: int | None = None, seed: int = 0) -> FuseResult:
    """Run ``pass_names`` on a copy of ``model``; verify the result against the original when anything changed."""
    import onnx

    for name in pass_names:
        PASSES.get(name)  # unknown pass -> clean error
    work = copy.deepcopy(model)
    before = op_histogram(work)
    steps = []
    for name in pass_names:
        info = PASSES.get(name)(work)
        steps.append({"pass": name, **info})
    pruned = prune_unused_initializers(work)
    try:
        work = onnx.shape_inference.infer_shapes(work, check_type=True)
        onnx.checker.check_model(work)
    except Exception as exc:  # a pass produced an invalid graph: a bug, but say what happened
        first = str(exc).splitlines()[0][:200]
        raise VerificationError(f"the rewritten graph fails the ONNX checker: {first}") from exc
    result = FuseResult(model=work, before=before, after=op_histogram(work), steps=steps, pruned_initializers=pruned)
    if verify:
        if sum(s["changed"] for s in steps) == 0:
            result.verification = {"skipped": True, "passed": True, "reason": "no pass changed the graph"}
        else:
            feeds = seeded_feeds(model, batch=batch, resolution=resolution, seed=seed)
            result.verification = verify_equivalent(model, work, feeds)
            if not result.verification["passed"]:
                raise VerificationError("the fused graph does not reproduce the original: "
                                        f"{result.verification['reason']} (nothing was written)")
    return result


def seeded_feeds(model, *, batch: int | None = None, resolution: int | None = None, seed: int = 0) -> dict:
    """One seeded standard-normal tensor per float input; symbolic dims: dim 0 = ``batch`` (1), others =
    ``resolution`` (required)."""
    from deploykit.onnxio.files import input_specs

    feeds = {}
    for i, spec in enumerate(input_specs(model)):
        if spec.dtype not in ("float32", "float16", "float64"):
            raise InputError(f"input {spec.name!r} is {spec.dtype}; deploykit verifies graphs with float inputs only")
        shape = []
        for axis, d in enumerate(spec.dims):
            if isinstance(d, int) and d > 0:
                shape.append(d)
            elif axis == 0:
                shape.append(batch or 1)
            elif resolution:
                shape.append(resolution)
            else:
                raise UsageError(f"input {spec.name!r} has a dynamic dimension {axis}; give --resolution")
        feeds[spec.name] = make_input(tuple(shape), seed + i, spec.dtype)
    return feeds


def run_reference(model, feeds: dict, extra_outputs: list[str] | None = None) -> list[np.ndarray]:
    """Run ``model`` in ONNX Runtime (CPU) with graph optimisations disabled; outputs in graph order."""
    from deploykit.onnxio.session import cpu_session

    return cpu_session(model.SerializeToString(), graph_opt="disable", what="the graph").run(None, feeds)


def verify_equivalent(before, after, feeds: dict, tol: Tolerance = FUSE_TOLERANCE) -> dict:
    ref = run_reference(before, feeds)
    out = run_reference(after, feeds)
    runs, ok, reason = [], True, "ok"
    for i, (r, o) in enumerate(zip(ref, out)):
        metrics = compare(r, o)
        good, why = passes(metrics, tol)
        runs.append({"output": i, **metrics})
        if not good and ok:
            ok, reason = False, f"output {i}: {why}"
    return {"reference": "the graph before the passes (onnxruntime, optimisations disabled)",
            "tolerance": {"rtol": tol.rtol, "min_cosine": tol.min_cosine}, "runs": runs, "passed": ok, "reason": reason}


__all__ = ["PASSES", "DEFAULT_PASSES", "FuseResult", "fuse_model", "seeded_feeds", "verify_equivalent",
           "run_reference", "count_batchnorm", "export_transform"]


def export_transform(proto, *, batch: int | None = None, resolution: int | None = None, seed: int = 0):
    """The post-export step of ``deploykit export --fuse``: run the default passes; the graph is returned
    untouched when no pass changed anything (the dynamo exporter already folds BN in eval mode)."""
    res = fuse_model(proto, DEFAULT_PASSES, verify=True, batch=batch, resolution=resolution, seed=seed)
    summary = res.summary()
    for key in ("op_histogram_before", "op_histogram_after"):  # the manifest keeps the delta, not both histograms
        summary.pop(key)
    return (res.model if res.changed else proto), summary
