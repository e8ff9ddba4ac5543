"""A file written in pieces and hashed as it goes, so generated documents (the crate
metadata, the thread's workflow file) are never read back to be checksummed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .hashing import Digests

_FLUSH = 1 << 20


class HashingFile:
    """Write-only binary file that keeps its sha256 and sha512 up to date.

    Small writes (one entity, one step) are gathered into 1 MiB pieces: each piece is
    hashed and written at once, which costs far less than thousands of tiny updates.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fh = open(path, "xb")
        self._h256, self._h512, self._n = hashlib.sha256(), hashlib.sha512(), 0
        self._buf = bytearray()

    def write(self, b: bytes) -> int:
        self._buf += b
        if len(self._buf) >= _FLUSH:
            self._flush()
        return len(b)

    def _flush(self) -> None:
        if self._buf:
            self._h256.update(self._buf)
            self._h512.update(self._buf)
            self._n += len(self._buf)
            self._fh.write(self._buf)
            self._buf = bytearray()

    def close(self) -> None:
        if not self._fh.closed:
            self._flush()
            self._fh.close()

    def digests(self) -> Digests:
        return Digests(self._h256.hexdigest(), self._h512.hexdigest(), self._n)
