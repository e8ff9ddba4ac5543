"""pytest plugin: a real, throwaway PostgreSQL server for the store tests.

Why a real server: the store's multi-process guarantees (row locks, sequences,
transaction isolation) are only worth something if tested against the engine users
run. The server comes from Debian's ``postgresql`` package (``.ci/run`` installs it),
lives in a temporary directory, listens on 127.0.0.1 on a free port (plus a unix
socket in that directory) and is stopped at the end of the session.

PostgreSQL refuses to run as root, so under root the server runs as the ``postgres``
system user the package creates. Missing binaries fail the tests under ``CI=true``
(CI must never silently skip them) and skip them elsewhere, with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_USER = "postgres"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL bin dir (or ``$LWFM_PG_BINDIR``) that has initdb."""
    env = os.environ.get("LWFM_PG_BINDIR")
    if env:
        return Path(env) if (Path(env) / "initdb").exists() else None
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    def version(p: str) -> float:
        try:
            return float(Path(p).parent.parent.name)
        except ValueError:
            return 0.0
    return Path(max(found, key=version)).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str) -> None:
    msg = f"PostgreSQL tests need a server: {reason}. Run `bash .ci/run` (it installs postgresql)."
    if in_ci():
        pytest.fail(msg + " (CI=true: not skipping)", pytrace=False)
    pytest.skip(msg)


@dataclass
class PgServer:
    """A running throwaway cluster; ``database()`` hands out fresh databases."""

    bindir: Path
    root: Path
    port: int
    user: str
    as_user: list[str] = field(default_factory=list)   # runuser prefix when we are root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL over TCP (works from any process, any user)."""
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def run(self, prog: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, str(self.bindir / prog), *args], check=check,
                              capture_output=True, text=True, timeout=120)

    def admin(self, sql: str) -> None:
        import psycopg
        with psycopg.connect(host="127.0.0.1", port=self.port, user=self.user,
                             dbname="postgres", autocommit=True) as c:
            c.execute(sql)

    def database(self, prefix: str = "t") -> str:
        """Create a fresh empty database and return its SQLAlchemy URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log(self) -> str:
        p = self.root / "server.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False)


def start_server() -> PgServer:
    """initdb + pg_ctl start in a fresh temp dir; raises RuntimeError with the log on failure."""
    bindir = find_bindir()
    if bindir is None:
        where = os.environ.get("LWFM_PG_BINDIR") or "/usr/lib/postgresql/*/bin"
        raise FileNotFoundError(f"no initdb in {where}")
    as_user: list[str] = []
    pw = None
    user = pwd.getpwuid(os.getuid()).pw_name
    # Not under pytest's basetemp: that is mode 0700 and owned by root.
    root = Path(tempfile.mkdtemp(prefix="lwfm-pg-"))
    if os.getuid() == 0:
        try:
            pw = pwd.getpwnam(PG_USER)
        except KeyError:
            shutil.rmtree(root)
            raise FileNotFoundError(f"running as root but there is no {PG_USER!r} system user") from None
        runuser = shutil.which("runuser") or shutil.which("setpriv")
        if runuser is None:
            shutil.rmtree(root)
            raise FileNotFoundError("running as root but neither runuser nor setpriv exists")
        as_user = ([runuser, "-u", PG_USER, "--"] if runuser.endswith("runuser") else
                   [runuser, f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups"])
        os.chown(root, pw.pw_uid, pw.pw_gid)
        user = PG_USER
    root.chmod(0o755)
    srv = PgServer(bindir=bindir, root=root, port=0, user=user, as_user=as_user)
    init = srv.run("initdb", "-D", str(srv.data_dir), "-U", user, "-A", "trust", "-E", "UTF8",
                   "--locale=C", "--no-sync", check=False)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    srv.socket_dir.mkdir()
    if as_user:
        os.chown(srv.socket_dir, pw.pw_uid, pw.pw_gid)
    last = ""
    for _ in range(5):  # the free port may be taken between probe and bind: retry
        srv.port = _free_port()
        opts = (f"-c listen_addresses=127.0.0.1 -p {srv.port} -k {srv.socket_dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=300 -c shared_buffers=32MB")
        r = srv.run("pg_ctl", "-D", str(srv.data_dir), "-l", str(root / "server.log"),
                    "-o", opts, "-w", "-t", "60", "start", check=False)
        if r.returncode == 0:
            return srv
        last = f"{r.stdout}\n{r.stderr}\n{srv.log()}"
    shutil.rmtree(root, ignore_errors=True)
    raise RuntimeError(f"pg_ctl start failed:\n{last}")


@pytest.fixture(scope="session")
def pg_server():
    """The session's PostgreSQL server (started on first use, stopped at the end)."""
    try:
        srv = start_server()
    except FileNotFoundError as e:
        _unavailable(str(e))
    except RuntimeError as e:
        pytest.fail(f"could not start PostgreSQL: {e}", pytrace=False)
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(srv.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """SQLAlchemy URL (``postgresql+psycopg://``) of a database on the session server.

    Shared by the whole session: tests that need an empty store use ``store_url`` or
    ``pg_server.database()`` instead.
    """
    return pg_server.database("lwfm")


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ANN001
    """Tests that use the server carry the ``postgres`` marker, so ``-m 'not postgres'`` works."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "pg_url" in names or "pg_server" in names:
            item.add_marker(pytest.mark.postgres)
