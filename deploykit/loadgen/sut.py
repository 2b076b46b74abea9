"""LoadGen's system under test: a loaded deploykit runtime.

Every LoadGen sample is one inference request on the model's input (the run's ``--batch`` items; the same
input tensor bench measures and checks: the latency of these vision models does not depend on pixel values).
LoadGen's query sample library is therefore a no-op: nothing to load, nothing to unload.

- SingleStream: LoadGen issues one query at a time and waits for it; the SUT runs it inline in LoadGen's issue
  callback (``runtime.infer``, the same call bench times), so LoadGen's latency is bench's plus LoadGen's own
  overhead.
- Server / Offline / MultiStream: the runtime keeps N requests in flight (``Runtime.submit``: OpenVINO async
  infer requests, ONNX Runtime concurrent runs); queries wait in a FIFO for a free request; each completion
  reports to LoadGen at once (``QuerySamplesComplete``) and frees its request. One dispatcher thread starts the
  waiting queries on free requests: never the runtime's completion callback itself (an OpenVINO request
  restarted from inside its own callback waits for itself to finish: a deadlock as soon as queries queue up,
  as in Offline).

The SUT keeps its own record of every sample (issue callback -> completion, deploykit's clock) and of which
LoadGen run it belonged to (LoadGen calls ``flush`` at the end of each run's issuing): the fallback for
per-query latencies when LoadGen's trace is off, and the per-step split of a FindPeakPerformance test.
"""

from __future__ import annotations

import threading
from collections import deque

from deploykit.bench.timer import now_ns


class RuntimeSUT:
    def __init__(self, lg, runtime, *, concurrent: bool):
        self._lg = lg
        self._rt = runtime
        self.concurrent = concurrent
        self.requests = runtime.parallel_requests() if concurrent else 1
        self._free = list(range(self.requests))
        self._pending: deque = deque()
        self._in_slot: list = [None] * self.requests
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # work waiting and a request free, or closing
        self._closed = False
        self._dispatcher: threading.Thread | None = None
        self.step = 0  # LoadGen runs seen so far (a flush ends each)
        self.records: list[tuple[int, int, int]] = []  # (step, issue_ns, complete_ns) per sample, completion order
        self.errors: list[BaseException] = []
        self._complete = lg.QuerySamplesComplete
        self._response = lg.QuerySampleResponse

    # ---- LoadGen's callbacks (called from LoadGen's threads; an exception must never escape into C++)
    def issue(self, samples) -> None:
        try:
            if not self.concurrent:
                for s in samples:
                    self._run_inline(s)
                return
            t = now_ns()
            step = self.step
            with self._ready:
                self._pending.extend((s, t, step) for s in samples)
                self._start_dispatcher()
                self._ready.notify()
        except BaseException as exc:  # complete what is left so LoadGen does not wait forever
            self._failed(exc)

    def flush(self) -> None:
        with self._lock:
            self.step += 1

    # ---- internals
    def _run_inline(self, sample) -> None:
        rt = self._rt
        t0 = now_ns()
        try:
            rt.infer()
            rt.sync()
        except BaseException as exc:
            self.errors.append(exc)
        t1 = now_ns()
        self._complete([self._response(sample.id, 0, 0)])
        self.records.append((self.step, t0, t1))

    def _start_dispatcher(self) -> None:  # under the lock
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(target=self._dispatch_loop, name="deploykit-sut-dispatch",
                                                daemon=True)
            self._dispatcher.start()

    def _dispatch_loop(self) -> None:
        while True:
            with self._ready:
                while not self._closed and not (self._pending and self._free):
                    self._ready.wait()
                if self._closed:
                    return
                slot = self._free.pop()
                self._in_slot[slot] = self._pending.popleft()
            try:
                self._rt.submit(slot, self._done)
            except BaseException as exc:
                self.errors.append(exc)
                self._done(slot)

    def _done(self, slot: int) -> None:
        t = now_ns()
        try:
            sample, t_issue, step = self._in_slot[slot]
            self._complete([self._response(sample.id, 0, 0)])
            self.records.append((step, t_issue, t))
        except BaseException as exc:
            self.errors.append(exc)
        with self._ready:
            self._in_slot[slot] = None
            self._free.append(slot)
            self._ready.notify()

    def close(self) -> None:
        """Stop the dispatcher thread (after the last LoadGen test)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=10)

    def _failed(self, exc: BaseException) -> None:
        self.errors.append(exc)
        with self._lock:
            left = list(self._pending)
            self._pending.clear()
        if left:
            self._complete([self._response(s.id, 0, 0) for s, _, _ in left])

    def drain(self) -> None:
        """After a LoadGen test: every request finished (LoadGen has already seen every completion)."""
        if self.concurrent:
            try:
                self._rt.wait_all()
            except BaseException as exc:
                self.errors.append(exc)

    def step_records(self, step: int) -> list[tuple[int, int]]:
        """(issue_ns, complete_ns) of the samples LoadGen issued in run ``step``, in issue order."""
        return sorted((i, c) for s, i, c in self.records if s == step)
