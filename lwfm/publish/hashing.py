"""One streaming pass per file: copy it into the bag while computing every digest.

Checksumming dominates publishing, so each payload byte is read once, in blocks,
and the same digests serve the bag manifests, the crate and the check against the
store; no file is ever held in memory whole.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager

try:
    import fcntl
except ImportError:  # Windows: no O_DIRECT either
    fcntl = None  # type: ignore[assignment]

# 4 MiB pieces. A copier thread (the --zip path; into a folder the copier is a child
# process) gives up the GIL four times a piece (read, two digests, write) and, while
# the crate is rendered on the main thread, waits up to the 5 ms switch interval to
# take it back: beside a busy Python thread a 1 GB copy took 27-35 s
# with 1 MiB pieces, 12-26 s with 8 MiB (3-6 s alone; loaded test VM). Larger pieces
# fall out of the CPU cache between the three passes over them: in bench_publish,
# 8 MiB cut publish_s (median 6.3 s against 9.6 s) but cost 13% more CPU (5.5 s against
# 4.8 s); 4 MiB kept the CPU (4.8 s) with publish_s in between (8.1 s, 3 runs).
BLOCK = 4 << 20
ALIGN = 4096  # O_DIRECT lengths and offsets: a multiple of the device's logical block
ALGORITHMS = ("sha256", "sha512")
DIRECT_MIN = 4 << 20  # smaller files gain nothing from O_DIRECT
_O_DIRECT = getattr(os, "O_DIRECT", 0) if fcntl is not None else 0


@dataclass(frozen=True)
class Digests:
    sha256: str
    sha512: str
    size: int


def copy_hashing(src: Path, dst: Path | Callable[[Path], ContextManager[Any]],
                 helper: Executor | None = None) -> Digests:
    """Copy ``src`` to a new file ``dst`` (or into what ``dst(src)`` opens, such as a
    zip entry) and return its digests (read once).

    The digests are of the very buffer that is written, so they are the bag's bytes.
    With a ``helper`` (one thread), each piece's sha256 and write run there while this
    thread computes its sha512: hashlib and the write release the GIL, so a process
    with nothing else to do (the copier child) uses two cores.
    """
    h256, h512, n = hashlib.sha256(), hashlib.sha512(), 0
    buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT wants; one per copy, never more
    view = chunk = memoryview(buf)
    try:
        with open(src, "rb", buffering=0) as fin:
            sink = (_Sink(dst, os.fstat(fin.fileno()).st_size) if isinstance(dst, Path)
                    else dst(src))
            with sink as out:
                while k := fin.readinto(buf):
                    chunk = view[:k]
                    if helper is None:
                        h256.update(chunk)
                        h512.update(chunk)
                        out.write(chunk)
                    else:  # sha256 (faster with SHA-NI) + the write beside the sha512
                        done = helper.submit(_hash_write, h256, out, chunk)
                        try:
                            h512.update(chunk)
                        finally:
                            done.result()  # the piece is free again only then
                    chunk.release()
                    n += k
        if isinstance(dst, Path):
            st = src.stat()
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        chunk.release()  # the views first: an mmap with live views cannot close
        view.release()
        buf.close()
    return Digests(h256.hexdigest(), h512.hexdigest(), n)


def _hash_write(h: Any, out: Any, chunk: memoryview) -> None:
    h.update(chunk)
    out.write(chunk)


class _Sink:
    """The new payload file; large ones are written with O_DIRECT, past the page cache.

    Buffered, each new GB must first be given pages of the page cache: 0.4 s of kernel
    time when it recycles them, up to 3 s on a VM whose memory is still untouched (the
    2-core test machine), more than sha256 + sha512 of that GB. A published copy is
    not read again soon, so those pages buy nothing and push the user's files out of
    the cache; with O_DIRECT the write costs ~0.1 s per GB. The price: each write waits
    for the device (hashing runs at ~0.5 GB/s, so a disk slower than that sets the
    pace). Filesystems without O_DIRECT (tmpfs on older kernels, some FUSE) are
    written through the cache, as are a file's unaligned end and small files.
    """

    def __init__(self, path: Path, size: int):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                          0o666)
        self.direct = False
        if size >= DIRECT_MIN and _O_DIRECT:
            self.direct = self._setfl(fcntl.fcntl(self.fd, fcntl.F_GETFL) | _O_DIRECT)

    def _setfl(self, flags: int) -> bool:
        try:
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags)
            return True
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            return False

    def _buffered(self) -> None:
        self._setfl(fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~_O_DIRECT)
        self.direct = False

    def write(self, chunk: memoryview) -> None:
        if self.direct and len(chunk) % ALIGN:  # the file's end: its aligned part direct,
            cut = len(chunk) - len(chunk) % ALIGN  # the rest (and all after) through the cache
            if cut:
                self._write(chunk[:cut])
            self._buffered()
            chunk = chunk[cut:]
        self._write(chunk)

    def _write(self, chunk: memoryview) -> None:
        done = 0
        while done < len(chunk):
            try:
                k = os.write(self.fd, chunk[done:])
            except OSError as e:
                if not (self.direct and e.errno == errno.EINVAL):
                    raise
                self._buffered()  # alignment the device refuses: through the cache
                continue
            if self.direct and k != len(chunk) - done:
                self._buffered()
            done += k

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def hash_bytes(data: bytes) -> Digests:
    """Digests of a small in-memory document (tag files, the crate metadata)."""
    return Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), len(data))
