"""Seed rocrate-validator's HTTP cache so it validates offline.

The validator resolves the RO-Crate JSON-LD context over HTTP through a
requests-cache SQLite file; ``--offline`` serves only from that cache. The tests
never touch the network, so they store the published context documents lwfm ships
(``ontology/contexts.json``: RO-Crate 1.1, 1.2, 1.3, Workflow Run terms) under their
URLs, in a cache file of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CONTEXT_URLS = [f"https://w3id.org/ro/crate/{v}/context" for v in ("1.1", "1.2", "1.3")] + [
    "https://w3id.org/ro/terms/workflow-run"]


def seed_cache(cache_path: Path) -> Path:
    """Write the RO-Crate contexts into a requests-cache SQLite at ``cache_path``."""
    import requests
    from lwfm.ontology import context_files, path
    from requests_cache import CachedSession
    from urllib3 import HTTPResponse

    session = CachedSession(cache_name=str(cache_path), backend="sqlite", expire_after=-1)
    for url in CONTEXT_URLS:
        body = path(context_files()[url]).read_bytes()
        resp = requests.Response()
        resp.status_code = 200
        resp.url = url
        resp.encoding = "utf-8"
        resp.headers["Content-Type"] = "application/ld+json"
        resp._content = body
        raw = HTTPResponse(body=b"", status=200, headers=dict(resp.headers), preload_content=False)
        raw.request_url = url  # type: ignore[attr-defined]
        resp.raw = raw
        resp.request = requests.Request("GET", url).prepare()
        session.cache.save_response(resp)
    session.close()
    return cache_path


def validate(crate: Path, profile: str, cache_path: Path) -> dict:
    """Run rocrate-validator offline at REQUIRED severity; returns its JSON report."""
    proc = subprocess.run(
        [sys.executable, "-c", "from rocrate_validator.cli import cli; cli()", "validate", "--offline",
         "--skip-availability-check", "--cache-path", str(cache_path), "-p", profile,
         "-l", "REQUIRED", "-f", "json", "--no-paging", str(crate)],
        capture_output=True, text=True, timeout=300)
    try:
        start = proc.stdout.index("{")
        return json.loads(proc.stdout[start:])
    except ValueError:
        raise AssertionError(f"validator gave no JSON (rc={proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") from None
