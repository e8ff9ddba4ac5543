"""The job: runs inside the ``old-six`` venv, where six is pinned to 1.15.0."""

from __future__ import annotations

import sys

import six


def report() -> dict:
    """Return (printed as JSON by the runner) which six and which interpreter it saw."""
    return {"six": six.__version__, "prefix": sys.prefix}
