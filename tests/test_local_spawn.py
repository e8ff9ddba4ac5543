"""The local site's process start: libc posix_spawn through ctypes (with a working-directory
file action), and the os.posix_spawn fallback, behave the same."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lwfm.sites import _spawn

PATH = {b"PATH": os.environb[b"PATH"]}


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture(params=["ctypes", "os"])
def spawn(request, monkeypatch):
    if request.param == "os":
        monkeypatch.setattr(_spawn, "_bound", lambda: None)
    else:
        assert _spawn._bound() is not None, "libc's posix_spawn could not be bound"
    return _spawn.spawn


def test_spawn_argv_env_log_and_group(spawn, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    env = {**PATH, b"GREETING": "grüß".encode()}
    pid = spawn(b"/bin/sh", [b"sh", b"-c", b'echo "$GREETING $1"; echo err >&2; read x; echo "[$x]"; exit 3',
                             b"sh", b"a b"], env, os.fsencode(log))
    assert _reap(pid) == 3   # stdin is /dev/null: read gets nothing
    assert log.read_text(encoding="utf-8").splitlines() == ["grüß a b", "err", "[]"]


def test_spawn_own_process_group(spawn, tmp_path: Path) -> None:
    pid = spawn(b"/bin/sleep", [b"sleep", b"5"], PATH, os.fsencode(tmp_path / "l"))
    try:
        assert os.getpgid(pid) == pid != os.getpgid(0)
    finally:
        os.killpg(pid, 9)
        assert _reap(pid) == -9


def test_spawn_missing_program_raises(spawn, tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError):
        spawn(b"/no/such-program-lwfm", [b"x"], PATH, os.fsencode(tmp_path / "l"))
    assert time.monotonic() - t0 < 5


def test_spawn_in_a_working_directory_keeps_the_log_where_it_was(spawn, tmp_path: Path) -> None:
    work = tmp_path / "work dir"
    work.mkdir()
    log = tmp_path / "job.log"
    pid = spawn(b"/bin/sh", [b"sh", b"-c", b"pwd; ls"], PATH, os.fsencode(log), os.fsencode(work))
    assert _reap(pid) == 0
    assert log.read_text().splitlines() == [str(work)]


def test_a_job_does_not_inherit_pythons_ignored_sigpipe(spawn, tmp_path: Path) -> None:
    """Python ignores SIGPIPE; a job must not: ``yes | head -1`` ends instead of erroring."""
    log = tmp_path / "job.log"
    pid = spawn(b"/bin/sh", [b"sh", b"-c", b"yes | head -1; grep SigIgn /proc/self/status"],
                PATH, os.fsencode(log))
    assert _reap(pid) == 0
    out = log.read_text().splitlines()
    assert out[0] == "y" and "Broken pipe" not in log.read_text()
    assert int(out[1].split()[1], 16) & (1 << (13 - 1)) == 0   # SIGPIPE is 13
