"""The globus site, offline: the Globus cloud cannot be reached from here, so every test
runs against globus-sdk's testing fakes (``globus_sdk.testing`` with ``responses``, see
tests/_globus_fake.py) with sockets blocked (pytest-socket). Real everything else: the
store, the graph, the CLI, bundles and files on disk. Transfers and their faults are in
tests/test_globus_transfers.py."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from lwfm import AuthError, Manager, NotSupported, State
from lwfm.files import sha256_file
from tests._globus_fake import FakeGlobus, fake_globus  # noqa: F401 - the fixture
from tests._globus_helpers import archive, configure, login, lwfm_cli  # noqa: F401 - fixture

pytestmark = pytest.mark.globus

@pytest.mark.filterwarnings("ignore:A test tried to use socket:UserWarning")  # on purpose
def test_put_then_get_with_checksums(home: Path, archive: FakeGlobus, tmp_path: Path) -> None:
    """Offline against the fakes: a put and a get are Globus transfer jobs, checksummed."""
    import socket

    from pytest_socket import SocketBlockedError
    with pytest.raises(SocketBlockedError):   # the network is really closed meanwhile
        socket.create_connection(("transfer.api.globus.org", 443), timeout=1)
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
        hist = m.history(d.job_id)   # the job's states follow the task's
        assert [s.state for s in hist] == [State.PENDING, State.RUNNING, State.COMPLETE]
        assert hist[1].native_state == "ACTIVE" and hist[2].native_state == "SUCCEEDED"
        assert job.defn.site == "archive" and job.defn.name == "globus put out.dat"
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
        literals = m.graph.select_values("SELECT ?o WHERE { ?s ?p ?o FILTER(isLiteral(?o)) }")
        assert len(literals) > 50   # the graph's files may be compressed: ask it too
        assert not [o for (o,) in literals for t in archive.issued if t in o]
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
        r = lwfm_cli(home, "login", "archive")   # current: no prompt, no new login
        assert r.exit_code == 0 and r.output == "archive: logged in\n"
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
        assert m.store.find_jobs() == [] and m.find() == []   # nothing recorded


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


# -- consent, cancel, find ------------------------------------------------------------------

def test_consent_required_names_the_login_command(home: Path, archive: FakeGlobus,
                                                  tmp_path: Path) -> None:
    """Offline against the fakes: a ConsentRequired (data_access) answer tells the exact
    command; running it asks Globus for those scopes and the put then works."""
    src = tmp_path / "a.dat"
    src.write_text("x\n")
    transfer = "urn:globus:auth:scope:transfer.api.globus.org:all"
    own = f"{transfer}[https://auth.globus.org/scopes/{archive.archive}/data_access]"
    archive.consent_required = [own]      # configured, but consent was withdrawn
    with Manager() as m:
        with pytest.raises(AuthError) as e:
            m.put(src, "a.dat", site="archive")
    assert str(e.value).endswith("log in again with: lwfm login archive --force")
    scope = f"{transfer}[https://auth.globus.org/scopes/{archive.other}/data_access]"
    archive.consent_required = [scope]    # a collection the configuration does not name
    with Manager() as m:
        with pytest.raises(AuthError) as e:
            m.put(src, "a.dat", site="archive")
        assert all(j.state is State.FAILED for j in m.store.find_jobs())
    msg = str(e.value)
    command = f"lwfm login archive --force --scope '{scope}'"
    assert "consent" in msg and msg.endswith(command)
    archive.consent_required = []
    r = login(home, "archive", "good-code", "--scope", scope)
    assert r.exit_code == 0 and "logged in" in r.output
    from urllib.parse import quote
    assert quote(scope, safe="") in r.output   # the authorize URL asks for it
    with Manager() as m:
        assert m.put(src, "a.dat", site="archive").sha256 == sha256_file(src)


def test_cancel_cancels_the_globus_task(home: Path, archive: FakeGlobus, tmp_path: Path) -> None:
    """Offline against the fakes: `lwfm cancel` of a running transfer job (from another
    Manager) cancels its Globus task; the put ends with the cancel, the job CANCELLED."""
    import threading
    import time
    src = tmp_path / "a.dat"
    src.write_text("x\n")
    archive.scenario = {"active_polls": 10**9}
    errors: list[BaseException] = []

    def put() -> None:
        with Manager() as m:
            try:
                m.put(src, "a.dat", site="archive")
            except BaseException as e:   # the test asserts what it was
                errors.append(e)
    th = threading.Thread(target=put)
    th.start()
    with Manager() as other:
        deadline = time.monotonic() + 20
        while not (jobs := [j for j in other.store.find_jobs() if j.context.native_id]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert other.status(jobs[0].id).state is State.RUNNING
        r = lwfm_cli(home, "cancel", jobs[0].id)
        assert r.exit_code == 0, r.output
        th.join(20)
        assert not th.is_alive()
        assert other.status(jobs[0].id).state is State.CANCELLED
    assert archive.task().fatal_error["code"] == "CANCELED"
    assert len(errors) == 1 and "cancelled" in str(errors[0])


def test_find_lists_the_collection_and_matches_metadata(home: Path, archive: FakeGlobus,
                                                        tmp_path: Path) -> None:
    """Offline against the fakes: the site's find lists a path (operation_ls) as a glob;
    lwfm's own find matches the archived copies' metadata like on any site."""
    with Manager() as m:
        for name, kind in (("a.dat", "raw"), ("b.dat", "result"), ("c.txt", "result")):
            p = tmp_path / name
            p.write_text(name)
            m.put(p, f"run1/{name}", site="archive", metadata={"kind": kind})
        base = f"globus://{archive.archive}/store/run1"
        assert m.site("archive").repo.find("run1/*.dat") == [f"{base}/a.dat", f"{base}/b.dat"]
        assert m.site("archive").repo.find("nowhere/*") == []
        found = m.find({"kind": "res*"})
        assert sorted(d.url for d in found) == [f"{base}/b.dat", f"{base}/c.txt"]
        assert all(d.site == "archive" and d.metadata["globus_verified"] for d in found)
    r = lwfm_cli(home, "find", "kind=raw", "--json")
    assert r.exit_code == 0 and f"{base}/a.dat" in r.output


def test_cli_put_get_status_log_and_bad_input(home: Path, archive: FakeGlobus,
                                              tmp_path: Path) -> None:
    """Offline against the fakes: `lwfm put/get --site archive`, then `status` and `log` of
    the transfer job; bad input is refused before anything is recorded."""
    import json
    src = tmp_path / "a.dat"
    src.write_text("cli\n")
    r = lwfm_cli(home, "put", str(src), "cli/a.dat", "--site", "archive", "--meta", "kind=x",
                 "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["url"] == f"globus://{archive.archive}/store/cli/a.dat" and d["sha256"]
    r = lwfm_cli(home, "status", d["job_id"], "--json")
    assert r.exit_code == 0 and json.loads(r.output)["state"] == "COMPLETE", r.output
    r = lwfm_cli(home, "log", d["job_id"])
    assert r.exit_code == 0 and "SUCCEEDED" in r.output
    r = lwfm_cli(home, "get", "cli/a.dat", str(tmp_path / "b.dat"), "--site", "archive")
    assert r.exit_code == 0 and (tmp_path / "b.dat").read_text() == "cli\n"
    with Manager() as m:
        before = (len(m.store.find_jobs()), len(m.find()))
    for args, why in ((("put", str(src), "https://x/y", "--site", "archive"), "cannot address"),
                      (("get", f"globus://{archive.other}/a", str(tmp_path / "c"), "--site",
                        "archive"), "is not on site 'archive'"),
                      (("get", "globus://not-a-uuid/a", str(tmp_path / "c"), "--site",
                        "archive"), "collection id"),
                      (("put", str(src), "a.dat", "--site", "archive", "--meta", "k\x00=v"), "")):
        r = lwfm_cli(home, *args)
        assert r.exit_code != 0 and why in r.output, (args, r.output)
    with Manager() as m:
        assert (len(m.store.find_jobs()), len(m.find())) == before


def test_bad_configuration_is_a_clear_error(home: Path, fake_globus: FakeGlobus) -> None:
    """Offline against the fakes: a malformed [sites.X] table names the key to fix."""
    from lwfm import ConfigError
    for extra, why in (({"collection": "nope"}, "collection must be a UUID"),
                       ({"on_fault": "ignore"}, "on_fault must be"),
                       ({"base_path": "relative"}, "base_path must be an absolute")):
        (home / "lwfm.toml").write_text(
            "[sites.bad]\ndriver = \"globus\"\n" + "".join(
                f"{k} = \"{v}\"\n" for k, v in {"collection": fake_globus.archive, **extra}.items()))
        with Manager() as m:
            with pytest.raises(ConfigError, match=why):
                m.site("bad")



def test_site_jobs_is_run_or_the_repos_transfers() -> None:
    """The seam, no network involved: Site.jobs is the Run pillar when there is one, a
    Repo-only site's transfers when its Repo has them, else 'no Run pillar'."""
    from lwfm.site import Repo, Site, SiteHost

    class Shelf(Repo):
        def put(self, local_path, dest, ctx):  # type: ignore[no-untyped-def]
            raise NotImplementedError

        def get(self, source, local_path, ctx):  # type: ignore[no-untyped-def]
            raise NotImplementedError

    class Plain(Site):
        def __init__(self, host: SiteHost):
            super().__init__(host)
            self.repo = Shelf()
    site = Plain(SiteHost(name="shelf", home=Path("/nonexistent")))
    assert site.pillars() == ("repo",)
    with pytest.raises(NotSupported, match="site 'shelf' has no Run pillar"):
        site.jobs.status


@pytest.mark.parametrize("cmd", ["login", "transfer"])
def test_new_commands_have_help(home: Path, cmd: str) -> None:
    """A real `lwfm CMD --help` process (no Globus call at all)."""
    import os
    import subprocess
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", cmd, "--help"], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "LWFM_HOME": str(home)})
    assert r.returncode == 0 and "Usage:" in r.stdout
    assert ("SITE" if cmd == "login" else "--site") in r.stdout
