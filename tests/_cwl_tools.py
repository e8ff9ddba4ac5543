"""cwltool and runcrate, each in a venv of its own, built once per cache directory.

runcrate 0.6.2 needs cwl-utils < 0.38, current cwltool needs cwl-utils >= 0.44: one
environment cannot hold both. The venvs live under ``LWFM_TEST_CACHE`` (default
``~/.cache/lwfm-tests``), keyed by the pinned requirements and the Python version, so a
new pin builds a new venv and an old one is reused as is.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

CWLTOOL = ("cwltool==3.3.20260925135507",)
RUNCRATE = ("runcrate==0.6.2",)   # it pins cwl-utils==0.40 (cwltool 3.3 needs >= 0.44)


def cache_dir() -> Path:
    return Path(os.environ.get("LWFM_TEST_CACHE") or Path.home() / ".cache" / "lwfm-tests")


def venv(name: str, reqs: tuple[str, ...]) -> Path:
    """The bin directory of a venv with ``reqs`` installed (built on first use)."""
    key = hashlib.sha256("\n".join((sys.version, *reqs)).encode()).hexdigest()[:12]
    root = cache_dir() / f"{name}-{key}"
    done = root / ".lwfm-built"
    if done.exists():
        return root / "bin"
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f"{name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # two test processes: one builds, one waits
        if not done.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
            subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q",
                            "--disable-pip-version-check", *reqs], check=True, timeout=1500)
            done.write_text("\n".join(reqs) + "\n")
    return root / "bin"


if __name__ == "__main__":
    print(venv("cwltool", CWLTOOL), venv("runcrate", RUNCRATE))
