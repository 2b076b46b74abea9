"""Child processes deploykit starts: they import deploykit's own code only, and they die with their parent."""

from __future__ import annotations

import sys

# ``python -c`` puts the working directory first on sys.path: a user's openvino.py, numpy.py or deploykit/
# there would be imported instead of the installed package. The child drops it before importing anything.
_OWN_IMPORTS_ONLY = "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "


def python_argv(code: str, *args: str) -> list[str]:
    """argv of a child Python running ``code`` (with ``args`` as sys.argv[1:]) without the working directory on
    its import path."""
    return [sys.executable, "-c", _OWN_IMPORTS_ONLY + code, *args]


def die_with_parent() -> None:
    """``preexec_fn`` of a child process: on Linux the kernel sends it SIGKILL when the parent dies (also by
    SIGKILL, where no Python clean-up runs); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
