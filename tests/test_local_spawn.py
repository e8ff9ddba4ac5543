"""The local site's process start: libc posix_spawnp through ctypes (GIL released),
and the os.posix_spawnp fallback, behave the same."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lwfm.sites import _spawn


def _reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture(params=["ctypes", "os"])
def spawnp(request, monkeypatch):
    if request.param == "os":
        monkeypatch.setattr(_spawn, "_bound", lambda: None)
    else:
        assert _spawn._bound() is not None, "libc's posix_spawnp could not be bound"
    return _spawn.spawnp


def test_spawn_argv_env_log_and_group(spawnp, tmp_path: Path) -> None:
    log = tmp_path / "job.log"
    env = {b"PATH": os.environb[b"PATH"], b"GREETING": "grüß".encode()}
    pid = spawnp(["sh", "-c", 'echo "$GREETING $1"; echo err >&2; read x; echo "[$x]"; exit 3',
                  "sh", "a b"], env, str(log))
    assert _reap(pid) == 3   # stdin is /dev/null: read gets nothing
    assert log.read_text(encoding="utf-8").splitlines() == ["grüß a b", "err", "[]"]


def test_spawn_own_process_group(spawnp, tmp_path: Path) -> None:
    pid = spawnp(["sleep", "5"], {b"PATH": os.environb[b"PATH"]}, str(tmp_path / "l"))
    try:
        assert os.getpgid(pid) == pid != os.getpgid(0)
    finally:
        os.killpg(pid, 9)
        assert _reap(pid) == -9


def test_spawn_missing_program_raises(spawnp, tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(FileNotFoundError):
        spawnp(["no-such-program-lwfm"], {b"PATH": b"/usr/bin:/bin"}, str(tmp_path / "l"))
    assert time.monotonic() - t0 < 5
