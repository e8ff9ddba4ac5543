"""Fixtures for the ibm_quantum tests: they run OFFLINE, in qiskit-ibm-runtime's local
mode on its fake backends (FakeManilaV2, ...) with qiskit-aer; IBM's cloud cannot be
reached here, so no test talks to a real backend.

The two sandboxes (a venv pinned to the qiskit 1.x line, one pinned to the host's 2.x
versions) are built once per cache directory and reused by later sessions: building the
1.x one downloads about 200 MB. ``LWFM_TEST_CACHE`` moves the cache (default
``~/.cache/lwfm-tests``); the venv site's marker rebuilds a stale venv.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

GHZ3 = ('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[3];\ncreg c[3];\nh q[0];\n'
        'cx q[0],q[1];\ncx q[1],q[2];\nmeasure q -> c;\n')
#: the older line: qiskit 1.x with the qiskit-ibm-runtime and Aer of its time
QISKIT1 = ["qiskit==1.2.4", "qiskit-ibm-runtime==0.29.0", "qiskit-aer==0.15.1"]


def qiskit2_pins() -> list[str]:
    """The host's own qiskit 2.x line, pinned (the venv sees the host's packages)."""
    return [f"{d}=={version(d)}" for d in ("qiskit", "qiskit-ibm-runtime", "qiskit-aer")]


def cache_dir() -> Path:
    return Path(os.environ.get("LWFM_TEST_CACHE") or Path.home() / ".cache" / "lwfm-tests")


@pytest.fixture(scope="session")
def quantum_venvs() -> dict[str, dict]:
    """Site config for the two sandboxes, built (once per cache) before the tests use them."""
    from lwfm.sites import _venv_build as build
    root = cache_dir() / "quantum-venvs"
    sites = {
        "qiskit1": {"requirements": QISKIT1, "venv_dir": str(root / "qiskit1"),
                    "system_site_packages": False},
        "qiskit2": {"requirements": qiskit2_pins(), "venv_dir": str(root / "qiskit2"),
                    "system_site_packages": True},
    }
    for name, cfg in sites.items():
        build.ensure_venv(Path(cfg["venv_dir"]), cfg["requirements"], sys.executable,
                          site=name, timeout=1500,
                          system_site_packages=cfg["system_site_packages"])
    return sites


def toml_site(name: str, backend: str, **cfg: object) -> str:
    """One [sites.NAME] table of an ibm_quantum site (values as TOML)."""
    import json
    lines = [f"[sites.{name}]", 'driver = "ibm_quantum"', f'backend = "{backend}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in cfg.items()]
    return "\n".join(lines) + "\n"
