"""Copy the included files into ``data/files/``, hashed once, checked against the store.

Copies run on a background thread while the caller renders the crate: hashlib and
file I/O release the GIL, so the digests and the Python work of the metadata proceed
at once. One copier, not more: a second one made the 1 GB benchmark slower (the
copies then compete for the disk's write-back, not for CPU). :meth:`PayloadCopier.wait` returns the
digests, or raises PublishError for the first file that no longer matches its record.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lwfm.bundles._crate import _safe_name
from lwfm.errors import PublishError

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
        raise PublishError(f"cannot read {src} (data {r.id}): {e.strerror}") from None
    if (r.sha256 and d.sha256 != r.sha256) or (r.size is not None and d.size != r.size):
        raise PublishError(
            f"{src} (data {r.id}) no longer matches the store: recorded sha256 {r.sha256} "
            f"({r.size} bytes), now {d.sha256} ({d.size} bytes). Restore the file, or record "
            "the new version as new data, then publish again")
    return d


class PayloadCopier:
    """Starts copying on construction; :meth:`wait` joins, :meth:`close` always."""

    def __init__(self, sel: PublishSelection, data: Path, workers: int = 1,
                 into: ZipPayload | None = None):
        """``into``: write the files straight into the zipped bag (one worker then, as
        a zip takes one entry at a time), not into ``data/files/``."""
        (data / "files").mkdir(parents=True)
        self.planned = _plan(sel)
        self.elsewhere = into is not None
        self._pool = ThreadPoolExecutor(max_workers=1 if into else workers,
                                        thread_name_prefix="lwfm-publish-copy")
        self._futures: list[Future[Digests]] = [
            self._pool.submit(_copy, r.path,  # type: ignore[arg-type]
                              into.entry(f"data/{rel}") if into else data / rel, r)
            for rel, r in self.planned]

    def wait(self) -> list[IncludedFile]:
        return [IncludedFile(rel, r, f.result())
                for (rel, r), f in zip(self.planned, self._futures)]

    def close(self) -> None:
        """Stop the pool; copies not started are cancelled (the caller removes the files)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
