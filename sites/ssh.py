"""The ``ssh`` site: run jobs and move data on a remote lab reached only over SSH.

Configured by a ``[sites.NAME]`` table in ``lwfm.toml``::

    [sites.lab]
    driver = "ssh"
    host = "login.lab.example"
    port = 22
    user = "me"
    key_file = "~/.ssh/id_ed25519"        # optional; else the SSH agent / default keys
    known_hosts = "~/.ssh/known_hosts"    # the host key must be listed here ...
    trust_new_host_key = false            # ... unless you opt in to trusting a new one
    passphrase_env = "LWFM_SSH_PASSPHRASE"  # env var holding the key's passphrase, if any
    remote_home = "/home/me/.lwfm"        # the lab's own lwfm home (jobs record there)
    workdir = "/scratch/me"               # default cwd and base for relative paths
    lwfm_command = "lwfm"                 # how to run the lab's lwfm CLI
    python_command = "python3"            # for "module:function" jobs
    compute_types = ["cpu", "gpu"]         # what JobDefn.compute_type may name
    reconnect_timeout = 60                # s a call retries a dropped connection
    poll_reconnect_timeout = 5            # s a status poll retries (then: INFO)
    record_end_at_lab = true              # the lab's lwfm records how adopted jobs ended

Jobs run detached (own session and process group, stdio to files) under a small
wrapper that writes the exit code atomically, so they outlive the SSH connection and
the driver can pick up their state after any reconnect. ``JobDefn.resources`` may set
``cpu_seconds``, ``memory_mb`` and ``open_files`` (the job's ``ulimit``); any other key
is refused at submit. The remote job sees the
SAME job id as the local record (``LWFM_JOB_ID``) and the lab's lwfm home, so what it
records there joins the local thread after ``lwfm pull``.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import uuid
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlparse

from lwfm.errors import AuthError, ChecksumMismatch, ConfigError, NotFound, SiteError
from lwfm.files import sha256_file
from lwfm.model import DataObject, Direction, EntryKind, JobContext, JobDefn, JobStatus, State
from lwfm.site import PROCESS_LIMITS, Auth, FetchedThread, Repo, Run, Site, SiteHost, StaticSpin
from lwfm.sites.local import exit_status, job_argv

from ._ssh_conn import Connection, SshConfig
from ._ssh_scripts import CANCEL, LAUNCH, STATUS, WRAPPER, limits_function

if TYPE_CHECKING:
    from ._ssh_deploy import DeployReport

q = shlex.quote
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

def _remote_path(cfg: dict[str, Any], key: str) -> str | None:
    v = cfg.get(key)
    return None if v in (None, "") else str(v)


class SSHAuth(Auth):
    """Key or agent login; the connection itself is the credential."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def login(self, force: bool = False) -> None:
        if force:
            self.conn.close()
        self.conn.client()

    def is_current(self) -> bool:
        return self.conn.alive()


class SSHRun(Run):
    poll_interval = 0.5
    detach = True                            # jobs run under the lab's wrapper, always
    resource_keys = frozenset(PROCESS_LIMITS)

    def __init__(self, site: "SSHSite"):
        self.site = site
        self.conn = site.conn

    def job_dir(self, job_id: str) -> str:
        if not _JOB_ID.fullmatch(job_id):
            raise SiteError(f"not an lwfm job id: {job_id!r}")
        return f"{self.site.base}/jobs/{job_id}"

    def _argv(self, defn: JobDefn) -> list[str]:
        """The local site's argv for ``defn``, with the lab's python for python jobs."""
        argv = job_argv(defn, self.site.name)
        if defn.kind is EntryKind.PYTHON:   # [sys.executable, "-m", "lwfm._pycall", ...]
            argv = [*self.site.python_argv(), *argv[1:]]
        return argv

    def _env(self, defn: JobDefn, ctx: JobContext) -> dict[str, str]:
        """The site's configured env, then the job's own and its LWFM_* context; LWFM_HOME
        is the lab's home, or (none configured) only what the job itself sets."""
        env = self.site.host.job_env(defn, ctx, home=self.site.remote_home)
        if not self.site.remote_home:
            del env["LWFM_HOME"]            # this instance's home means nothing at the lab
            if "LWFM_HOME" in defn.env:
                env["LWFM_HOME"] = defn.env["LWFM_HOME"]
        return {**{k: str(v) for k, v in (self.site.cfg.get("env") or {}).items()},
                **{k: str(v) for k, v in env.items()}}

    def submit(self, defn: JobDefn, ctx: JobContext) -> JobStatus:
        self.site.check_request(defn)
        env = self._env(defn, ctx)
        for k in env:
            if not _ENV_NAME.fullmatch(k):
                raise SiteError(f"job environment: {k!r} is not a valid variable name")
        env_file = "".join(f"export {k}={q(str(v))}\n" for k, v in env.items())
        env_file += limits_function(defn.resources)
        if self.site.remote_home and self.site.cfg.get("record_end_at_lab", True):
            py = " ".join(q(a) for a in self.site.python_argv())
            env_file += (f"lwfm_finish() {{ timeout 120 {py} -m lwfm._pycall "
                         f"lwfm.sites._ssh_remote:finish \"$@\"; }}\n")
        cwd = defn.cwd or self.site.workdir
        script = LAUNCH.format(d=q(self.job_dir(ctx.job_id)), wrapper=q(WRAPPER), cwd=q(cwd),
                                argv=" ".join(q(a) for a in self._argv(defn)))
        out = self.conn.check(script, f"submitting job {ctx.job_id}", timeout=60,
                              stdin=env_file.encode())
        pid = out.strip().splitlines()[-1] if out.strip() else ""
        if not pid.isdigit():
            raise SiteError(f"site {self.site.name!r}: launch printed no pid ({out.strip()!r})")
        ctx.native_id = pid
        return JobStatus(ctx.job_id, State.RUNNING, native_state=f"pid {pid}",
                         info=f"{self.site.name}:{self.job_dir(ctx.job_id)}")

    def status(self, ctx: JobContext) -> JobStatus:
        """The job's state at the lab. While the lab is unreachable: INFO (never a raise,
        and not UNKNOWN, which a Manager may take for "outcome lost"), so the job stays
        RUNNING, the outage shows in its history, and tracking resumes after it."""
        d = self.job_dir(ctx.job_id)
        try:
            out = self.conn.check(STATUS.format(d=q(d)),
                                  f"status of job {ctx.job_id}",
                                  budget=self.conn.cfg.poll_reconnect_timeout).split()
        except (AuthError, ConfigError):
            raise
        except SiteError as e:
            return JobStatus(ctx.job_id, State.INFO, native_state="unreachable", info=str(e))
        word = out[0] if out else "missing"
        code = int(out[1]) if len(out) > 1 and out[1].lstrip("-").isdigit() else None
        if word == "cancelled":
            return JobStatus(ctx.job_id, State.CANCELLED, native_state="cancelled", exit_code=code)
        if word == "exit" and code is not None:
            return exit_status(ctx.job_id, code)
        if word in ("running", "starting"):
            return JobStatus(ctx.job_id, State.RUNNING, native_state=word)
        if word == "vanished":
            return JobStatus(ctx.job_id, State.FAILED, native_state="vanished",
                             info="the job's processes are gone and left no exit code "
                                  "(killed from outside, or the host rebooted)")
        return JobStatus(ctx.job_id, State.UNKNOWN, native_state=word,
                         info=f"no job directory {self.job_dir(ctx.job_id)} on {self.site.name}")

    def cancel(self, ctx: JobContext) -> bool:
        out = self.conn.check(CANCEL.format(d=q(self.job_dir(ctx.job_id)), ticks=50),
                              f"cancelling job {ctx.job_id}").strip()
        return out == "cancelled"

    def log(self, ctx: JobContext) -> str:
        d = self.job_dir(ctx.job_id)

        def read(sftp) -> str:
            parts = []
            for name in ("stdout", "stderr"):
                try:
                    with sftp.open(f"{d}/{name}", "rb") as f:
                        parts.append(f.read().decode(errors="replace"))
                except FileNotFoundError:
                    pass
            return "".join(parts)
        return self.conn.sftp_call(f"reading the log of job {ctx.job_id}", read)


class SSHRepo(Repo):
    """SFTP put/get: temp name, sha256 on both ends, then rename."""

    def __init__(self, site: "SSHSite"):
        self.site = site
        self.conn = site.conn
        # test hooks: called with the remote temp path after upload / local temp after download
        self.after_upload: Callable[[str], None] | None = None
        self.after_download: Callable[[Path], None] | None = None

    def url(self, path: str) -> str:
        c = self.site.conn.cfg
        return f"ssh://{c.host}{'' if c.port == 22 else f':{c.port}'}{path}"

    def path_of(self, target: str) -> str:
        """A remote absolute path from a path, ``ssh://host[:port]/path`` or a relative path."""
        u = urlparse(target)
        if u.scheme == "ssh":
            c = self.site.conn.cfg
            if u.hostname != c.host or (u.port or 22) != c.port:
                raise SiteError(f"{target!r} is not on site {self.site.name!r} ({c.host_label})")
            return u.path
        if u.scheme not in ("", "file"):
            raise SiteError(f"site {self.site.name!r} cannot address {target!r}")
        p = u.path if u.scheme else target
        return p if p.startswith("/") else f"{self.site.workdir}/{p}"

    def remote_sha256(self, path: str) -> str:
        rc, out, err = self.conn.execute(f"sha256sum -- {q(path)}")
        if rc != 0:
            kind = NotFound if "No such file" in err else SiteError
            raise kind(f"site {self.site.name!r}: cannot checksum {path}: {err.strip()[-300:]}")
        return out.split()[0]

    def put(self, local_path: Path, dest: str, ctx: JobContext | None) -> DataObject:
        src = Path(local_path)
        if not src.is_file():
            raise NotFound(f"no such file: {src}")
        path = self.path_of(dest)
        tmp = f"{path}.lwfm-tmp-{uuid.uuid4().hex[:12]}"
        want = sha256_file(src)
        self.conn.check(f"mkdir -p -- {q(str(PurePosixPath(path).parent))}", "creating a directory")

        def up(sftp) -> int:
            return sftp.put(str(src), tmp, confirm=True).st_size   # confirm: stat of the upload
        size = self.conn.sftp_call(f"uploading {src}", up)
        try:
            if self.after_upload:
                self.after_upload(tmp)
            got = self.remote_sha256(tmp)
            if got != want:
                raise ChecksumMismatch(f"upload of {src} to {self.site.name}:{path} is corrupt "
                                       f"(local sha256 {want}, remote {got}); nothing was stored")
            self.conn.sftp_call("renaming the upload", lambda s: s.posix_rename(tmp, path))
        except BaseException:
            self.conn.execute(f"rm -f -- {q(tmp)}")
            raise
        return DataObject(url=self.url(path), site=self.site.name, direction=Direction.PUT,
                          size=size, sha256=want, job_id=ctx.job_id if ctx else None,
                          workflow_id=ctx.workflow_id if ctx else None,
                          metadata={"copied_from": src.resolve().as_uri()})

    def get(self, source: str, local_path: Path, ctx: JobContext | None,
            expected_sha256: str | None = None) -> DataObject:
        """Fetch; ``metadata.copied_from`` names the original so the Manager can link the
        local copy to it (``derived_from``); put does the same the other way round."""
        path = self.path_of(source)
        dst = Path(local_path).resolve()
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.lwfm-tmp-{uuid.uuid4().hex[:12]}")
        remote = self.remote_sha256(path)
        if expected_sha256 and remote != expected_sha256:
            raise ChecksumMismatch(f"{self.site.name}:{path} has sha256 {remote}, expected "
                                   f"{expected_sha256}; not fetched")
        try:
            self.conn.sftp_call(f"downloading {path}", lambda s: s.get(path, str(tmp)))
            if self.after_download:
                self.after_download(tmp)
            got = sha256_file(tmp)
            if got != remote:
                raise ChecksumMismatch(f"download of {self.site.name}:{path} is corrupt (remote "
                                       f"sha256 {remote}, local {got}); {dst} left untouched")
            tmp.replace(dst)
        finally:
            tmp.unlink(missing_ok=True)
        return DataObject(url=dst.as_uri(), site="local", direction=Direction.GET,
                          size=dst.stat().st_size, sha256=remote,
                          job_id=ctx.job_id if ctx else None,
                          workflow_id=ctx.workflow_id if ctx else None,
                          metadata={"copied_from": self.url(path)})

    def find(self, pattern: str) -> list[str]:
        path = PurePosixPath(self.path_of(pattern))
        parent, name = str(path.parent), path.name

        def ls(sftp) -> list[str]:
            try:
                names = sftp.listdir(parent)
            except FileNotFoundError:
                return []
            return sorted(self.url(f"{parent}/{n}") for n in names if fnmatch.fnmatch(n, name))
        return self.conn.sftp_call(f"listing {parent}", ls)


class SSHSite(Site):
    """A remote host over SSH (see the module docstring for its configuration)."""

    def __init__(self, host: SiteHost):
        super().__init__(host)
        self.cfg = dict(host.config)
        self.conn = Connection(SshConfig.from_table(host.name, self.cfg))
        self.remote_home = _remote_path(self.cfg, "remote_home")
        self.workdir = _remote_path(self.cfg, "workdir") or self.remote_home
        if not self.workdir:
            raise ConfigError(f"[sites.{host.name}] needs remote_home or workdir "
                              f"(absolute remote paths)")
        for k, v in (("remote_home", self.remote_home), ("workdir", self.workdir)):
            if v and not v.startswith("/"):
                raise ConfigError(f"[sites.{host.name}] {k} must be an absolute remote path, "
                                  f"not {v!r}")
        self.base = self.remote_home or self.workdir
        self.auth = SSHAuth(self.conn)
        self.run = SSHRun(self)
        self.repo = SSHRepo(self)
        types = self.cfg.get("compute_types", ["default"])
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ConfigError(f"[sites.{host.name}] compute_types must be a list of strings")
        self.spin = StaticSpin(types)
        self._python_argv = shlex.split(str(self.cfg.get("python_command", "python3")))

    def lwfm_argv(self) -> list[str]:
        """How to run the lab's lwfm CLI."""
        cmd = self.cfg.get("lwfm_command", "lwfm")
        return list(cmd) if isinstance(cmd, list) else shlex.split(str(cmd))

    def python_argv(self) -> list[str]:
        """How to run the lab's python (``python_command``, parsed once)."""
        return list(self._python_argv)

    def fetch_thread(self, dest: Path, *, workflow_id: str | None = None,
                     with_data: bool = False) -> FetchedThread:
        """The lab's ``lwfm export`` (under ``remote_home``), fetched to ``dest``."""
        from ._ssh_pull import fetch_thread
        return fetch_thread(self, dest, workflow_id, with_data)

    def deploy(self, wheelhouse: Path, *, venv: str | None = None, extras: str = "",
               system_site_packages: bool = False) -> "DeployReport":
        """Install this lwfm here from a local wheelhouse (``lwfm deploy``; see
        :mod:`._ssh_deploy`)."""
        from ._ssh_deploy import deploy
        return deploy(self, wheelhouse, venv=venv, extras=extras,
                      system_site_packages=system_site_packages)

    def close(self) -> None:
        self.conn.close()
