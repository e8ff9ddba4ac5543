"""``lwfm serve --http``: a live status panel and a navigable digital thread in the
browser (Starlette + uvicorn, vendored htmx and cytoscape.js, no build step, no CDN).

Needs the ``web`` extra: ``pip install 'lwfm[web]'``.
"""

from __future__ import annotations

from .security import parse_bind
from .server import WebPanel

__all__ = ["WebPanel", "parse_bind"]
