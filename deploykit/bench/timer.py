"""The one timer: a monotonic nanosecond clock with a device-sync hook.

``sync`` is called after the timed work and before the clock stops, so asynchronous device work (a CUDA
stream, an async infer request) is finished inside the interval. CPU targets have no sync.
"""

from __future__ import annotations

import time
from typing import Callable

now_ns = time.perf_counter_ns  # monotonic, highest resolution clock Python has


class Timer:
    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync

    def time_ns(self, fn: Callable[[], object]) -> int:
        """Duration of ``fn()`` (plus the device sync) in nanoseconds."""
        sync = self.sync
        t0 = now_ns()
        fn()
        if sync is not None:
            sync()
        return now_ns() - t0
