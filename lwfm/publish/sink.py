"""A file written in pieces and hashed as it goes, so generated documents (the crate
metadata, the thread's workflow file) are never read back to be checksummed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .hashing import Digests


class HashingFile:
    """Write-only binary file that keeps its sha256 and sha512 up to date."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = open(path, "xb")
        self._h256, self._h512, self._n = hashlib.sha256(), hashlib.sha512(), 0

    def write(self, b: bytes) -> int:
        self._h256.update(b)
        self._h512.update(b)
        self._n += len(b)
        return self._fh.write(b)

    def close(self) -> None:
        self._fh.close()

    def digests(self) -> Digests:
        return Digests(self._h256.hexdigest(), self._h512.hexdigest(), self._n)
