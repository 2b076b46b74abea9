"""Parameter and MAC counts shipped with deploykit for every registry model at its default resolution and options,
so that the first ``deploykit models`` prints at once instead of counting 17 models on the meta device (~25 s).
Other resolutions and options are counted on demand and cached (``registry.model_stats``). An architecture's counts
do not depend on the library versions; ``tests/integration/test_models_shipped_stats_recount.py`` recounts them
(slow) so that a change to a builder cannot leave a stale entry. Regenerate with ``python -m
deploykit.models.registry`` (which counts them: ``registry.compute_shipped_stats``; this module only reads the
table, so the registry can use it).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

FILE = Path(__file__).with_name("model_stats.json")


def key(name: str, resolution: int, options: dict) -> str:
    return json.dumps([name, resolution, sorted(options.items())])


@lru_cache(maxsize=1)
def _table() -> dict:
    try:
        data = json.loads(FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(name: str, resolution: int, options: dict) -> dict[str, int] | None:
    entry = _table().get(key(name, resolution, options))
    if isinstance(entry, dict) and all(isinstance(entry.get(k), int) for k in ("params", "macs")):
        return {"params": entry["params"], "macs": entry["macs"]}
    return None
