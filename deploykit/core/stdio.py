"""Keeping stdout for results: the work a command does may print (NNCF's progress bar and its logger, a
runtime's C++ log lines), but what a command promises on stdout -- a path, a JSON document, a table -- must be
all that reaches it, so that ``$(deploykit export ...)`` and ``deploykit quantize ... --json | jq`` work."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


def _fd(stream) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's in-memory stream has none
        return None


def _flush(stream) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


@contextmanager
def stdout_to_stderr():
    """Inside, whatever writes to stdout goes to stderr: Python code (``sys.stdout``, also a logging handler or a
    progress bar that kept the stdout object) and, when stdout is a real file descriptor, C/C++ code writing to
    descriptor 1. The command prints its results after the block."""
    out, err = sys.stdout, sys.stderr
    _flush(out)
    fd, err_fd = _fd(out), _fd(err)
    saved = None
    if fd is not None and err_fd is not None and fd != err_fd:
        saved = os.dup(fd)
        os.dup2(err_fd, fd)
    sys.stdout = err
    try:
        yield
    finally:
        _flush(err)
        _flush(out)  # anything written to the old stdout object went to stderr's descriptor: flush it there
        sys.stdout = out
        if saved is not None:
            os.dup2(saved, fd)
            os.close(saved)
