"""Typed user errors. Each carries the process exit code the CLI returns.

Exit codes (documented in the README):
    0  success
    1  internal error (a bug: printed with a traceback)
    2  bad usage or input (unknown model, corrupt file, bad shape, unwritable folder ...)
    3  a target or optional dependency is unavailable here
    4  gate: a latency regression was detected
    5  gate: inconclusive (only with --strict)
  130  interrupted (Ctrl-C); nothing half-written is left behind
  143  terminated (SIGTERM, what CI runners and `timeout` send), handled like Ctrl-C; a sweep keeps its finished cells
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_REGRESSION = 4
EXIT_INCONCLUSIVE = 5
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the CLI's handler: a KeyboardInterrupt, so that every clean-up that
    runs on Ctrl-C (temporary files, child processes, per-run folders) runs on SIGTERM too."""


class DeployKitError(Exception):
    """An error caused by the user's input or environment, not by a bug.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        msg = " ".join(str(self).split())
        if self.hint:
            msg += f" ({' '.join(self.hint.split())})"
        return msg


class UsageError(DeployKitError):
    """Bad option values or combinations."""


class InputError(DeployKitError):
    """Bad input data: missing/corrupt files, wrong shapes, unknown models, unwritable folders."""


class VerificationError(DeployKitError):
    """An exported/converted artifact does not reproduce its reference within tolerance."""


class RunFailure(DeployKitError):
    """The runtime failed while running the model (an inference of the timed loop, LoadGen's first inference,
    calibration): one line saying where and what was measured before it, exit 2."""


def runtime_raised(exc: BaseException) -> bool:
    """Whether ``exc`` is a runtime's own failure (ONNX Runtime's Fail / RuntimeException / InvalidArgument, OpenVINO's
    and TensorRT's RuntimeError) rather than a bug of deploykit's."""
    module = type(exc).__module__ or ""
    return module.startswith(("onnxruntime", "openvino", "tensorrt")) or type(exc) is RuntimeError


class UnavailableError(DeployKitError):
    """A target, device or optional dependency is not available on this machine."""

    exit_code = EXIT_UNAVAILABLE


def squash(text, limit: int = 300) -> str:
    """``text`` (an exception, a tool's stderr) as one line of at most ``limit`` characters, for one-line errors."""
    return " ".join(str(text).split())[:limit]
