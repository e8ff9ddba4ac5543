"""The ``local`` site: jobs as real child processes on this machine.

Every job is started by the site's keeper process (:mod:`._keeper`), not by the
submitting process, so every job's end is recorded whoever started it: the keeper
writes each exit code to ``<job id>.exit`` beside the job's log, which any later
process (``lwfm status``, ``lwfm wait``, ``lwfm serve``, another Manager) reads, and
while the submitting Manager lives the keeper reports the end to it at once, as an
event (no polling). A script that leaves its ``with Manager()`` block, or is killed -9,
while its jobs run loses nothing.

``native_id`` is ``"<pid>:<spawn time ms>:x"``: checked against the kernel's start time
of the pid, it guards cancel against pid reuse; ``:x`` marks a job with an exit file.
Cancel leaves a marker file and signals the job's process group, so it works from any
process and whoever learns the job's end reports it CANCELLED.

The site runs plain processes: a ``compute_type`` must be one it is configured with, and
it can honour no ``resources`` at all, so it refuses them (naming the key) rather than
run the job without them.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from lwfm.errors import ConfigError, NotFound, NotSupported, SiteError
from lwfm.files import check_path, local_path, sha256_file
from lwfm.model import DataObject, Direction, EntryKind, JobContext, JobDefn, JobStatus, State
from lwfm.site import NoAuth, Repo, Run, Site, SiteHost, StaticSpin

from ._keeper import KeeperClient

log = logging.getLogger("lwfm.local")


def job_argv(defn: JobDefn, site: str = "local") -> list[str]:
    """The argv that runs ``defn`` (argv, shell or Python ``module:function``) on ``site``."""
    if defn.kind is EntryKind.ARGV:
        return [*defn.entry, *defn.args]  # type: ignore[misc]
    if defn.kind is EntryKind.SHELL:
        return ["/bin/sh", "-c", str(defn.entry), "sh", *defn.args]
    if defn.kind is EntryKind.PYTHON:
        return [sys.executable, "-m", "lwfm._pycall", str(defn.entry), *defn.args]
    raise NotSupported(f"site {site!r} runs argv, shell and python jobs, not site payloads")


def _environ_bytes() -> dict[bytes, bytes]:
    """This process's environment, as bytes, read now (so later changes to os.environ
    reach the jobs). os.environ keeps an encoded copy: one C-level dict copy instead of
    decoding every variable per job, which showed up in the submit profile."""
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        return dict(data)
    return dict(os.environb)


def _program(name: str, env: dict[bytes, bytes], cwd: str | None) -> bytes:
    """The file a job's argv[0] names, found as execvp would but on the job's own ``PATH``
    and relative to its own cwd: a missing program is an error at submit, not a job that
    fails later, and argv[0] stays what the user wrote."""
    base = cwd or os.getcwd()
    if "/" in name:
        dirs = [""]
    else:
        dirs = os.fsdecode(env.get(b"PATH", os.fsencode(os.defpath))).split(os.pathsep)
    denied = None
    for d in dirs:
        full = os.path.join(base, d, name)
        if os.path.isfile(full):
            if os.access(full, os.X_OK):
                return os.fsencode(full)
            denied = full
    if denied is not None:
        raise SiteError(f"cannot start {name!r}: {denied} is not executable")
    where = "" if "/" in name else " on the job's PATH"
    raise SiteError(f"cannot start {name!r}: no such program{where}")


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # ours was removed: the job starts in the keeper's, /
        return None


@functools.cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise SiteError("cannot read the boot time from /proc/stat")


_CLK_TCK = os.sysconf("SC_CLK_TCK")
_SAME_PROCESS_S = 2.0  # spawn stamp vs. kernel start time: far below any pid reuse cycle


def _alive(native_id: str) -> bool:
    """The process that native_id names still runs (not a zombie, not a reused pid).

    ``native_id`` is ``pid:spawn-time-ms``; the kernel's start time of ``pid`` must match
    the spawn stamp. Reading /proc only here, not at submit, keeps it off the hot path.
    """
    pid, stamp = native_id.split(":")[:2]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    started = _boot_time() + int(fields[19]) / _CLK_TCK
    return fields[0] != "Z" and abs(started - int(stamp) / 1000) < _SAME_PROCESS_S


_TERM_GRACE_S = 5.0  # how long a cancelled job may clean up before SIGKILL


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True  # (a PermissionError also means it exists)


def exit_status(job_id: str, code: int | None, cancelled: bool = False) -> JobStatus:
    """COMPLETE on 0, CANCELLED only when lwfm cancelled it (its marker file), else FAILED:
    a job the OOM killer or a stray ``kill`` ended has failed, not been cancelled."""
    if cancelled:
        return JobStatus(job_id, State.CANCELLED, native_state=f"exit {code}", exit_code=code)
    state = State.COMPLETE if code == 0 else State.FAILED
    return JobStatus(job_id, state, native_state=f"exit {code}", exit_code=code)


class LocalRun(Run):
    poll_interval = 0.5

    def __init__(self, host: SiteHost, spin: StaticSpin):
        self.host = host
        self.spin = spin
        self._procs: dict[str, KeeperClient] = {}   # job id -> the keeper that reports it
        self._keeper: KeeperClient | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._shards: dict[str, str] = {}

    def _file(self, job_id: str, suffix: str) -> str:
        """Per-job files sit flat in one of 16 shard directories (by the id's first hex
        digit): a fresh home pays 16 mkdirs, not one or two per job. A plain string: this
        is on the submit hot path."""
        shard = self._shards.get(job_id[0])
        if shard is None:
            path = self.host.home / "logs" / job_id[0]
            path.mkdir(parents=True, exist_ok=True)
            shard = self._shards[job_id[0]] = str(path)
        return f"{shard}/{job_id}.{suffix}"

    def check(self, defn: JobDefn) -> None:
        """Refuse what this site cannot honour, before anything starts: a compute type it
        is not configured with, and any resource (plain processes have none to ask for)."""
        self.spin.require(self.host.name, defn.compute_type)
        if defn.resources:
            key = next(iter(defn.resources))
            raise SiteError(f"site {self.host.name!r} cannot honour the resource {key!r}: "
                            "local jobs are plain processes and take no resource requests "
                            "(leave resources out, or submit to a site that honours them)")

    def submit(self, defn: JobDefn, ctx: JobContext) -> JobStatus:
        self.check(defn)
        cwd = os.path.abspath(defn.cwd) if defn.cwd else _cwd()
        if defn.cwd and not os.path.isdir(cwd):  # type: ignore[arg-type]
            raise SiteError(f"the job's working directory {defn.cwd} is not a directory")
        argv = [os.fsencode(a) for a in job_argv(defn)]
        env = _environ_bytes()
        extra = {os.fsencode(k): os.fsencode(v) for k, v in self.host.job_env(defn, ctx).items()}
        path = _program(os.fsdecode(argv[0]), {**env, **extra}, cwd)
        log_file, exit_file = self._file(ctx.job_id, "log"), self._file(ctx.job_id, "exit")
        stamp = int(time.time() * 1000)
        for attempt in (1, 2):
            keeper = self._keeper_started()
            with self._lock:  # before it starts: its end may be reported before spawn returns
                self._procs[ctx.job_id] = keeper
            try:
                pid = keeper.spawn(ctx.job_id, path, argv, env, extra, log_file, exit_file,
                                   None if cwd is None else os.fsencode(cwd))
                break
            except BrokenPipeError:  # the keeper died before it read this: start another
                self._gone(keeper)
                if attempt == 2:
                    raise SiteError("cannot start the job: the local job keeper keeps dying "
                                    f"(see {self._keeper_log()})") from None
            except OSError as e:
                with self._lock:
                    self._procs.pop(ctx.job_id, None)
                raise SiteError(f"cannot start {defn.display_name()!r}: "
                                f"{e.strerror or e}") from None
        ctx.native_id = f"{pid}:{stamp}:x"
        return JobStatus(ctx.job_id, State.RUNNING, native_state=f"pid {pid}")

    def _keeper_log(self) -> str:
        return str(self.host.home / "logs" / "local-keeper.log")

    def _keeper_started(self) -> KeeperClient:
        """This site's keeper, started on first use (and again if it died)."""
        with self._lock:
            if self._closed:
                raise SiteError(f"site {self.host.name!r} is closed")
            if self._keeper is None:
                (self.host.home / "logs").mkdir(parents=True, exist_ok=True)
                try:
                    self._keeper = KeeperClient(str(self.host.home), self._keeper_log(),
                                                self._finished, self._gone)
                except OSError as e:
                    raise SiteError(f"cannot start the local job keeper: {e}") from None
            return self._keeper

    def _finished(self, job_id: str, code: int | None) -> None:
        """The keeper saw the job end (on the reaper thread)."""
        if code is not None:
            cancelled = os.path.exists(self._file(job_id, "cancelled"))
            self.host.report(exit_status(job_id, code, cancelled))
        with self._lock:  # only now: whoever sees it unsupervised finds the report queued
            self._procs.pop(job_id, None)

    def _gone(self, keeper: KeeperClient) -> None:
        """A keeper's reports stopped: its jobs are no longer ours to report (polling, and
        their exit files, take over), and the next submit starts a new keeper."""
        with self._lock:
            if self._keeper is keeper:
                self._keeper = None
            for job_id in [j for j, k in self._procs.items() if k is keeper]:
                del self._procs[job_id]
        if not keeper.closing:
            log.warning("the local job keeper (pid %s) ended; jobs it ran are now polled",
                        keeper.pid)

    def close(self) -> None:
        """Stop this site's reaper thread and let go of its keeper: the keeper finishes
        its running jobs by itself, writing their exit files, so whoever looks next (any
        Manager, ``lwfm status``) records their true end."""
        with self._lock:
            self._closed, keeper = True, self._keeper
        if keeper is not None:
            keeper.close()

    def supervises(self, job_id: str) -> bool:
        """Whether this process will report the job's end by itself (no polling needed)."""
        return job_id in self._procs

    def status(self, ctx: JobContext) -> JobStatus:
        if not ctx.native_id:
            return JobStatus(ctx.job_id, State.PENDING)
        try:
            text = Path(self._file(ctx.job_id, "exit")).read_text()
        except FileNotFoundError:
            text = ""
        cancelled = os.path.exists(self._file(ctx.job_id, "cancelled"))
        if text.endswith("\n"):
            return exit_status(ctx.job_id, int(text), cancelled)
        if _alive(ctx.native_id) or self.supervises(ctx.job_id):
            return JobStatus(ctx.job_id, State.RUNNING, native_state="alive")
        if cancelled:
            return exit_status(ctx.job_id, None, cancelled=True)
        return JobStatus(ctx.job_id, State.UNKNOWN, native_state="gone",
                         info="the process ended while no lwfm process supervised it; "
                              "its exit code was not recorded")

    def cancel(self, ctx: JobContext) -> bool:
        if not ctx.native_id or not _alive(ctx.native_id):
            return False
        pid = int(ctx.native_id.split(":")[0])
        Path(self._file(ctx.job_id, "cancelled")).touch()
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + _TERM_GRACE_S
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _group_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return True

    def log(self, ctx: JobContext) -> str:
        try:
            return Path(self._file(ctx.job_id, "log")).read_text(errors="replace")
        except FileNotFoundError:
            return ""


class LocalRepo(Repo):
    """Data on this machine's filesystem; copies are checksummed."""

    def __init__(self, host: SiteHost):
        self.host = host

    def _copy(self, src: Path, dst: Path, direction: Direction) -> DataObject:
        if not src.is_file():
            raise NotFound(f"no such file: {src}")
        if dst.is_dir():
            raise SiteError(f"cannot copy {src} to {dst}: it is a directory (name the file)")
        if src != dst:
            tmp = dst.with_name(f".{dst.name}.lwfm-tmp")
            try:  # through a temp name: a failed copy leaves the destination as it was
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            except OSError as e:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                raise SiteError(f"cannot copy {src} to {dst}: {e.strerror or e}") from None
        return DataObject(url=dst.as_uri(), site=self.host.name, direction=direction,
                          size=dst.stat().st_size, sha256=sha256_file(dst))

    def put(self, local_file: Path, dest: str, ctx: JobContext | None) -> DataObject:
        check_path(local_file, "the file to put")
        return self._copy(Path(local_file).resolve(), local_path(dest), Direction.PUT)

    def get(self, source: str, local_file: Path, ctx: JobContext | None) -> DataObject:
        dst = local_path(source)
        check_path(local_file, "the file to get to")
        return self._copy(dst, Path(local_file).resolve(), Direction.GET)

    def find(self, pattern: str) -> list[str]:
        base = Path(pattern).expanduser()
        root = Path(base.anchor or ".")
        return sorted(p.resolve().as_uri() for p in root.glob(str(base.relative_to(root)))
                      if p.is_file())


class LocalSite(Site):
    """This machine. Config: ``compute_types`` (list), ``detach`` (bool, no longer needed)."""

    def __init__(self, host: SiteHost):
        super().__init__(host)
        self.auth = NoAuth()
        detach, types = host.config.get("detach", False), host.config.get("compute_types", ["default"])
        if not isinstance(detach, bool):
            raise ConfigError(f"site {host.name!r}: detach must be true or false, not {detach!r}")
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ConfigError(f"site {host.name!r}: compute_types must be a list of names")
        self.spin = StaticSpin(types)
        self.run = LocalRun(host, self.spin)
        self.repo = LocalRepo(host)

    @property
    def detach(self) -> bool:
        """Always true: every local job records its own end (the keeper's exit file). The
        ``detach`` setting and attribute stay only so older configs and callers work."""
        return True

    @detach.setter
    def detach(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ConfigError(f"site {self.host.name!r}: detach must be true or false")

    def close(self) -> None:
        self.run.close()
