"""A full disk (a real, small tmpfs holding the lwfm home): a job is recorded before it
runs or refused; a write that fails goes back to its owner; a report no one waits for is
kept until the store takes it, never dropped."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lwfm import JobDefn, Manager, State
from lwfm.errors import LwfmError


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An 8 MB tmpfs with an lwfm home on it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {r.stderr}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")
    home = mnt / "home"
    home.mkdir()
    monkeypatch.setenv("LWFM_HOME", str(home))
    for var in ("LWFM_JOB_ID", "LWFM_WORKFLOW_ID", "LWFM_PARENT_ID", "LWFM_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> None:
    """Leave no free block: the WAL is emptied first, so the next commit must grow it."""
    with sqlite3.connect(mnt / "home" / "lwfm.db") as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for size in (1 << 16, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def free(mnt: Path) -> None:
    (mnt / "filler").unlink()


def test_submit_on_a_full_disk_raises_and_what_ran_is_recorded(disk: Path, tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    ran.mkdir()
    with Manager(disk / "home") as m:
        m.wait(m.submit(JobDefn(entry=["true"])).id, timeout=30)
        fill(disk)
        returned, refused = [], []
        for _ in range(200):
            try:
                returned.append(m.submit(JobDefn(entry=f"touch {ran}/$LWFM_JOB_ID",
                                                 kind="shell")).id)
            except LwfmError as e:
                refused.append(str(e))
        assert refused, "every submit returned on a full disk"
        assert "was not started" in refused[0] and "full" in refused[0], refused[0]
        time.sleep(1.0)  # what was started has run
        free(disk)
        done = m.wait_all(returned, timeout=60)  # nothing else's error surfaces here
        assert all(j.state is State.COMPLETE for j in done)
        recorded = {j.id for j in m.store.find_jobs()}
        assert set(os.listdir(ran)) <= recorded  # no job ran unrecorded
        assert set(returned) == set(os.listdir(ran))


def test_a_report_no_one_waits_for_is_kept_until_the_disk_has_room(disk: Path) -> None:
    """The job ends while the disk is full: its end is kept and retried, not dropped; the
    caller whose own write failed is told at once, and only it."""
    with Manager(disk / "home") as m:
        job = m.submit(JobDefn(entry=["sleep", "1"]))
        m.flush()
        fill(disk)
        t0 = time.monotonic()
        with pytest.raises(LwfmError, match="full"):
            m.report_status(State.INFO, info="progress", job_id=job.id)
        assert time.monotonic() - t0 < 10
        time.sleep(2.0)  # the job ended; the reaper's report cannot be written
        with pytest.raises(LwfmError, match="does not accept writes"):
            m.flush()
        others: list[BaseException] = []
        free(disk)
        t = threading.Thread(target=lambda: _catch(others, m.flush))
        t.start()
        t.join(30)
        assert others == []  # the failed INFO was its owner's error, nobody else's
        j = m.wait(job.id, timeout=30)
        assert j.state is State.COMPLETE and j.exit_code == 0
        assert "progress" not in [s.info for s in m.history(job.id)]


def _catch(out: list[BaseException], fn) -> None:  # noqa: ANN001
    try:
        fn()
    except BaseException as e:  # noqa: BLE001 - collected for the assertion
        out.append(e)
