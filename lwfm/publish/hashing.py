"""One streaming pass per file: copy it into the bag while computing every digest.

Checksumming dominates publishing, so each payload byte is read once, in blocks,
and the same digests serve the bag manifests, the crate and the check against the
store; no file is ever held in memory whole.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

BLOCK = 1 << 20
ALGORITHMS = ("sha256", "sha512")


@dataclass(frozen=True)
class Digests:
    sha256: str
    sha512: str
    size: int


def copy_hashing(src: Path, dst: Path) -> Digests:
    """Copy ``src`` to a new file ``dst`` and return its digests (read once)."""
    h256, h512, n = hashlib.sha256(), hashlib.sha512(), 0
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as fin, open(dst, "xb", buffering=0) as fout:
        while k := fin.readinto(buf):
            chunk = view[:k]
            h256.update(chunk)
            h512.update(chunk)
            fout.write(chunk)
            n += k
    os.utime(dst, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns))
    return Digests(h256.hexdigest(), h512.hexdigest(), n)


def hash_bytes(data: bytes) -> Digests:
    """Digests of a small in-memory document (tag files, the crate metadata)."""
    return Digests(hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), len(data))
