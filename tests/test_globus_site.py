"""The globus site, offline: the Globus cloud cannot be reached from here, so every test
runs against globus-sdk's testing fakes (``globus_sdk.testing`` with ``responses``, see
tests/_globus_fake.py) with sockets blocked (pytest-socket). Real everything else: the
store, the graph, the CLI, bundles and files on disk."""

from __future__ import annotations

import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from click.testing import CliRunner

from lwfm import AuthError, ChecksumMismatch, Manager, NotSupported, SiteError, State
from lwfm.cli import main
from lwfm.files import sha256_file
from tests._globus_fake import FakeGlobus, fake_globus  # noqa: F401 - the fixture

pytestmark = pytest.mark.globus


def configure(home: Path, g: FakeGlobus, **extra: Any) -> None:
    lines = ["[sites.archive]", 'driver = "globus"', f'collection = "{g.archive}"',
             'base_path = "/store/"', f'local_collection = "{g.local}"',
             f'client_id = "{g.client_id}"', "poll_interval = 0.01", "max_backoff_s = 0.01"]
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
    lines += ["", "[sites.other]", 'driver = "globus"', f'collection = "{g.other}"',
              f'client_id = "{g.client_id}"', "poll_interval = 0.01", "max_backoff_s = 0.01"]
    (home / "lwfm.toml").write_text("\n".join(lines) + "\n")


@dataclass
class Ran:
    exit_code: int
    output: str   # stdout and stderr


def lwfm_cli(home: Path, *args: str, input: str = "") -> Ran:
    """`lwfm ARGS` in this process (so the offline fakes answer it), as main() runs it."""
    runner = CliRunner()
    code = 0
    with runner.isolation(input=input) as (out, err, *_), \
            patch.object(sys, "argv", ["lwfm", "--home", str(home), *args]):
        try:
            main()
        except SystemExit as e:
            code = int(e.code or 0)
        text = out.getvalue().decode() + err.getvalue().decode()
    return Ran(code, text)


def login(home: Path, site: str = "archive", code: str = "good-code", *more: str) -> Ran:
    return lwfm_cli(home, "login", site, "--force", *more, input=code + "\n")


@pytest.fixture
def archive(home: Path, fake_globus: FakeGlobus) -> FakeGlobus:
    """A configured, logged-in globus site 'archive' (offline fake)."""
    configure(home, fake_globus)
    r = login(home)
    assert r.exit_code == 0, r.output
    return fake_globus


def test_put_then_get_with_checksums(home: Path, archive: FakeGlobus, tmp_path: Path) -> None:
    """Offline against the fakes: a put and a get are Globus transfer jobs, checksummed."""
    src = tmp_path / "out.dat"
    src.write_bytes(b"result bytes\n" * 100)
    with Manager() as m:
        d = m.put(src, "run1/out.dat", site="archive", metadata={"kind": "result"})
        assert d.url == f"globus://{archive.archive}/store/run1/out.dat"
        assert d.sha256 == sha256_file(src)
        assert archive.path(archive.archive, "/store/run1/out.dat").read_bytes() == src.read_bytes()
        item = archive.task().items[0]
        assert item["external_checksum"] == d.sha256 and item["checksum_algorithm"] == "SHA256"
        job = m.status(d.job_id)
        assert job.state is State.COMPLETE and job.context.native_id == archive.task().id
        back = tmp_path / "back.dat"
        g = m.get("run1/out.dat", back, site="archive")
        assert back.read_bytes() == src.read_bytes() and g.sha256 == d.sha256


# -- auth: login, token storage, refresh; no token anywhere but globus-sdk's file ----------

def _files_under(root: Path, skip: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p != skip]


def test_tokens_live_only_in_globus_sdks_storage_file(home: Path, archive: FakeGlobus,
                                                      tmp_path: Path) -> None:
    """Offline against the fakes: after login, transfers, a log line, the graph and an
    exported bundle, the token strings are in globus-sdk's token file (mode 0600) and in no
    other file of the home (store, WAL, graph, logs), nor in the bundle."""
    from lwfm.sites._globus_auth import token_file
    tokens = token_file(home)
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.parent.stat().st_mode) == 0o700
    text = tokens.read_text()
    assert archive.issued and all(t in text for t in archive.issued)   # access + refresh
    src = tmp_path / "a.dat"
    src.write_text("payload\n")
    with Manager() as m:
        wf = m.create_workflow("secrets")
        job = m.submit(__import__("lwfm").JobDefn(entry=["true"]), workflow_id=wf.id)
        m.wait(job.id)
        m.put(src, "a.dat", site="archive", job_id=job.id)
        m.get("a.dat", tmp_path / "b.dat", site="archive", job_id=job.id)
        m.record_log("transfers done", job_id=job.id)
        m.graph.query("SELECT ?s WHERE { ?s ?p ?o } LIMIT 1")
    bundle = tmp_path / "thread.zip"
    r = lwfm_cli(home, "export", "--all", "--with-data", "-o", str(bundle), "--quiet")
    assert r.exit_code == 0, r.output
    import zipfile
    with zipfile.ZipFile(bundle) as z:
        blobs = [z.read(n) for n in z.namelist()]
    blobs += [p.read_bytes() for p in _files_under(home, tokens)]
    assert len(blobs) > 5 and any(b"lwfm.db" in str(p).encode() for p in _files_under(home, tokens))
    for secret in archive.issued:
        assert not any(secret.encode() in b for b in blobs), "a token leaked out of its storage"


def test_is_current_refreshes_an_expired_token(home: Path, archive: FakeGlobus) -> None:
    """Offline against the fakes: an expired access token is refreshed with the refresh
    token and stored back; a refused refresh makes is_current False."""
    with Manager() as m:
        auth = m.site("archive").auth
        data = auth.storage.get_token_data("transfer.api.globus.org")
        old = data.access_token
        data.expires_at_seconds = 1  # long expired
        auth.storage.store_token_data_by_resource_server({data.resource_server: data})
        assert auth.is_current() and archive.refreshes == 1
        now = auth.storage.get_token_data("transfer.api.globus.org")
        assert now.access_token != old and now.expires_at_seconds > 10**9
        archive.issued.remove(now.refresh_token)        # Globus revoked it
        now.expires_at_seconds = 1
        auth.storage.store_token_data_by_resource_server({now.resource_server: now})
        assert not auth.is_current()


def test_login_with_a_bad_code_says_what_to_do(home: Path, fake_globus: FakeGlobus) -> None:
    """Offline against the fakes: a refused code exits 1 and names the command to retry."""
    configure(home, fake_globus)
    r = login(home, code="wrong")
    assert r.exit_code == 1 and "lwfm login archive --force" in r.output
    with Manager() as m:
        assert not m.site("archive").auth.is_current()
        with pytest.raises(AuthError, match="not logged in.*lwfm login archive"):
            m.put(__file__, "x.py", site="archive")


# -- a Repo-only site ----------------------------------------------------------------------

def test_repo_only_site_refuses_jobs_and_spin(home: Path, fake_globus: FakeGlobus) -> None:
    """Offline against the fakes: `lwfm sites` shows auth and repo only; a job or Spin on
    the site is refused clearly, before anything is recorded."""
    import json

    from lwfm import JobDefn
    configure(home, fake_globus)
    r = lwfm_cli(home, "sites", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["pillars"]["archive"] == ["auth", "repo"]
    assert "globus" in json.loads(r.output)["drivers"]
    r = lwfm_cli(home, "run", "--site", "archive", "--", "true")
    assert r.exit_code == 1 and "has no Run pillar" in r.output and "Globus Compute" in r.output
    with Manager() as m:
        with pytest.raises(NotSupported, match="no Run pillar"):
            m.submit(JobDefn(entry=["true"], site="archive"))
        with pytest.raises(NotSupported, match="no Spin pillar"):
            m.site("archive").spin.compute_types()
        assert m.store.find_jobs() == []
