"""The globus site, offline: the Globus cloud cannot be reached from here, so every test
runs against globus-sdk's testing fakes (``globus_sdk.testing`` with ``responses``, see
tests/_globus_fake.py) with sockets blocked (pytest-socket). Real everything else: the
store, the graph, the CLI, bundles and files on disk."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lwfm import AuthError, ChecksumMismatch, Manager, NotSupported, SiteError, State
from lwfm.cli import cli
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


def login(home: Path, site: str = "archive", code: str = "good-code") -> Any:
    return CliRunner().invoke(cli, ["--home", str(home), "login", site, "--force"],
                              input=code + "\n")


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
