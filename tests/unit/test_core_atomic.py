"""deploykit.core.atomic: temporary files carry their owner and are swept once the owner is gone (a SIGKILL runs
no clean-up); per-run folders; a full disk, a file-size limit or a folder in the way is one line, not a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploykit.core.atomic import (TMP_MARK, atomic_path, check_output_file, run_dir, stale, sweep_stale, tmp_prefix,
                                   write_bytes)
from deploykit.core.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def _child(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)


KILLED_WRITER = """
import os, signal, sys
from deploykit.core.atomic import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"x" * 100_000)
    os.kill(os.getpid(), signal.SIGKILL)  # killed while writing: no clean-up runs
"""


def test_a_temporary_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    proc = _child(KILLED_WRITER, str(tmp_path / "model.onnx"))
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name.startswith(TMP_MARK)]
    assert len(left) == 1 and not (tmp_path / "model.onnx").exists()
    assert stale(left[0].name, left[0])
    write_bytes(tmp_path / "other.json", b"{}")  # any later write into the folder sweeps it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]


def test_temporary_files_of_live_owners_and_unrelated_files_are_kept(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = tmp_path / f"{tmp_prefix('x.onnx')}.abc.onnx"
        theirs = tmp_path / f"{TMP_MARK}{sleeper.pid}@{tmp_prefix().split('@')[1].rstrip('-')}-x.onnx.abc.onnx"
        other_host = tmp_path / f"{TMP_MARK}1@some-other-host-x.onnx.abc.onnx"
        unowned_old = tmp_path / f"{TMP_MARK}x.onnx.abcd.onnx"  # the name before owners were recorded
        unowned_new = tmp_path / f"{TMP_MARK}y.onnx.abcd.onnx"
        user = tmp_path / "model.onnx"
        for p in (mine, theirs, other_host, unowned_old, unowned_new, user):
            p.write_bytes(b"x")
        two_days = time.time() - 2 * 86400
        os.utime(unowned_old, (two_days, two_days))
        assert sweep_stale(tmp_path) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p.name for p in (mine, theirs, other_host, unowned_new, user))
    finally:
        sleeper.kill()
        sleeper.wait()


KILLED_RUN = """
import os, signal, sys, tempfile
from deploykit.core.atomic import run_dir
with run_dir(sys.argv[1], "quantize", redirect_tempfile=True) as d:
    work = tempfile.mkdtemp(prefix="pre.quant.")  # what a library does with the tempfile module
    open(os.path.join(work, "model.onnx"), "wb").write(b"x" * 100_000)
    print(d, work, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_folder_holds_the_libraries_temporary_files_and_is_swept_after_a_kill(tmp_path):
    proc = _child(KILLED_RUN, str(tmp_path))
    run, work = proc.stdout.split()
    assert Path(work).parent == Path(run) and Path(run).parent == tmp_path  # tempfile's files went into the run folder
    assert Path(work, "model.onnx").is_file()
    with run_dir(tmp_path, "next") as d:  # the next run sweeps the dead one's folder
        assert not Path(run).exists() and d.is_dir()
    assert list(tmp_path.iterdir()) == []  # and removes its own


def test_a_run_folder_is_removed_on_an_exception_and_tempfile_restored(tmp_path):
    import tempfile

    before = tempfile.gettempdir()
    with pytest.raises(KeyboardInterrupt):
        with run_dir(tmp_path, "x", redirect_tempfile=True) as d:
            assert tempfile.gettempdir() == str(d)
            raise KeyboardInterrupt
    assert tempfile.gettempdir() == before and list(tmp_path.iterdir()) == []


FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write then fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
from deploykit.core.atomic import write_bytes
from deploykit.core.errors import InputError
try:
    write_bytes(sys.argv[1], b"x" * 1_000_000)
except InputError as exc:
    print("InputError:", exc)
"""


def test_a_write_past_a_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    proc = _child(FILE_SIZE_LIMIT, str(tmp_path / "big.bin"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("InputError: cannot write") and "too large" in proc.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KB tmpfs (root only: mounting needs it)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_full_disk_is_one_line_and_leaves_nothing(full_disk):
    with pytest.raises(InputError, match="no space left"):
        write_bytes(full_disk / "model.onnx", b"x" * 1_000_000)
    assert list(full_disk.iterdir()) == []


def test_a_folder_in_the_way_of_an_output_is_refused_before_any_work(tmp_path):
    (tmp_path / "out.xml").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_output_file(tmp_path / "out.xml", "--junit")
    with pytest.raises(InputError, match="is a folder"):
        with atomic_path(tmp_path / "out.xml"):
            pass
    check_output_file(tmp_path / "new" / "out.xml")  # creatable: fine
    assert (tmp_path / "new").is_dir()




def test_a_run_folder_under_a_relative_store_stays_valid_when_the_working_directory_changes(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.chdir(tmp_path)
    with run_dir(Path("store"), "quantize", redirect_tempfile=True) as d:
        assert d.is_absolute() and d.parent == tmp_path / "store"
        os.chdir("/")  # what ONNX Runtime's calibrators do
        assert Path(tempfile.mkdtemp(prefix="dk-calib-")).parent == d
