"""The ``local`` site: jobs as real child processes on this machine.

The submitting process spawns each job (posix_spawn, with its working directory as a
file action) and a reaper thread waits on a pidfd per job, so while the submitter lives a
job's end is an event, not a poll. Every job's end is also written to ``<job id>.exit``
beside its log, whoever started it, for any later process (``lwfm status``, ``wait``,
``serve``, another Manager): by the site's keeper process (:mod:`._keeper`), which holds
each job's pidfd and reads the exit status the kernel keeps there, or, on kernels before
6.15, by a ``/bin/sh`` the job runs under. A script that leaves its ``with Manager()``
block, or is killed -9, while its jobs run loses nothing.

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
from typing import NoReturn

from lwfm.errors import ConfigError, NotFound, NotSupported, SiteError
from lwfm.files import check_path, local_path, sha256_file
from lwfm.model import DataObject, Direction, EntryKind, JobContext, JobDefn, JobStatus, State
from lwfm.site import WALLTIME, NoAuth, Repo, Run, Site, SiteHost, StaticSpin

from ._keeper import KeeperClient, KeeperLost, kernel_keeps_exit_status
from ._reaper import Reaper
from ._spawn import spawn

log = logging.getLogger("lwfm.local")
_WRAP = b'f=$1; shift; p=$1; shift; "$p" "$@"; rc=$?; echo $rc > "$f"; exit $rc'
_kernel_keeps_exit_status = functools.cache(kernel_keeps_exit_status)


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
    if name.startswith("/"):
        base, dirs = "/", [""]   # the common case (sh, python, /bin/true): no getcwd
    elif "/" in name:
        base, dirs = cwd or _cwd() or "/", [""]
    else:
        base = cwd or _cwd() or "/"
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
    except OSError:  # ours was removed
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


def _walltime(defn: JobDefn) -> list[str]:
    """The ``timeout`` prefix that enforces ``resources["walltime_s"]`` (none if unset)."""
    wall = defn.resources.get(WALLTIME)
    if wall is None:
        return []
    if isinstance(wall, bool) or not isinstance(wall, (int, float)) or not wall > 0:
        raise SiteError(f"walltime_s must be a number of seconds > 0, not {wall!r}")
    prog = shutil.which("timeout")
    if prog is None:
        raise SiteError("walltime_s needs coreutils' timeout on PATH; install coreutils")
    return [prog, "--kill-after=5", f"{float(wall):g}"]


class LocalRun(Run):
    poll_interval = 0.5
    #: ``walltime_s``: the job is stopped (TERM, KILL 5 s on) once it has run that long,
    #: by coreutils ``timeout`` around it, so the limit holds when lwfm is gone; the job
    #: then ends FAILED with exit code 124 (137 if it ignored the TERM).
    resource_keys = frozenset({WALLTIME})

    def __init__(self, host: SiteHost, spin: StaticSpin):
        self.host = host
        self.spin = spin
        self._procs: dict[str, int] = {}
        self._reaper: Reaper | None = None
        self._keeper: KeeperClient | None = None
        self._wrap: bool | None = None   # jobs under a shell that writes the exit file
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

    def submit(self, defn: JobDefn, ctx: JobContext) -> JobStatus:
        # compute_type and resources were checked by Site.check_request before the job
        # was recorded: resource_keys names the one limit plain processes have here.
        if defn.cwd and not os.path.isdir(defn.cwd):
            raise SiteError(f"the job's working directory {defn.cwd} is not a directory")
        cwd = os.path.abspath(defn.cwd) if defn.cwd else None
        argv = [os.fsencode(a) for a in _walltime(defn) + job_argv(defn)]
        env = _environ_bytes()
        env.update((os.fsencode(k), os.fsencode(v)) for k, v in self.host.job_env(defn, ctx).items())
        path = _program(os.fsdecode(argv[0]), env, cwd)
        exit_file = self._file(ctx.job_id, "exit")
        reaper, keeper = self._started()
        if keeper is None:  # no kernel help: the job's shell writes its exit file
            argv, path = [b"sh", b"-c", _WRAP, b"sh", os.fsencode(exit_file), path, *argv[1:]], b"/bin/sh"
        stamp = int(time.time() * 1000)
        try:
            pid = spawn(path, argv, env, os.fsencode(self._file(ctx.job_id, "log")),
                        None if cwd is None else os.fsencode(cwd))
        except OSError as e:
            raise SiteError(f"cannot start {defn.display_name()!r}: {e.strerror or e}") from None
        ctx.native_id = f"{pid}:{stamp}:x"
        try:
            fd = os.pidfd_open(pid)  # ours until reaped: the pid cannot be reused meanwhile
        except ProcessLookupError:  # it ended, and some other code here reaped it already
            log.warning("job %s ended at once and was reaped behind lwfm's back (a waitpid(-1) "
                        "in this process?): its exit code is lost", ctx.job_id)
            return JobStatus(ctx.job_id, State.RUNNING, native_state=f"pid {pid}")
        except OSError as e:  # out of fds (EMFILE): a job nobody could reap must not run on
            self._unwatchable(pid, ctx.job_id, e)
        if keeper is not None:
            try:
                keeper.watch(fd, exit_file)
            except KeeperLost:
                self._keeper_lost(keeper)
            except OSError as e:  # no fd left for the keeper's copy of the pidfd
                os.close(fd)
                self._unwatchable(pid, ctx.job_id, e)
        with self._lock:
            self._procs[ctx.job_id] = pid
        reaper.watch(fd, pid, ctx.job_id)
        return JobStatus(ctx.job_id, State.RUNNING, native_state=f"pid {pid}")

    @staticmethod
    def _unwatchable(pid: int, job_id: str, e: OSError) -> NoReturn:
        """Stop a job just spawned that cannot be watched: nobody could record its end."""
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        raise SiteError(f"cannot watch job {job_id} ({e.strerror or e}); it was stopped: "
                        "raise the open-files limit (ulimit -n) for this many local jobs "
                        "at once") from None

    def _started(self) -> tuple[Reaper, KeeperClient | None]:
        """The reaper thread and the keeper, started on first use (the keeper again if it
        died; not at all where the kernel keeps no exit status for it)."""
        with self._lock:
            if self._closed:
                raise SiteError(f"site {self.host.name!r} is closed")
            if self._reaper is None:
                self._reaper = Reaper(self)
                self._reaper.start()
            if self._wrap is None:
                self._wrap = not _kernel_keeps_exit_status()
            if self._keeper is None and not self._wrap:
                logs = self.host.home / "logs"
                logs.mkdir(parents=True, exist_ok=True)
                try:
                    self._keeper = KeeperClient(str(self.host.home), str(logs / "local-keeper.log"))
                except OSError as e:
                    raise SiteError(f"cannot start the local job keeper: {e}") from None
            return self._reaper, self._keeper

    def _keeper_lost(self, keeper: KeeperClient) -> None:
        log.warning("the local job keeper (pid %s) is gone; starting another", keeper.pid)
        with self._lock:
            if self._keeper is keeper:
                self._keeper = None
        keeper.close()

    def _finished(self, job_id: str, code: int | None) -> None:
        """The reaper saw the job end; ``code`` None if someone else reaped it."""
        if code is not None:
            cancelled = os.path.exists(self._file(job_id, "cancelled"))
            self.host.report(exit_status(job_id, code, cancelled))
        with self._lock:  # only now: whoever sees it unsupervised finds the report queued
            self._procs.pop(job_id, None)

    def close(self) -> None:
        """Stop the reaper thread (once the jobs still running have ended: only this
        process can reap them) and let go of the keeper, which writes their exit files so
        that whoever looks next (any Manager, ``lwfm status``) records their true end."""
        with self._lock:
            self._closed, reaper, keeper = True, self._reaper, self._keeper
            self._reaper = self._keeper = None
            idle = not self._procs
        if keeper is not None:
            keeper.close()
        if reaper is not None:
            reaper.stop()
            if idle:
                reaper.join()

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
        if text.endswith("\n"):  # written whole (one write of "<code>\n")
            try:
                return exit_status(ctx.job_id, int(text), cancelled)
            except ValueError:
                raise SiteError(f"the exit file of job {ctx.job_id} is damaged ({text[:40]!r}): "
                                f"remove {self._file(ctx.job_id, 'exit')} to have it "
                                "recorded as FAILED") from None
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
