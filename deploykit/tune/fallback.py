"""The fallback stage of ``deploykit tune``: int8 candidates with float fallback sets (layers left in float), from
the per-layer profiles of the int8 and fp32 builds (``deploykit.explain``), for every target whose tuned int8 is
slower than its fp32. Until ``deploykit.explain`` is there, no stage (``fallback_stage`` returns None)."""

from __future__ import annotations

from typing import Callable

Say = Callable[[str], None]


def fallback_stage(settings, say: Say):
    """The stage ``run_tune`` runs after the halving (None: there is none)."""
    return None
