"""The one guarded boundary for the files deploykit reads, the folders it owns and the paths a file names.

Reading (``read_bytes`` / ``read_text`` / ``read_json``): the file is opened without
following a final symbolic link (``follow=False``, the default: files in folders deploykit owns -- caches, a
sweep's folder, a cell's report) and non-blocking (a FIFO cannot hang the open); the *opened descriptor* is checked
to be a regular file (not a FIFO, a device such as /dev/zero, a socket or a folder), and its size against a cap
before a byte is read (and again while reading: a file that grows is refused). A cache that fails any of it is
absent (``core.validate.read_cache_json`` returns None: the caller rebuilds it); a user's file is a one-line
``InputError`` naming the file.

Paths taken from a file (a results table's ``report`` column, a manifest's paths) go through ``inside``: resolved
strictly inside the folder that holds the file, or refused.

Writing: ``clear_dir`` empties a folder deploykit owns without deleting through a link (a symlink where the
folder should be is removed, never its target), ``open_for_append`` / ``open_for_write`` open a log without
following a link, and ``folder_lock`` takes an exclusive ``flock`` on ``<folder>/.lock`` that names its holder
(pid, host, command) to whoever is refused it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
import sys
import time
from pathlib import Path
from typing import IO, Iterator

from deploykit.core.errors import InputError

MIB = 1024 * 1024
# caps on what a reader reads: a report with 10^6 samples is ~20 MB; a study file, a run spec or a user.conf is
# a few kB
MAX_JSON_BYTES = 256 * MIB
MAX_SMALL_BYTES = 4 * MIB
MAX_CACHE_BYTES = 64 * MIB
LOCK_FILE = ".lock"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | Path, *, what: str = "file", follow: bool = False) -> int:
    """A read-only descriptor of the regular file ``path`` (blocking mode restored), or InputError: missing, a
    symbolic link (unless ``follow``), a FIFO, a device, a socket, a folder."""
    p = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {p}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{what} {p} is a symbolic link; deploykit reads only regular files there") from None
        if exc.errno == errno.EISDIR:
            raise InputError(f"{what} {p} is a folder, not a file") from None
        if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):  # a socket
            raise InputError(f"{what} {p} is a socket, not a regular file") from None
        raise InputError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {p} is {_kind(st.st_mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: str | Path, *, max_bytes: int, what: str = "file", follow: bool = False) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them (a larger file is refused)."""
    p = Path(path)
    fd = open_regular(p, what=what, follow=follow)
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise InputError(f"{what} {p} is too large ({size:,} bytes; at most {max_bytes:,})")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise InputError(f"{what} {p} grew past {max_bytes:,} bytes while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_text(path: str | Path, *, max_bytes: int = MAX_SMALL_BYTES, what: str = "file", follow: bool = False) -> str:
    p = Path(path)
    data = read_bytes(p, max_bytes=max_bytes, what=what, follow=follow)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {p} is not UTF-8 text") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, where: str = "JSON"):
    """The JSON value of ``text`` (NaN and Infinity refused), or a one-line InputError naming ``where``."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{where} is not valid JSON ({str(exc)[:120] or type(exc).__name__})") from None


def read_json(path: str | Path, *, max_bytes: int = MAX_JSON_BYTES, what: str = "file", follow: bool = False):
    """The JSON value in ``path`` (NaN and Infinity refused), or a one-line InputError naming the file."""
    p = Path(path)
    data = read_bytes(p, max_bytes=max_bytes, what=what, follow=follow)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {p} is not JSON (not UTF-8 text)") from None
    return parse_json(text, f"{what} {p}")


def inside(root: str | Path, rel: str | Path, *, what: str = "path") -> Path:
    """``root / rel`` resolved (links followed) strictly inside ``root`` (resolved too), or InputError: an
    absolute path, ``..`` or a link leading out, a NUL byte."""
    text = str(rel)
    if not text or "\x00" in text:
        raise InputError(f"{what} {text!r} is not a path")
    base = Path(root).resolve()
    if Path(text).is_absolute():
        raise InputError(f"{what} {text} is an absolute path; it must lie inside {base}")
    try:
        target = (base / text).resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise InputError(f"{what} {text} cannot be resolved inside {base}: {exc}") from None
    if target == base or base not in target.parents:
        raise InputError(f"{what} {text} leads outside {base}")
    return target


def remove(path: str | Path) -> None:
    """Remove ``path`` whatever it is, never following a link: a link (or a file) is unlinked, a real folder
    removed with its contents (``shutil.rmtree`` does not follow the links inside)."""
    p = Path(path)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(p)
    else:
        os.unlink(p)


def clear_dir(path: str | Path) -> Path:
    """Make ``path`` an empty real folder: what was there (a link to another folder, a file, a folder's contents)
    is removed without touching a link's target. Its parent must be a real folder too."""
    from deploykit.core.atomic import ensure_dir

    p = Path(path)
    ensure_dir(p.parent)
    real_parent(p)
    remove(p)
    try:
        os.mkdir(p)
    except FileExistsError:  # someone else made it in between: refuse to use what we did not make
        raise InputError(f"{p} appeared while deploykit was clearing it; is another run using this folder?") from None
    except OSError as exc:
        raise InputError(f"cannot create folder {p}: {exc.strerror or exc}") from None
    return p


def real_parent(path: str | Path) -> None:
    """Refuse ``path`` whose parent is a symbolic link (deploykit's own folders are real folders)."""
    parent = Path(path).parent
    if parent.is_symlink():
        raise InputError(f"{parent} is a symbolic link; deploykit writes only into real folders it made")


def open_for_write(path: str | Path, *, append: bool = False) -> IO[bytes]:
    """Open ``path`` for writing (a log) without following a link at it: a link there is removed first, a FIFO or
    a device refused."""
    p = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_APPEND if append else os.O_TRUNC
    for _ in range(2):
        try:
            fd = os.open(p, flags, 0o666)
            break
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                os.unlink(p)  # the link, not its target
                continue
            if exc.errno == errno.ENXIO:  # a FIFO with no reader
                raise InputError(f"{p} is a FIFO (named pipe), not a regular file") from None
            raise InputError(f"cannot write {p}: {exc.strerror or exc}") from None
    else:
        raise InputError(f"cannot write {p}: a symbolic link keeps reappearing there")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InputError(f"{p} is {_kind(st.st_mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab" if append else "wb")


def _holder() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(["deploykit", *sys.argv[1:]])[:300],
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def describe_holder(folder: str | Path) -> str:
    try:
        h = json.loads(read_bytes(Path(folder) / LOCK_FILE, max_bytes=64 * 1024, what="lock file"))
        return f"pid {h['pid']} on {h['host']} since {h.get('started', '?')}: {h['command']}"
    except (InputError, ValueError, KeyError, TypeError):
        return "another process (its lock file names no holder)"


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "folder") -> Iterator[Path]:
    """Hold an exclusive lock on ``folder`` (``fcntl.flock`` on ``<folder>/.lock``, released when the block ends or
    the process dies) or refuse with the holder named: two runs never write one output folder at once."""
    import fcntl

    folder = Path(folder)
    real_parent(folder / LOCK_FILE)
    path = folder / LOCK_FILE
    try:
        fh = open_for_write(path, append=True)
    except InputError:
        raise
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise InputError(f"{what} {folder} is in use by {describe_holder(folder)}; wait for it or choose another "
                         "folder") from None
    try:
        os.ftruncate(fh.fileno(), 0)
        os.write(fh.fileno(), (json.dumps(_holder()) + "\n").encode())
        yield path
    finally:
        fh.close()


@contextlib.contextmanager
def build_lock(dest: str | Path, say=None) -> Iterator[Path]:
    """Hold the lock of one artifact build, waiting -- and saying whom for -- while another process builds the same
    artifact: two runs that need it build it once, the second then reuses it (the caller checks again once it
    holds the lock). The lock file lives in this user's deploykit cache (``build-locks/``), named by the artifact's
    absolute path: nothing is added to the store (an artifact's folder holds artifacts only) or to the temporary
    folder, and a lock file is never removed while in use (removing one would let a third process lock a new
    file)."""
    import fcntl
    import hashlib

    from deploykit.core.config import user_cache_dir

    dest = Path(dest)
    folder = user_cache_dir() / "build-locks"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise InputError(f"{folder} is not a folder of this user's; remove it (deploykit keeps its build locks there)")
    path = folder / (hashlib.sha256(str(dest.absolute()).encode()).hexdigest()[:32] + ".lock")
    fh = open_for_write(path, append=True)
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if say is not None:
                say(f"waiting for {_holder_of(path)} to finish building {dest.name}")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # a signal (Ctrl-C, SIGTERM) still ends the wait
        os.ftruncate(fh.fileno(), 0)
        os.write(fh.fileno(), (json.dumps(_holder()) + "\n").encode())
        yield path
    finally:
        fh.close()


def _holder_of(lock: Path) -> str:
    try:
        h = json.loads(read_text(lock, max_bytes=65536, what="lock file"))
        return f"pid {h.get('pid')} on {h.get('host')}"
    except (InputError, ValueError, AttributeError):
        return "another process"
