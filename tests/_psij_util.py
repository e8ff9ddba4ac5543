"""Helpers for the psij-site tests: a home with a psij site on the test Slurm."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from lwfm.model import JobStatus

SITE_TOML = """
[sites.hpc]
driver = "psij"
executor = "slurm"
polling_interval = 0.5
"""


def write_config(home: Path, extra: str = "") -> None:
    (home / "lwfm.toml").write_text(SITE_TOML + extra)


@pytest.fixture
def hpc(home: Path, slurm) -> Path:
    """A home whose site ``hpc`` is the psij driver on the test Slurm (its queue empty)."""
    slurm.idle()
    write_config(home)
    return home


def wait_for(pred, timeout: float = 60.0, what: str = "condition", step: float = 0.2):
    """Poll ``pred`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def in_queue(native_id: str) -> bool:
    """Whether Slurm still lists the job (in any state)."""
    res = subprocess.run(["squeue", "-h", "-t", "all", "-j", native_id, "-o", "%i"],
                         capture_output=True, text=True)
    return res.returncode == 0 and native_id in res.stdout.split()


def slurm_state(native_id: str) -> str:
    res = subprocess.run(["squeue", "-h", "-t", "all", "-j", native_id, "-o", "%T"],
                         capture_output=True, text=True)
    return res.stdout.strip()


def no_repeats(history: list[JobStatus]) -> bool:
    """No report (state and info) made twice by the site (the first PENDING is lwfm's own
    record of the submit; the next carries the scheduler's job id, later ones its reason)."""
    seen = [(h.state, h.info) for h in history[1:]]
    return len(seen) == len(set(seen))
