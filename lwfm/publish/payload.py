"""Copy the included files into ``data/files/``, hashed once, checked against the store.

Copies run while the caller renders the crate. Into a folder they run in a child
process (:mod:`._copier`): a thread there would wait for the GIL after every read,
digest and write while the crate is rendered, so the two barely overlapped. Into a zip
(``--zip``) they stay on a background thread, as the zip is written by this process.
One copier, not more: a second one made the 1 GB benchmark slower (the copies then
compete for the disk's write-back, not for CPU). :meth:`PayloadCopier.wait` returns the
digests, or raises PublishError for the first file that no longer matches its record.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lwfm.bundles._crate import _safe_name
from lwfm.errors import PublishError

from ._copier import CopierProcess
from .bag import ZipPayload
from .crate import IncludedFile
from .hashing import Digests, copy_hashing
from .selection import DataRow, PublishSelection


def _plan(sel: PublishSelection) -> list[tuple[str, DataRow]]:
    """Each included file's path in the crate: files/<name>, made unique by its id."""
    out, used = [], set()
    for r in sel.included:
        name = _safe_name(r.url)
        if name in used:
            name = f"{r.id[:8]}-{name}"
        used.add(name)
        out.append((f"files/{name}", r))
    return out


def _copy(src: Path, dst: Path | Callable[[Path], Any], r: DataRow) -> Digests:
    try:
        d = copy_hashing(src, dst)
    except OSError as e:
        raise _unreadable(src, r, e) from None
    return _checked(src, r, d)


def _unreadable(src: Path, r: DataRow, e: OSError) -> PublishError:
    return PublishError(f"cannot read {src} (data {r.id}): {e.strerror}")


def _checked(src: Path, r: DataRow, d: Digests) -> Digests:
    if (r.sha256 and d.sha256 != r.sha256) or (r.size is not None and d.size != r.size):
        raise PublishError(
            f"{src} (data {r.id}) no longer matches the store: recorded sha256 {r.sha256} "
            f"({r.size} bytes), now {d.sha256} ({d.size} bytes). Restore the file, or record "
            "the new version as new data, then publish again")
    return d


class PayloadCopier:
    """Starts copying on construction; :meth:`wait` joins, :meth:`close` always."""

    def __init__(self, sel: PublishSelection, data: Path, into: ZipPayload | None = None):
        """``into``: write the files straight into the zipped bag (one thread, as a zip
        takes one entry at a time), not into ``data/files/`` (the child process)."""
        (data / "files").mkdir(parents=True)
        self.planned = _plan(sel)
        self.elsewhere = into is not None
        self._pool: ThreadPoolExecutor | None = None
        self._child: CopierProcess | None = None
        self._done: list[IncludedFile] | None = None
        if into is not None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lwfm-publish-copy")
            self._futures: list[Future[Digests]] = [
                self._pool.submit(_copy, r.path, into.entry(f"data/{rel}"),  # type: ignore[arg-type]
                                  r) for rel, r in self.planned]
        else:
            self._child = CopierProcess([(r.path, data / rel)  # type: ignore[misc]
                                         for rel, r in self.planned])

    def wait(self) -> list[IncludedFile]:
        if self._done is None:
            self._done = (self._from_child() if self._child is not None else
                          [IncludedFile(rel, r, f.result())
                           for (rel, r), f in zip(self.planned, self._futures)])
        return self._done

    def _from_child(self) -> list[IncludedFile]:
        assert self._child is not None
        out, results = [], self._child.results()
        for rel, r in self.planned:
            try:
                d = next(results)
            except RuntimeError as e:  # the child died without an answer
                raise PublishError(f"the payload copier stopped before {r.path} (data {r.id}): "
                                   f"{e}. Run publish again; if it persists, report it") from None
            if isinstance(d, OSError):
                raise _unreadable(r.path, r, d)  # type: ignore[arg-type]
            out.append(IncludedFile(rel, r, _checked(r.path, r, d)))  # type: ignore[arg-type]
        return out

    def close(self) -> None:
        """Stop the copies (the caller removes the files): the thread's not started are
        cancelled; the child, if still copying, is killed; either way it is reaped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._child is not None:
            self._child.close()
