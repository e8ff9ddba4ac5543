"""Local file helpers every part of lwfm uses: checksums, file:// URLs, and the check
that a path is text lwfm can record (:func:`check_path`)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlparse

from .errors import InvalidInput
from .text import check_text


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_path(path: str | os.PathLike[str], what: str = "the path") -> None:
    """Refuse a path that is not UTF-8 text without NUL (``caf\\xe9.txt``): its record,
    a ``file://`` URL, could not name the same file again (a later get, an export with
    data), so it is refused before anything is copied, as a job's argv is."""
    check_text(os.fspath(path) if not isinstance(path, bytes) else os.fsdecode(path), what)


def local_path(url: str) -> Path:
    """A local path from a path or ``file://`` URL (checked by :func:`check_path`)."""
    check_path(url)
    u = urlparse(url)
    if u.scheme == "file":
        if u.netloc not in ("", "localhost"):
            raise InvalidInput(f"{url!r} names host {u.netloc!r}: a file:// URL here must be "
                               "local (file:///path)")
        try:  # as Path.as_uri() quoted it; %XX that is not UTF-8 names no file lwfm records
            path = unquote_to_bytes(u.path).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{url!r} names a file whose name is not UTF-8 text, which "
                               "lwfm refuses (it records paths as UTF-8)") from None
        check_path(path)
        return Path(path).resolve()
    if u.scheme == "":
        return Path(url).expanduser().resolve()
    raise InvalidInput(f"{url!r} is not a local path or file:// URL")
