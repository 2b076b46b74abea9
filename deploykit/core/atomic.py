"""Atomic file writes: write to a temporary file in the destination folder, then rename.

An interrupted run (exception, Ctrl-C, kill) never leaves a half-written file at the final path,
and the temporary file is removed on any exception.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from deploykit.core.errors import InputError

TMP_MARK = ".dk-tmp-"


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) or raise a clean InputError when it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"cannot create folder {path}: a file is in the way") from None
    except PermissionError:
        raise InputError(f"cannot create folder {path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot create folder {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise InputError(f"folder {path} is not writable")
    return path


@contextlib.contextmanager
def atomic_path(dest: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success rename it onto ``dest``.

    The caller writes the whole file to the yielded path (e.g. a library that only takes a
    filename). On any exception, including KeyboardInterrupt, the temporary file is deleted.
    """
    dest = Path(dest)
    ensure_dir(dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=TMP_MARK + dest.name + ".", suffix=suffix or dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(dest: Path | str, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(dest)


def write_text(dest: Path | str, text: str) -> Path:
    return write_bytes(dest, text.encode("utf-8"))


def write_json(dest: Path | str, obj) -> Path:
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj):
    # numpy scalars/arrays and paths appear in reports; keep this the one place that converts them
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
