"""Finding the local site's keeper processes, for tests that kill or count them."""

from __future__ import annotations

import os
from pathlib import Path


def keepers(home: Path) -> list[int]:
    """Pids of the local site's keeper processes for ``home`` (their last argument)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"_keeper.py") for a in argv) and os.fsencode(home) in argv:
            found.append(int(pid))
    return found
