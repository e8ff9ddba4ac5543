"""The payload copier child process: its answers, and that no publish leaves it behind.

Real child processes throughout (``python -m lwfm.publish._copier``); the publish tests
watch the ones publish starts by wrapping ``CopierProcess.__init__`` (a spy: the real
constructor runs).
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lwfm.errors import PublishError
from lwfm.publish import _copier
from lwfm.publish._copier import CopierProcess
from lwfm.publish.hashing import BLOCK, Digests
from tests._bundle_threads import snapshot
from tests.test_publish import _args, _leftovers, _publish, _refused, thread  # noqa: F401


class Started(list):
    """The CopierProcesses publish started; ``before`` runs just before each starts."""
    before: Callable[[list[tuple[Path, Path]]], None] | None = None


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Started:
    seen = Started()
    real = _copier.CopierProcess.__init__

    def spy(self: CopierProcess, pairs: list[tuple[Path, Path]]) -> None:
        if seen.before is not None:
            seen.before(pairs)
        real(self, pairs)
        seen.append(self)

    monkeypatch.setattr(_copier.CopierProcess, "__init__", spy)
    return seen


def _gone(c: CopierProcess) -> bool:
    """Ended and reaped: no process, not even a zombie, under that pid."""
    return c.proc.returncode is not None and not Path(f"/proc/{c.proc.pid}").exists()


def test_child_answers_each_file_in_order_and_stops_at_the_first_error(tmp_path):
    data = os.urandom(2 * BLOCK + 12345)  # more than one piece, an unaligned end
    src = tmp_path / "a.bin"
    src.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    c = CopierProcess([(src, out / "a"), (tmp_path / "missing", out / "b"), (src, out / "c")])
    try:
        got = list(c.results())
    finally:
        c.close()
    assert got[0] == Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(),
                             len(data))
    assert (out / "a").read_bytes() == data
    assert isinstance(got[1], OSError) and got[1].errno == errno.ENOENT
    assert len(got) == 2 and not (out / "c").exists()  # nothing copied after the error
    assert _gone(c)


def test_close_kills_a_child_still_copying(tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(4 * BLOCK))
    c = CopierProcess([(src, tmp_path / f"copy-{i}") for i in range(50)])
    c.close()  # at once: it is still copying
    assert _gone(c)


def test_child_is_gone_after_a_publish(thread, tmp_path, started):
    remote, th = thread
    _publish(remote, tmp_path / "out", th)
    assert len(started) == 1 and started[0].proc.returncode == 0 and _gone(started[0])


def test_child_is_gone_after_a_source_file_vanishes_midway(thread, tmp_path, started):
    """Selected, then gone before its copy (the first file is copied): the refusal
    names it as the in-process copier did, and nothing is left behind."""
    remote, th = thread
    vanished: list[Path] = []

    def remove_second(pairs: list[tuple[Path, Path]]) -> None:
        assert len(pairs) >= 2
        pairs[1][0].unlink()
        vanished.append(pairs[1][0])

    started.before = remove_second
    before = snapshot(remote.store)
    with pytest.raises(PublishError) as e:
        _publish(remote, tmp_path / "out", th)
    assert str(e.value).startswith(f"cannot read {vanished[0]} (data ")
    assert str(e.value).endswith(": No such file or directory")
    assert len(started) == 1 and _gone(started[0])
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    assert snapshot(remote.store) == before


def test_child_is_gone_after_the_parent_refuses_a_changed_file(thread, tmp_path, started):
    """The parent refuses while the child may still be copying the files after it."""
    remote, th = thread
    Path(remote.store.get_data(th.outputs[0]).url).write_text("tampered\n")
    _refused(remote, tmp_path, _args(th), "no longer matches the store")
    assert len(started) == 1 and _gone(started[0])
