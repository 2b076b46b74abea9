"""``--softmax auto``: int8 or float softmax for an attention model, decided by measurement on this machine and target.

The int8 softmax is the quantizer's default for ViTs, but whether it pays depends on the runtime: ONNX Runtime's CPU
``QLinearSoftmax`` is far slower than its float ``Softmax`` (DeiT-S: 6.4x), OpenVINO keeps the softmax and the
attention matmuls in float whatever the file asks. So both int8 builds -- softmax int8 and softmax float (the
latter keeps the attention's P.V matmul float too) -- are built (or reused from the artifact store), profiled per
layer on the run's target with the run's options (``Runtime.profile_layers``), and their executed nodes mapped to
the float graph (``bench/layermap.py``). What differs between the two builds is the attention core, so each build's
cost is the time of its softmax and P.V matmul nodes plus all its Q/DQ nodes; the cheaper build wins, for the whole
model (every block runs the same kernels at the same shape).

The decision and its numbers are cached in ``<models dir>/.cache/softmax-auto-<key>.json``, keyed on the machine
(``fingerprint.machine_id``), the target and its options, and both artifacts' content hashes: a second run reuses it
without measuring. It is recorded in the chosen artifact's manifest (``quantization.softmax_auto``) and returned.
A model without attention blocks, and the NNCF quantizer (which keeps the softmax float), get the default. The
builds are made by ``bench/pipeline.resolve_softmax`` (which ``prepare_model`` calls for ``--softmax auto``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from deploykit.runtimes.options import RuntimeOptions

AUTO = "auto"
ITERATIONS = 20
CACHE_VERSION = 1
_NUM = {"type": "number", "minimum": 0}
_BUILD = {"type": "object", "required": ["cost_ms", "softmax_ms", "qdq_ms", "total_ms"],
          "properties": {"cost_ms": _NUM, "softmax_ms": _NUM, "qdq_ms": _NUM, "total_ms": _NUM}}
CACHE_SCHEMA = {
    "type": "object",
    "required": ["version", "decision", "int8", "float"],
    "properties": {"version": {"const": CACHE_VERSION}, "decision": {"enum": ["int8", "float"]},
                   "int8": _BUILD, "float": _BUILD},
}

Say = Callable[[str], None]


def cache_path(models_dir: Path, key: str) -> Path:
    return Path(models_dir) / ".cache" / f"softmax-auto-{key[:20]}.json"


def decide(builds: dict, target: str, options: RuntimeOptions, models_dir: Path, *, say: Say,
           iterations: int = ITERATIONS) -> dict:
    """The decision between the two builds (``{"int8": (runtime, ModelInput, manifest), "float": ...}``, both
    int8 artifacts of an attention model) on ``target``: the cached record when there is one, else measured now
    and cached (see the module docstring); recorded in the chosen artifact's manifest either way."""
    from deploykit.bench.fingerprint import machine_id

    mid = machine_id()
    key_obj = {"version": CACHE_VERSION, "machine": mid, "target": target,
               "options": {k: v for k, v in options.settings().items() if k != "cache_dir"},
               "artifacts": {m: (b[2] or {}).get("sha256") for m, b in builds.items()}}
    key = hashlib.sha256(json.dumps(key_obj, sort_keys=True, default=str).encode()).hexdigest()
    path = cache_path(models_dir, key)
    from deploykit.core.validate import read_cache_json

    record = read_cache_json(path, schema=CACHE_SCHEMA)
    if record is not None:
        record = {**record, "cached": True, "cache": str(path)}
        say(f"--softmax auto: {record['decision']} (cached decision for this machine and target: {path.name})")
    else:
        record = _measure(builds, target, mid, iterations, say)
        from deploykit.core.atomic import write_json

        try:
            write_json(path, record)
        except OSError:  # a read-only store: the decision stands, measured again next time
            pass
        record = {**record, "cached": False, "cache": str(path)}
    _record_in_manifest(builds[record["decision"]][1].path, record)
    return record


def _measure(builds: dict, target: str, mid: str, iterations: int, say: Say) -> dict:
    import onnx

    from deploykit.bench.layermap import SourceGraph, map_profile
    from deploykit.onnxio.reference import make_input
    from deploykit.passes.attention import find_attention

    out: dict = {"version": CACHE_VERSION, "target": target, "machine_id": mid, "iterations": iterations}
    for mode, (runtime, model, manifest) in builds.items():
        say(f"--softmax auto: profiling the {mode}-softmax build on {target} ({iterations} inferences)")
        fp32 = ((manifest or {}).get("source") or {}).get("fp32_artifact")
        src = SourceGraph.load(Path(fp32) if fp32 and Path(fp32).is_file() else None)
        sites = find_attention(onnx.load(str(src.path), load_external_data=False)) if src.known else []
        softmax = {s.softmax for s in sites}
        core = softmax | {s.pv_matmul for s in sites if s.pv_matmul}
        x = make_input(model.shape, 0, model.dtype)
        rows = map_profile(runtime.profile_layers(model, x, iterations), src)
        sm = [r for r in rows if r["kind"] == "layer" and r["source"] in softmax]
        out[mode] = {
            "softmax_ms": sum(r["time_ms"] for r in sm),
            "softmax_ops": sorted({r["op_type"] for r in sm}),
            "softmax_precisions": sorted({r["precision"] or "?" for r in sm}),
            "pv_matmul_ms": sum(r["time_ms"] for r in rows if r["kind"] == "layer" and r["source"] in core
                                and r["source"] not in softmax),
            "qdq_ms": sum(r["time_ms"] for r in rows if r["kind"] == "qdq"),
            "total_ms": sum(r["time_ms"] for r in rows),
            "blocks": len(sites),
            "artifact": str(model.path),
        }
        b = out[mode]
        b["cost_ms"] = b["softmax_ms"] + b["pv_matmul_ms"] + b["qdq_ms"]
    out["decision"] = "int8" if out["int8"]["cost_ms"] < out["float"]["cost_ms"] else "float"
    out["rule"] = ("the build whose softmax + P.V matmul + Q/DQ nodes took less profiled time (median per node over "
                   f"{iterations} inferences) on {target}")
    i, f = out["int8"], out["float"]
    say(f"--softmax auto: {out['decision']} (int8 softmax build {i['cost_ms']:.3f} ms vs float {f['cost_ms']:.3f} ms "
        "in softmax + P.V matmul + Q/DQ)")
    return out


def _record_in_manifest(artifact: Path, record: dict) -> None:
    """The decision into the chosen artifact's manifest (``quantization.softmax_auto``); best effort (a read-only
    store keeps the manifest as built)."""
    from deploykit.core.atomic import write_json
    from deploykit.export import artifacts

    manifest = artifacts.read_manifest(artifact)
    if manifest is None:
        return
    manifest.setdefault("quantization", {})["softmax_auto"] = record
    try:
        write_json(artifacts.manifest_path(artifact), manifest)
    except OSError:
        pass
