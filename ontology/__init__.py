"""lwfm's ontology, JSON-LD contexts and SHACL shapes, shipped as package data.

``contexts.json`` lists the remote @context documents lwfm knows (RO-Crate 1.1, 1.2,
1.3 and the Workflow Run terms), each shipped byte for byte as published, with where
the copy came from and its sha256. :func:`context_document` is the only way lwfm
resolves a context URL: from these files, never from the network.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

DIR = Path(__file__).parent


def path(name: str) -> Path:
    """The installed path of one ontology file (e.g. ``lwfm.ttl``)."""
    return DIR / name


def _variants(url: str) -> list[str]:
    """The spellings of one context URL that mean it: http or https, a trailing slash."""
    bare = url.split("://", 1)[1]
    return [f"{s}://{bare}{t}" for s in ("https", "http") for t in ("", "/")]


@lru_cache(maxsize=1)
def context_files() -> dict[str, str]:
    """Context URL (every accepted spelling) -> the file that holds its document."""
    out: dict[str, str] = {}
    for c in json.loads(path("contexts.json").read_text())["contexts"]:
        for url in c["urls"]:
            for v in _variants(url):
                out[v] = c["file"]
    return out


@lru_cache(maxsize=None)
def context_document(url: str) -> dict[str, Any]:
    """The published context document for ``url`` (KeyError if lwfm does not ship it)."""
    return json.loads(path(context_files()[url]).read_text(encoding="utf-8"))
