"""A real one-node Slurm cluster for the fleet tests: munged, slurmctld and slurmd started from Debian's packages
under a temporary folder, with free ports and their own munge socket/key, so nothing global is touched; stopped by
the PIDs this code started. Needs root and the slurm-wlm + munge packages (.ci/system-packages installs them)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")


def unavailable_reason() -> str | None:
    """Why a one-node Slurm cannot be started here, or None."""
    if os.geteuid() != 0:
        return "starting slurmd/slurmctld needs root"
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge; .ci/system-packages does it)"
    return None


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


@dataclass
class SlurmCluster:
    root: Path
    env: dict = field(default_factory=dict)  # SLURM_CONF for every client (sbatch, squeue, submitit)
    pids: dict = field(default_factory=dict)  # daemon -> PID this code started
    node: str = ""

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def log_tail(self, n: int = 20) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*.log")):
            out.append(f"== {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)


def _read_pid(path: Path, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = path.read_text().strip()
            if text:
                return int(text)
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not appear")


def start_cluster(root: Path, *, features: str = "cpu,intel", partition: str = "bench") -> SlurmCluster:
    """Start munged + slurmctld + slurmd for this host under ``root``; wait until the node is idle."""
    root = Path(root)
    for d in ("spool", "state", "log", "munge", "jobs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o700)
    host = socket.gethostname().split(".")[0]
    cluster = SlurmCluster(root=root, node=host)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    sock = root / "munge" / "munge.socket"
    subprocess.run(["munged", "--force", f"--socket={sock}", f"--key-file={key}",
                    f"--pid-file={root / 'munge' / 'munged.pid'}", f"--log-file={root / 'log' / 'munged.log'}",
                    f"--seed-file={root / 'munge' / 'munged.seed'}"], check=True, capture_output=True, timeout=30)
    cluster.pids["munged"] = _read_pid(root / "munge" / "munged.pid")
    ctld_port, slurmd_port = _free_ports(2)
    cpus = os.cpu_count() or 1
    mem_mb = max(512, int(Path("/proc/meminfo").read_text().split()[1]) // 1024 - 2048)
    conf = root / "slurm.conf"
    conf.write_text(f"""ClusterName=deploykit-test
SlurmctldHost={host}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SlurmUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmdSpoolDir={root}/spool
StateSaveLocation={root}/state
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ReturnToService=2
InactiveLimit=0
KillWait=5
MessageTimeout=10
NodeName={host} CPUs={cpus} RealMemory={mem_mb} Feature={features} State=UNKNOWN
PartitionName={partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=EXCLUSIVE
""")
    cluster.env = {"SLURM_CONF": str(conf)}
    env = {**os.environ, **cluster.env}
    try:
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, capture_output=True, timeout=30)
        cluster.pids["slurmctld"] = _read_pid(root / "slurmctld.pid")
        subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, capture_output=True, timeout=30)
        cluster.pids["slurmd"] = _read_pid(root / "slurmd.pid")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout
            if "idle" in out:
                return cluster
            time.sleep(0.5)
        raise RuntimeError(f"the node did not become idle:\n{cluster.log_tail()}")
    except Exception:
        cluster.stop()
        raise


def running_cluster(tmp_path_factory, what: str):
    """A module fixture's body: the one-node cluster for ``what`` (the tests it serves), skipped with the reason
    printed where it cannot start; on teardown every job still known is cancelled and the daemons stopped."""
    import pytest

    reason = unavailable_reason()
    if reason is not None:
        print(f"\nskipping {what}: {reason}")
        pytest.skip(reason)
    c = start_cluster(tmp_path_factory.mktemp("slurm"))
    try:
        yield c
    finally:
        print(f"\nstopping the test cluster (PIDs {c.pids})")
        p = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], env={**os.environ, **c.env}, capture_output=True,
                           text=True, timeout=60)
        jobs = [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]
        if jobs:
            subprocess.run(["scancel", *jobs], env={**os.environ, **c.env}, capture_output=True, timeout=60)
        c.stop()
