"""What ``deploykit tune`` searches: candidates, each a run spec with the choices that made it.

A candidate is a target, a precision the target declares and this machine runs (bf16 / fp16 only where the CPU's
ISA flags in the environment fingerprint say it has them: ``bench/fingerprint.cpu_info``), for int8 the recipe
(quantizer, softmax path, calibration method, float fallback set) and the target's own settings (threads are the
user's; OpenVINO streams for the throughput objectives; batch for the throughput objective). Every candidate is a
sweep cell (``TuneCell``): its run spec runs as ``deploykit run`` in a child process, local or on Slurm, and a crash
is a result.

Candidates come cheapest-first and most-likely-first: the default fp32 of each target (the references every
verdict is against), the default int8 of each target (what ``deploykit quantize`` builds), then the other softmax
path, the other quantizer, the other calibration methods, the other precisions and settings.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

from deploykit.core.config import QuantizeConfig
from deploykit.spec.run import RunSpec, from_values
from deploykit.sweep.spec import Cell

OBJECTIVES = ("latency", "p99", "throughput", "server")
# a float precision is offered on a CPU target only where the CPU has the units for it (its ISA flags)
FLOAT_ISA = {"bf16": ("avx512_bf16", "amx_bf16", "bf16"), "fp16": ("avx512_fp16", "amx_fp16")}
DEFAULT_CALIB_METHODS = ("minmax", "percentile")
THROUGHPUT_BATCHES = (1, 4)


@dataclass(frozen=True)
class Candidate:
    """One variant: ``cid`` (a short stable id), its run spec, and the choices that made it (for tables)."""

    cid: str
    spec: RunSpec
    role: str = "variant"  # fp32-default | int8-default | variant
    softmax: str = ""  # int8: float | int8 | model default ("")
    exclude: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return self.spec.target

    @property
    def precision(self) -> str:
        return self.spec.precision_label

    def choices(self) -> dict[str, Any]:
        """What distinguishes this candidate, as a table shows it."""
        q = self.spec.quantize
        settings = {k: v for k, v in self.spec.target_settings().items() if k not in ("precision",)}
        return {"target": self.target, "precision": self.precision, "batch": self.spec.batch,
                "quantizer": q.quantizer if q else "", "softmax": self.softmax,
                "calib_method": q.calib_method if q else "", "fallback": list(q.exclude) if q else [],
                "settings": settings}

    def label(self) -> str:
        c = self.choices()
        parts = [c["target"], c["precision"]]
        if self.spec.quantize is not None:
            parts += [c["quantizer"], *([f"softmax={c['softmax']}"] if c["softmax"] else []), c["calib_method"]]
            if c["fallback"]:
                parts.append(f"fallback={len(c['fallback'])}")
        parts += [f"{k}={v}" for k, v in sorted(c["settings"].items()) if k != "threads"]
        if self.spec.batch != 1:
            parts.append(f"b{self.spec.batch}")
        return " ".join(str(p) for p in parts)

    def to_json(self) -> dict:
        return {"id": self.cid, "role": self.role, "label": self.label(), "key": self.spec.key, **self.choices(),
                "spec": self.spec.to_dict()}


def candidate_id(spec: RunSpec) -> str:
    """A short id that changes with anything that changes the run (its recipe included), not its measurement."""
    d = spec.to_dict()
    d.pop("measure", None)
    import json

    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class TuneCell(Cell):
    """A sweep cell whose run spec is given whole (a candidate at one stage of the search) rather than made from
    axis values: the sweep's executors run it as any cell (``deploykit run cells/<cell>/spec.json``)."""

    fixed: RunSpec | None = field(default=None, compare=False)
    cid: str = ""
    stage: str = ""

    @property
    def spec(self):
        return self.fixed

    @property
    def key(self) -> str:
        return f"{self.stage}:{self.cid}"

    @property
    def safe_key(self) -> str:
        label = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{self.label or self.model}-{self.target}-{self.precision}")[:60]
        return f"{self.stage}-{self.cid}-{label}"

    def describe(self) -> dict:
        d = super().describe()
        d["cell"] = self.key
        return d


def cell_of(c: Candidate, spec: RunSpec, stage: str) -> TuneCell:
    """The sweep cell that measures candidate ``c`` with ``spec`` (its measurement for ``stage``)."""
    from pathlib import Path

    label = Path(spec.model).stem if spec.is_file else spec.model
    return TuneCell(model=spec.model, target=spec.target, precision=spec.precision_label, batch=spec.batch,
                    resolution=spec.resolution, threads=spec.options.threads, label=label,
                    scenario=spec.scenario, fixed=spec, cid=c.cid, stage=stage)


def machine_isa() -> set[str]:
    from deploykit.bench.fingerprint import cpu_info

    return set(cpu_info().get("isa") or [])


def float_precisions(target_cls, isa: set[str]) -> list[str]:
    """The float precisions target ``target_cls`` declares that this machine runs: fp32 always; bf16 / fp16 on a CPU
    target only where the ISA has the units (``FLOAT_ISA``); tf32 / fp16 of GPU targets on GPU targets only."""
    out = []
    for p in target_cls.precisions:
        if p == "int8":
            continue
        if p == "fp32":
            out.append(p)
        elif target_cls.device_kind == "cpu":
            if p in FLOAT_ISA and isa & set(FLOAT_ISA[p]):
                out.append(p)
        else:
            out.append(p)
    return out


def model_has_attention(model: str) -> bool:
    """Whether the model has attention blocks (its traits); True where unknown (a file, a pass-through model): both
    softmax paths are then tried."""
    from deploykit.core.errors import InputError
    from deploykit.models.registry import get_cfg

    try:
        traits = getattr(get_cfg(model), "traits", None)
    except (InputError, Exception):
        return True
    return bool(getattr(traits, "attention", True))


def file_has_attention(path: str) -> bool:
    """A model file's attention trait, from its manifest where deploykit exported it; True where unknown."""
    from pathlib import Path

    from deploykit.export.artifacts import manifest_problem

    manifest, _ = manifest_problem(Path(path))
    traits = ((manifest or {}).get("source") or {}).get("traits")
    return bool(traits.get("attention", True)) if isinstance(traits, dict) else True


@dataclass(frozen=True)
class SpaceSettings:
    """What to search (``deploykit tune`` flags)."""

    targets: tuple[str, ...]
    objective: str = "latency"
    threads: int | None = None
    calib: QuantizeConfig = field(default_factory=lambda: QuantizeConfig(calib_data="synthetic", profile=None))
    calib_methods: tuple[str, ...] = DEFAULT_CALIB_METHODS
    precisions: tuple[str, ...] | None = None  # None: every one the machine runs
    graph_opts: tuple[str, ...] = ()  # ORT graph optimisation levels besides its default
    batches: tuple[int, ...] = THROUGHPUT_BATCHES


def generate(base: RunSpec, st: SpaceSettings, *, isa: set[str] | None = None) -> list[Candidate]:
    """Every candidate for ``base`` (model, resolution, weights and measurement), in the order they are checked."""
    from deploykit.runtimes.base import CONCURRENT, get_runtime

    isa = machine_isa() if isa is None else isa
    attention = model_has_attention(base.model) if not base.is_file else file_has_attention(base.model)
    first: list[Candidate] = []
    second: list[Candidate] = []
    rest: list[Candidate] = []
    seen: set[str] = set()
    throughput = st.objective in ("throughput", "server")
    default_softmax = "int8" if attention else "float"  # QuantizeConfig.softmax None with the ORT quantizer

    def add(bucket: list[Candidate], values: dict, role: str = "variant", quantize: QuantizeConfig | None = None,
            softmax: str = "", exclude: tuple[str, ...] = ()) -> None:
        if quantize is not None and quantize.quantizer == "ort" and quantize.softmax == default_softmax:
            quantize = replace(quantize, softmax=None)  # the recipe's own choice: one artifact, one candidate
        spec = from_values(values, base=base, quantize=quantize)
        cid = candidate_id(spec)
        if cid not in seen:
            seen.add(cid)
            bucket.append(Candidate(cid, spec, role=role, softmax=softmax, exclude=exclude))

    for target in st.targets:
        cls = get_runtime(target)
        common: dict[str, Any] = {"target": target, "threads": st.threads}
        if st.objective == "throughput" and cls.has(CONCURRENT):
            common["mode"] = "throughput"
        floats = float_precisions(cls, isa)
        wanted = st.precisions
        if "fp32" in floats and (wanted is None or "fp32" in wanted):
            add(first, {**common, "precision": "fp32"}, role="fp32-default")
        if "int8" in cls.precisions and (wanted is None or "int8" in wanted):
            default = replace(st.calib, profile=None)
            add(first, {**common, "precision": "int8"}, role="int8-default", quantize=default,
                softmax=default_softmax if attention else "")
            softmaxes = ("int8", "float") if attention else (None,)
            quantizers = ("ort", "nncf") if target == "openvino" else ("ort",)
            for quantizer in quantizers:
                for method in st.calib_methods:
                    for sm in (softmaxes if quantizer == "ort" else (None,)):
                        q = replace(default, quantizer=quantizer, calib_method=method, softmax=sm)
                        bucket = second if method == st.calib_methods[0] else rest
                        add(bucket, {**common, "precision": "int8"}, quantize=q,
                            softmax=sm or ("float" if quantizer == "nncf" and attention else ""))
        for p in floats:
            if p != "fp32" and (wanted is None or p in wanted):
                add(rest, {**common, "precision": p})
        if target == "ort":
            for g in st.graph_opts:
                add(rest, {**common, "precision": "fp32", "graph_opt": g})
        if throughput and cls.has(CONCURRENT):
            if st.objective == "throughput":
                for b in st.batches:
                    if b != base.batch:
                        add(rest, {**common, "precision": "fp32", "batch": b})
            if "streams" in {s.name for s in cls.declared_options()} and st.objective == "throughput":
                add(rest, {**common, "precision": "fp32", "streams": 2})
    return first + second + rest


def sample(cands: list[Candidate], limit: int | None, seed: int = 0) -> tuple[list[Candidate], list[Candidate]]:
    """At most ``limit`` candidates when the space is bigger: every reference (each target's default fp32 and
    int8) and a seeded uniform sample of the others, in the generated order; (kept, left out)."""
    if limit is None or len(cands) <= limit:
        return list(cands), []
    import random

    refs = [c for c in cands if c.role in ("fp32-default", "int8-default")]
    others = [c for c in cands if c not in refs]
    picked = set(id(c) for c in random.Random(seed).sample(others, max(0, limit - len(refs))))
    kept = [c for c in cands if c in refs or id(c) in picked]
    return kept, [c for c in cands if c not in kept]


def with_exclude(c: Candidate, exclude: tuple[str, ...]) -> Candidate:
    """Int8 candidate ``c`` with the graph nodes ``exclude`` left in float (a fallback set)."""
    q = c.spec.quantize
    assert q is not None
    spec = replace(c.spec, quantize=replace(q, exclude=tuple(exclude)))
    return Candidate(candidate_id(spec), spec, role="fallback", softmax=c.softmax, exclude=tuple(exclude))
