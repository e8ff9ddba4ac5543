"""Local file helpers every part of lwfm uses: checksums and file:// URLs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import unquote, urlparse

from .errors import InvalidInput


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def local_path(url: str) -> Path:
    """A local path from a path or ``file://`` URL."""
    u = urlparse(url)
    if u.scheme == "file":
        if u.netloc not in ("", "localhost"):
            raise InvalidInput(f"{url!r} names host {u.netloc!r}: a file:// URL here must be "
                               "local (file:///path)")
        return Path(unquote(u.path)).resolve()  # as Path.as_uri() quoted it
    if u.scheme == "":
        return Path(url).expanduser().resolve()
    raise InvalidInput(f"{url!r} is not a local path or file:// URL")
