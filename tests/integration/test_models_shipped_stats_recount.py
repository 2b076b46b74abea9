"""The shipped parameter / MAC counts (models/model_stats.json) are what the builders count today: a change to a
model's builder cannot leave a stale entry behind (regenerate: python -m deploykit.models.shipped_stats)."""

import json

import pytest

from deploykit.models import shipped_stats

pytestmark = pytest.mark.slow


def test_shipped_counts_match_a_fresh_count():
    shipped = json.loads(shipped_stats.FILE.read_text(encoding="utf-8"))
    from deploykit.models.registry import compute_shipped_stats

    assert compute_shipped_stats() == shipped, "run 'python -m deploykit.models.registry'"
