"""Shared fixtures: an isolated lwfm home and a store URL for each SQL backend."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests._postgres", "tests._slurm", "tests._quantum"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh LWFM_HOME; job-context variables from an enclosing lwfm job are cleared."""
    h = tmp_path / "lwfm-home"
    h.mkdir()
    monkeypatch.setenv("LWFM_HOME", str(h))
    for var in ("LWFM_JOB_ID", "LWFM_WORKFLOW_ID", "LWFM_PARENT_ID", "LWFM_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    return h


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, home: Path):
    """A URL of an empty store: SQLite in the tmp home, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{home / 'lwfm.db'}"
        return
    server = request.getfixturevalue("pg_server")
    url = server.database("store")
    yield url
    server.drop(url)
