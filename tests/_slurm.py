"""A real single-node Slurm for the psij-site tests (Debian's slurm-wlm and munge).

Session-scoped: munged, slurmctld and slurmd run as root with their config, keys,
sockets, state and logs under one directory (``LWFM_TEST_SLURM_DIR``, default
``/tmp/lwfm-test-slurm``), on free ports, so nothing under /etc is touched and a
system Slurm, if any, is left alone. Clients find it through ``SLURM_CONF``, which the
fixture sets for this process and every process it starts. A cluster this fixture
started earlier (its pid files alive) is reused and left running; one it starts now is
stopped by its pid files at the end of the session.

Addresses are loopback (``SlurmctldHost=NODE(127.0.0.1)``, ``NodeAddr``), so a CI
container whose hostname does not resolve works too.

Limits are enforced the way a plain node can without cgroups: memory by the
accounting gatherer (``OverMemoryKill``, sampled every second), time by slurmctld
(minute granularity, checked every 30 s). ``MinJobAge`` is short so that a purged job
can be tested within a minute, and ``JobRequeue=0`` so that a node failure ends a batch
job (NODE_FAIL) instead of putting it back in the queue.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

MIN_JOB_AGE_S = 10


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    node: str
    partition: str = "debug"

    def run(self, *argv: str, check: bool = True) -> str:
        """Run a Slurm client command against this cluster; its stdout."""
        res = subprocess.run(argv, capture_output=True, text=True, env=self.env(), timeout=60)
        if check and res.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr}")
        return res.stdout

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def node_down_and_back(self, after: "Callable[[], object]") -> object:
        """Mark the node DOWN (its jobs end NODE_FAIL), run ``after``, then resume it."""
        self.run("scontrol", "update", f"nodename={self.node}", "state=down", "reason=lwfm-test")
        try:
            return after()
        finally:
            self.run("scontrol", "update", f"nodename={self.node}", "state=resume", check=False)
            _wait_idle_node(self)

    def controller_down_for(self, seconds: float) -> None:
        """Stop slurmctld, wait, and start it again on its saved state (jobs keep
        running under slurmd meanwhile; every squeue fails)."""
        _stop_pidfile(self.root / "slurmctld.pid")
        time.sleep(seconds)
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, capture_output=True,
                       env=self.env())
        _wait_idle_node(self)

    def idle(self) -> None:
        """Wait until no job of an earlier test is left on the node."""
        deadline = time.monotonic() + 60
        while self.run("squeue", "-h", "-t", "PD,R,CG,S").strip():
            if time.monotonic() > deadline:
                raise RuntimeError("jobs of earlier tests are still in the queue after 60 s")
            time.sleep(0.5)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _pid_alive(pidfile: Path) -> bool:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _write_config(root: Path, node: str) -> Path:
    ctld_port, d_port = _free_ports(2)
    # More CPUs than the machine has (config_overrides): 50 one-second jobs run at once,
    # as on a real cluster, instead of queueing two at a time on a 2-core CI machine.
    cpus = max(64, os.cpu_count() or 1)
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=lwfmtest
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge={MIN_JOB_AGE_S}
KillWait=2
JobRequeue=0
MpiDefault=none
SlurmdParameters=config_overrides
DefMemPerCPU=32
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


def _start(root: Path, node: str) -> Path:
    for d in ("state", "spool", "munge"):
        (root / d).mkdir(parents=True, exist_ok=True)
    conf = _write_config(root, node)
    key = root / "munge" / "munge.key"
    if not key.exists():
        subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True)
        key.chmod(0o400)
    subprocess.run(["munged", "-f", f"--key-file={key}", f"--socket={root}/munge/munge.socket",
                    f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munge/munged.log",
                    f"--seed-file={root}/munge/munged.seed"], check=True, capture_output=True)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    subprocess.run(["slurmctld", "-c", "-f", str(conf)], check=True, capture_output=True, env=env)
    subprocess.run(["slurmd", "-f", str(conf)], check=True, capture_output=True, env=env)
    return conf


def _stop_pidfile(pidfile: Path) -> None:
    """SIGTERM the daemon a pid file names and wait (10 s at most) until it is gone."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _stop(root: Path) -> None:
    for pidfile in (root / "slurmd.pid", root / "slurmctld.pid", root / "munge" / "munged.pid"):
        _stop_pidfile(pidfile)


def _wait_idle_node(cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + 60
    last = ""
    while time.monotonic() < deadline:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                             env=cluster.env())
        last = (res.stdout + res.stderr).strip()
        if res.returncode == 0 and last in ("idle", "mixed", "allocated"):
            return
        time.sleep(0.3)
    raise RuntimeError(f"the test Slurm node did not come up in 60 s (sinfo: {last!r}); see "
                       f"{cluster.root}/slurmctld.log and slurmd.log")


@contextlib.contextmanager
def running_cluster() -> Iterator[SlurmCluster]:
    """A running single-node Slurm; ``SLURM_CONF`` points at it meanwhile. One this
    started is stopped at the end (unless ``LWFM_TEST_SLURM_KEEP`` is set); one an
    earlier run started and left running is reused and left running."""
    if os.geteuid() != 0 or not shutil.which("slurmctld") or not shutil.which("munged"):
        raise RuntimeError("the slurm tests need root and Debian's slurm-wlm and munge "
                           "(apt-get install -y slurm-wlm munge)")
    root = Path(os.environ.get("LWFM_TEST_SLURM_DIR", "/tmp/lwfm-test-slurm"))
    node = socket.gethostname().split(".")[0]
    started = False
    conf = root / "slurm.conf"
    if not (conf.exists() and _pid_alive(root / "slurmctld.pid") and _pid_alive(root / "slurmd.pid")
            and _pid_alive(root / "munge" / "munged.pid")):
        _stop(root)
        conf = _start(root, node)
        started = True
    cluster = SlurmCluster(root=root, conf=conf, node=node)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        _wait_idle_node(cluster)
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        if started and not os.environ.get("LWFM_TEST_SLURM_KEEP"):
            _stop(root)


@pytest.fixture(scope="session")
def slurm() -> Iterator[SlurmCluster]:
    """A running single-node Slurm for the whole session (see :func:`running_cluster`)."""
    with running_cluster() as cluster:
        yield cluster
