"""Which layers to leave in float, cheapest first: the exclude sets ``deploykit tune`` tries.

First the nodes whose int8 form was measured slower than their float form (``Explanation.slower_in_int8``: on
ONNX Runtime typically the ``QLinearSoftmax`` of a ViT), then, one after the other, those plus the nodes that cost
the most accuracy (the quantizer's sensitivity ranking, ``quantize/sensitivity.py``: worst SQNR first), in
doubling steps (1, 2, 4, ... ranked tensors), so each candidate holds the previous one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from deploykit.explain.diff import Explanation
from deploykit.spec.run import RunSpec

MAX_SENSITIVE = 32  # ranked tensors at most (their consumers can be more nodes)


def sensitivity_ranking(int8_spec: RunSpec, *, models_dir: Path | None = None, progress=None) -> list[dict]:
    """The sensitivity rows (worst first) of the int8 artifact of ``int8_spec`` (built or reused)."""
    from deploykit.quantize.pipeline import quantize_model

    if int8_spec.quantize is None:
        return []
    cfg = int8_spec.export_config(models_dir)
    res = quantize_model(int8_spec.model, replace(int8_spec.quantize, sensitivity=True), export=cfg,
                         batch=int8_spec.batch, resolution=int8_spec.resolution,
                         models_dir=models_dir or (cfg.models_dir if cfg else None), progress=progress)
    return list(res.report.get("sensitivity") or [])


def fallback_candidates(int8_spec: RunSpec, fp32_spec: RunSpec, explanation: Explanation,
                        sensitivity: Any = None, *, max_sets: int = 6, models_dir: Path | None = None,
                        progress=None) -> list[tuple[str, ...]]:
    """Exclude sets (``QuantizeConfig.exclude`` values) to try in this order: the nodes slower in int8, then those
    plus the 1, 2, 4, ... most accuracy-sensitive nodes. ``sensitivity``: the ranking (``quantize`` rows with
    ``consumers``, worst first); None computes it for ``int8_spec``'s artifact; ``()`` leaves it out. Each set
    keeps the names ``int8_spec``'s recipe already excludes; empty sets and repeats are dropped."""
    if not int8_spec.int8:
        from deploykit.core.errors import UsageError

        raise UsageError(f"fallback candidates start from an int8 run; {int8_spec.key} is {fp32_spec.precision_label}")
    base = tuple(int8_spec.quantize.exclude) if int8_spec.quantize else ()
    slow = explanation.slower_in_int8()
    if sensitivity is None:
        sensitivity = sensitivity_ranking(int8_spec, models_dir=models_dir, progress=progress)
    ranked: list[str] = []
    for row in list(sensitivity)[:MAX_SENSITIVE]:
        for n in row.get("consumers") or ():
            if n not in ranked and (not explanation.excludable or n in explanation.excludable):
                ranked.append(n)
    out: list[tuple[str, ...]] = []

    def add(names) -> None:
        s = tuple(dict.fromkeys([*base, *names]))
        if s and s != base and s not in out:
            out.append(s)

    if slow:
        add(slow)
    k = 1
    while len(out) < max_sets and ranked:
        add([*slow, *ranked[:k]])
        if k >= len(ranked):
            break
        k *= 2
    return out[:max_sets]
