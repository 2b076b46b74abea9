"""deploykit.core.child: child processes import deploykit's own code only, and die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from deploykit.core.child import die_with_parent, python_argv


def test_a_child_does_not_import_from_the_working_directory(tmp_path):
    (tmp_path / "json.py").write_text("raise SystemExit('the working directory shadowed json')\n")
    naive = subprocess.run([sys.executable, "-c", "import json"], cwd=tmp_path, capture_output=True, text=True)
    assert naive.returncode != 0 and "shadowed" in naive.stderr  # what plain `python -c` does here
    child = subprocess.run(python_argv("import json, sys; print(json.__file__, sys.argv[1:])", "a", "b"),
                           cwd=tmp_path, capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    assert str(tmp_path) not in child.stdout and "['a', 'b']" in child.stdout


_PARENT = """
import subprocess, sys, time
from deploykit.core.child import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         preexec_fn=die_with_parent if sys.argv[1] == "yes" else None)
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has died
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("guarded", [True, False])
def test_a_child_dies_with_its_parent(guarded):
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, "yes" if guarded else "no"], stdout=subprocess.PIPE,
                              text=True)
    pid = int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGKILL)  # no clean-up in the parent at all
        parent.wait()
        deadline = time.monotonic() + (10 if guarded else 1)
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        # without die_with_parent the orphan lives on (so this test can fail)
        assert _alive(pid) is not guarded, "the child outlived its parent" if guarded else "the orphan died anyway"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_die_with_parent_is_harmless_in_this_process_tree():
    proc = subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True,
                          preexec_fn=die_with_parent)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok"
