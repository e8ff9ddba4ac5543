"""A submitted job whose submitter dies after recording it and before its start is
recorded (issue 10, items 2 and 3: nothing a user runs is left misrecorded).

The row is written before the site is asked, so a submitter killed -9 while its site
starts the job leaves a PENDING job with no native id. Here the site is a real ssh site
whose lab is a real loopback TCP listener that accepts and never speaks SSH (a login node
that hangs), so ``lwfm run`` blocks in the connect for as long as the test likes, and a
real kill -9 lands in that window."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lwfm import JobDefn, Manager, State

from .test_local_hardening import lwfm


@pytest.fixture
def hung_lab(home: Path):
    """A TCP listener that accepts connections and never answers; an ssh site aimed at it."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    (home / "lwfm.toml").write_text(
        "[sites.lab]\n"
        'driver = "ssh"\n'
        'host = "127.0.0.1"\n'
        f"port = {srv.getsockname()[1]}\n"
        'user = "nobody"\n'
        f'known_hosts = "{home / "known_hosts"}"\n'
        "connect_timeout = 120\n"
        "reconnect_timeout = 120\n"
        'remote_home = "/tmp/lab-home"\n')
    yield srv.getsockname()[1]
    stop.set()
    th.join(5)
    for s in held:
        s.close()
    srv.close()


def _pending_job(home: Path, proc: subprocess.Popen, timeout: float = 60) -> str:
    """The id of the one job the submitter recorded (it is then blocked in its site)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        with Manager() as m:
            jobs = m.store.find_jobs()
        if jobs:
            assert len(jobs) == 1 and jobs[0].state is State.PENDING, jobs
            assert jobs[0].context.native_id is None
            return jobs[0].id
        time.sleep(0.1)
    raise AssertionError("the submitter never recorded its job")


def test_a_job_whose_submitter_is_killed_while_its_site_starts_it_ends_failed(
        home: Path, hung_lab: int) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lwfm.cli", "run", "--site", "lab", "--",
                             "true"], env={**os.environ, "LWFM_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        job_id = _pending_job(home, proc)
        # While its submitter lives (blocked in the connect), the job is its to start:
        # another process asking about it must not end it.
        alive = lwfm(home, "status", job_id)
        assert alive.returncode == 0, alive.stderr
        assert "PENDING" in alive.stdout and "FAILED" not in alive.stdout, alive.stdout
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    # Its submitter is gone: the next process to ask tells the truth, once.
    out = lwfm(home, "status", job_id)
    assert out.returncode == 0, out.stderr
    assert "FAILED" in out.stdout, out.stdout
    with Manager() as m:
        job = m.wait(job_id, timeout=30)
        hist = m.history(job_id)
    assert job.state is State.FAILED
    assert [s.state for s in hist] == [State.PENDING, State.FAILED]
    assert "stopped before its start was recorded" in (hist[-1].info or "")


def test_a_waiting_manager_ends_such_a_job_without_being_asked_about_it(
        home: Path, hung_lab: int) -> None:
    """The manager loop (lwfm serve, or any waiting script) sweeps them: a future waited
    on by id from another process returns instead of hanging."""
    proc = subprocess.Popen([sys.executable, "-m", "lwfm.cli", "run", "--site", "lab", "--",
                             "true"], env={**os.environ, "LWFM_HOME": str(home)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    job_id = _pending_job(home, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    with Manager() as m:
        other = m.submit_job(JobDefn(entry=["true"], site="local"))
        m.wait(other.id, timeout=30)   # runs the loop, whose recovery sweeps the home
        deadline = time.monotonic() + 30
        while m.store.get_job(job_id).state is State.PENDING and time.monotonic() < deadline:
            time.sleep(0.1)
        assert m.store.get_job(job_id).state is State.FAILED
        assert m.future(job_id).done()
