"""Atomic file writes: write to a temporary file in the destination folder, then rename.

An interrupted run (exception, Ctrl-C, SIGTERM, kill) never leaves a half-written file at the final path, and the
temporary file is removed on any exception. Temporary files and folders carry their owner
(``.dk-tmp-<pid>@<host>-...``): one whose owner is gone (a process killed by SIGKILL, which runs no clean-up)
is removed by the next write into the same folder (``sweep_stale``). A run's scratch files (quantization's
intermediate graphs, a gate's materialised revisions) live in a per-run folder of that kind (``run_dir``).

A write that fails for lack of space, quota or permission is a one-line InputError, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

from deploykit.core.errors import InputError

TMP_MARK = ".dk-tmp-"
# temporary names written before owners were recorded: removed once they are this old
UNOWNED_MAX_AGE_S = 24 * 3600
_OWNED = re.compile(r"^\.dk-tmp-(\d+)@([A-Za-z0-9.]*)-")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "", socket.gethostname())[:32]


def owner_tag() -> str:
    """``<pid>@<host>``: who a temporary file or folder belongs to."""
    return f"{os.getpid()}@{_host()}"


def tmp_prefix(name: str = "") -> str:
    """The name prefix of a temporary file or folder owned by this process."""
    return f"{TMP_MARK}{owner_tag()}-{name}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process: alive as far as we can tell
    return True


def stale(name: str, path: Path | None = None) -> bool:
    """Whether the temporary file/folder ``name`` was left by an owner that is gone: a process of this host that no
    longer runs (another host's is never judged), or, for an unowned name, one older than a day."""
    if not name.startswith(TMP_MARK):
        return False
    m = _OWNED.match(name)
    if m is not None:
        return m.group(2) == _host() and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1)))
    try:
        return path is not None and time.time() - path.lstat().st_mtime > UNOWNED_MAX_AGE_S
    except OSError:
        return False


def sweep_stale(folder: Path | str) -> int:
    """Remove what killed runs left in ``folder`` (see ``stale``); returns how many entries were removed. Never
    fails: a folder that cannot be listed or written is left as it is."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        if not e.name.startswith(TMP_MARK) or not stale(e.name, Path(e.path)):
            continue
        try:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed += 1
        except OSError:
            pass
    return removed


def write_error(path: Path | str, exc: OSError) -> InputError:
    """A failed write as a one-line error: the file, and what the system said (disk full, quota, read-only ...)."""
    why = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
           errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
           errno.EFBIG: "file too large for this file system or limit"}.get(exc.errno or 0, exc.strerror or str(exc))
    return InputError(f"cannot write {path}: {why}")


def check_output_file(path: Path | str, what: str = "output file") -> Path:
    """Check, before any work, that ``path`` can be written as a file: not a folder, in a folder that exists or can
    be created and is writable."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name")
    ensure_dir(path.parent if str(path.parent) else Path("."))
    return path


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
    if dest.is_dir():
        raise InputError(f"cannot write {dest}: it is a folder")
    ensure_dir(dest.parent)
    sweep_stale(dest.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(dest.name[:150]) + ".", suffix=suffix or dest.suffix,
                                   dir=dest.parent)
    except OSError as exc:
        raise write_error(dest, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp_path, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
            raise write_error(dest, exc) from None
        raise


# what a write into the temporary file can fail with that is the destination's fault (a full disk, a quota, a
# read-only mount, a file-size limit), reported as a one-line error about the destination
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


@contextlib.contextmanager
def run_dir(base: Path | str | None, purpose: str = "run", *, redirect_tempfile: bool = False) -> Iterator[Path]:
    """A private folder for one run's scratch files, ``<base>/.dk-tmp-<pid>@<host>-<purpose>.<random>/``, removed
    when the block ends (exceptions, Ctrl-C and SIGTERM included). ``base``: the artifact store; the system's
    temporary folder when None or not writable. Folders that killed runs left in ``base`` are swept first.

    ``redirect_tempfile``: Python's ``tempfile`` module (and the libraries that use it, such as ONNX Runtime's
    quantization with its ``pre.quant.*`` / ``ort.quant.*`` folders) puts its files in this folder while the
    block runs, so nothing of the run is left in /tmp when it is killed."""
    folder = None
    # absolute: libraries change the working directory while they run (ORT's calibrators chdir into a temp folder)
    for candidate in ([Path(base).absolute()] if base is not None else []) + [Path(tempfile.gettempdir()).absolute()]:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            sweep_stale(candidate)
            folder = Path(tempfile.mkdtemp(prefix=tmp_prefix(purpose) + ".", dir=candidate))
            break
        except OSError:
            continue
    if folder is None:
        raise InputError(f"no writable folder for temporary files (tried {base} and {tempfile.gettempdir()})")
    old = tempfile.tempdir
    if redirect_tempfile:
        tempfile.tempdir = str(folder)
    try:
        yield folder
    finally:
        if redirect_tempfile:
            tempfile.tempdir = old
        shutil.rmtree(folder, ignore_errors=True)


def make_temp_dir(purpose: str, base: Path | str | None = None) -> Path:
    """A new temporary folder ``<base or the system's temporary folder>/.dk-tmp-<pid>@<host>-<purpose>.<random>``
    that the caller removes; what killed runs left there (``sweep_stale``) is removed first. The one naming scheme
    of deploykit's temporary folders, so a folder a SIGKILL left behind is the next run's to remove."""
    folder = Path(base) if base is not None else Path(tempfile.gettempdir())
    sweep_stale(folder)
    try:
        return Path(tempfile.mkdtemp(prefix=tmp_prefix(purpose) + ".", dir=folder))
    except OSError as exc:
        raise write_error(folder, exc) from None


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


def copy_file(src: Path | str, dest: Path | str) -> Path:
    """Copy ``src`` to ``dest`` atomically."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
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
