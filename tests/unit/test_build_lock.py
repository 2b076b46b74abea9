"""Artifact builds under one lock: a second process that needs the same artifact waits for the first, saying
whom it waits for, instead of building it a second time beside it (real processes, real flock)."""

import subprocess
import sys
import time

from deploykit.core.guarded import build_lock

HOLD = """
import sys, time
from deploykit.core.guarded import build_lock
with build_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_build_waits_for_the_first_and_names_it(tmp_path):
    dest = tmp_path / "model.onnx"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(dest), "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        said = []
        t0 = time.monotonic()
        with build_lock(dest, say=said.append):
            waited = time.monotonic() - t0
        assert waited > 0.5  # it waited for the holder instead of building beside it
        assert said and "waiting for pid" in said[0] and str(holder.pid) in said[0] and "model.onnx" in said[0]
    finally:
        holder.kill()
        holder.wait()
    said = []
    with build_lock(dest, say=said.append):  # free: no wait, nothing said
        pass
    assert said == []
    assert not dest.exists() and list(tmp_path.iterdir()) == []  # the lock adds nothing to the artifact's folder
