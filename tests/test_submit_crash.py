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
from types import SimpleNamespace

import pytest

from lwfm import JobDefn, Manager, State
from lwfm.errors import SiteError

from .test_local_hardening import lwfm


@pytest.fixture
def hung_lab(home: Path):
    """A TCP listener that accepts connections and never answers; an ssh site aimed at it.
    ``hang_up()`` closes them all (idempotent)."""
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
    def hang_up() -> None:  # the login node drops every connection: connects fail now
        stop.set()
        th.join(5)
        for s in held:
            s.close()
        srv.close()

    yield SimpleNamespace(port=srv.getsockname()[1], hang_up=hang_up)
    hang_up()


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
        home: Path, hung_lab: SimpleNamespace) -> None:
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
        home: Path, hung_lab: SimpleNamespace) -> None:
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


def test_a_close_from_another_thread_waits_for_a_submit_under_way(
        home: Path, hung_lab: SimpleNamespace) -> None:
    """A script's main thread closes its Manager while a worker thread's submit is still
    in its site (an SSH connect): close waits, so the start's outcome is recorded by the
    process that knows it, not settled later as "may have run"."""
    cfg = home / "lwfm.toml"   # the submit gives up on the lab within 8 s of its start
    cfg.write_text(cfg.read_text().replace("reconnect_timeout = 120", "reconnect_timeout = 8"))
    m = Manager(home)
    out: dict[str, BaseException] = {}

    def submit() -> None:
        try:
            m.submit_job(JobDefn(entry=["true"], site="lab"))
        except BaseException as e:  # noqa: BLE001 - the test reads what it was
            out["error"] = e

    worker = threading.Thread(target=submit)
    worker.start()
    deadline = time.monotonic() + 60
    while not m.store.find_jobs():  # recorded; its submit is now blocked in the connect
        assert time.monotonic() < deadline and worker.is_alive(), out
        time.sleep(0.05)
    job_id = m.store.find_jobs()[0].id
    closer = threading.Thread(target=m.close)
    closer.start()
    time.sleep(1.0)
    assert closer.is_alive(), "close returned while a submit was still starting its job"
    hung_lab.hang_up()
    closer.join(60)
    worker.join(60)
    assert not closer.is_alive() and not worker.is_alive()
    assert isinstance(out.get("error"), SiteError), out
    with Manager(home) as m2:
        hist = m2.history(job_id)
    assert [s.state for s in hist] == [State.PENDING, State.FAILED]
    assert "could not start" in (hist[-1].info or ""), hist[-1].info
