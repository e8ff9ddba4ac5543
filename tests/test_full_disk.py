"""A home on a REAL full disk (a tmpfs filled to ENOSPC) and on a read-only file system.

Reads must work without writing (even reading SQLite in WAL mode writes its index, the
``-shm`` file: the store then reads the main file immutable); writes fail with one clear
StoreError naming the store and the cause, and leave the store unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lwfm import Manager
from lwfm.errors import StoreError
from lwfm.model import JobDefn, Workflow

from ._postgres import in_ci


def _mount_tmpfs(where: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        msg = f"cannot mount a tmpfs: {r.stderr.strip()}"
        if in_ci():
            pytest.fail(msg + " (CI=true: not skipping)", pytrace=False)
        pytest.skip(msg)


@pytest.fixture
def fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A small tmpfs holding an lwfm home with two finished jobs and one notated file."""
    d = tmp_path / "fs"
    d.mkdir()
    _mount_tmpfs(d, "4m")
    try:
        home = d / "home"
        for var in ("LWFM_JOB_ID", "LWFM_WORKFLOW_ID", "LWFM_PARENT_ID", "LWFM_STORE_URL"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("LWFM_HOME", str(home))
        src = tmp_path / "input.txt"   # outside the tmpfs: notate reads it, never copies it
        src.write_text("some input\n")
        with Manager(home) as m:
            jobs = [m.submit(JobDefn(["echo", word])) for word in ("one", "two")]
            for j in jobs:
                assert m.wait(j.id).state.value == "COMPLETE"
            m.notate(src, metadata={"stage": "raw", "n": 1})
        yield {"dir": d, "home": home, "jobs": [j.id for j in jobs], "src": src}
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(d: Path) -> None:
    """Write a file until the file system says ENOSPC (down to the last byte it takes)."""
    fd = os.open(d / "fill", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    os.write(fd, b"\0" * chunk)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    finally:
        os.close(fd)
    st = os.statvfs(d)
    assert st.f_bavail == 0, "the tmpfs is not full"


def state_of(home: Path) -> tuple[str, int]:
    """The store as committed: the main file's digest and the WAL's size (0: nothing pending)."""
    db = home / "lwfm.db"
    wal = home / "lwfm.db-wal"
    return hashlib.sha256(db.read_bytes()).hexdigest(), wal.stat().st_size if wal.exists() else 0


def lwfm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lwfm.cli", *args], capture_output=True,
                          text=True, timeout=120)


def assert_reads_work(fs: dict) -> None:
    r = lwfm("jobs", "--json")
    assert r.returncode == 0, r.stderr
    assert sorted(j["id"] for j in json.loads(r.stdout)) == sorted(fs["jobs"])
    r = lwfm("status", fs["jobs"][0][:8])
    assert r.returncode == 0, r.stderr
    assert fs["jobs"][0] in r.stdout and "COMPLETE" in r.stdout
    r = lwfm("find", "stage=raw", "--json")
    assert r.returncode == 0, r.stderr
    assert [d["metadata"]["n"] for d in json.loads(r.stdout)] == [1]


def assert_one_clear_line(r: subprocess.CompletedProcess, cause: str) -> None:
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("lwfm: error: ") and cause in r.stderr, r.stderr


def assert_writes_fail_clearly(fs: dict, cause: str) -> None:
    with Manager(fs["home"]) as m:   # opening writes nothing, so it works
        with pytest.raises(StoreError) as e:
            m.notate(fs["src"], metadata={"stage": "late"})
        msg = str(e.value)
        assert "\n" not in msg and cause in msg and str(fs["home"] / "lwfm.db") in msg, msg
        with pytest.raises(StoreError, match=cause):
            m.store.add_workflow(Workflow(name="late"))
        assert [d.metadata["stage"] for d in m.find()] == ["raw"]


# -- a full disk ------------------------------------------------------------------------
def test_reads_work_on_a_full_disk(fs: dict) -> None:
    before = state_of(fs["home"])
    fill(fs["dir"])
    assert_reads_work(fs)
    assert state_of(fs["home"]) == before


def test_writes_on_a_full_disk_fail_with_one_clear_error(fs: dict) -> None:
    before = state_of(fs["home"])
    fill(fs["dir"])
    assert_writes_fail_clearly(fs, "the disk is full")
    assert state_of(fs["home"]) == before
    assert_reads_work(fs)   # and the store still reads as before


def test_lwfm_run_on_a_full_disk_fails_in_one_line(fs: dict) -> None:
    before = state_of(fs["home"])
    fill(fs["dir"])
    assert_one_clear_line(lwfm("run", "--", "true"), "the disk is full")
    assert state_of(fs["home"]) == before


def test_a_store_on_a_full_disk_recovers_when_space_is_freed(fs: dict) -> None:
    """The read-only fallback is not sticky: once space is back, the same Manager writes."""
    fill(fs["dir"])
    with Manager(fs["home"]) as m:
        with pytest.raises(StoreError, match="the disk is full"):
            m.notate(fs["src"], metadata={"stage": "late"})
        (fs["dir"] / "fill").unlink()
        m.notate(fs["src"], metadata={"stage": "late"})
        assert sorted(d.metadata["stage"] for d in m.find()) == ["late", "raw"]


# -- a read-only file system ------------------------------------------------------------
def test_a_home_on_a_read_only_file_system_reads_and_refuses_writes(fs: dict) -> None:
    before = state_of(fs["home"])
    deadline = time.monotonic() + 20
    while True:  # the local site's keeper (its log is in the home) exits soon after its Manager
        r = subprocess.run(["mount", "-o", "remount,ro", str(fs["dir"])], capture_output=True,
                           text=True)
        if r.returncode == 0 or "busy" not in r.stderr or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if r.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only: {r.stderr.strip()}")
    try:
        assert_reads_work(fs)
        assert_writes_fail_clearly(fs, "read-only file system")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(fs["dir"])], capture_output=True)
    assert state_of(fs["home"]) == before
