"""The ``local`` site: jobs as real child processes on this machine.

Two ways to run, one contract:

* **supervised** (default): the submitting process spawns the job directly and a
  reaper thread waits on a pidfd per job, so completion is an event, not a poll;
  the exit code is reported the moment the process ends.
* **detached** (``detach = true`` in the site table, or ``LocalSite.detach``): the
  job runs under ``/bin/sh`` that writes its exit code to ``<job id>.exit`` beside its
  log, so any later process (``lwfm status``, ``lwfm serve``) can learn how
  it ended after the submitter has gone. It costs one extra exec per job.
  While the submitter lives, it reports the end as an event too.

``native_id`` is ``"<pid>:<spawn time ms>[:x]"``: checked against the kernel's start
time of the pid, it guards cancel against pid reuse; ``:x`` marks a detached job with an
exit file. Cancel leaves a marker file and signals the job's process group, so it works
from any process and whichever process reaps the job reports it CANCELLED.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from lwfm.errors import ConfigError, NotFound, NotSupported, SiteError
from lwfm.files import local_path, sha256_file
from lwfm.model import DataObject, Direction, EntryKind, JobContext, JobDefn, JobStatus, State
from lwfm.site import NoAuth, Repo, Run, Site, SiteHost, StaticSpin

from ._spawn import spawnp

_WRAP = '"$@"; rc=$?; echo $rc > "$LWFM_EXIT_FILE"; exit $rc'


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


def _spawn(argv: list[str], env: dict[bytes, bytes], log: str, cwd: str | None) -> int:
    """Start argv in its own process group with stdin from /dev/null and stdout+stderr to
    ``log`` (one per job, interleaved as batch systems do). posix_spawn lets the child
    open its own log and skips subprocess's per-call set-up: it is the hot path, and
    :mod:`._spawn` calls it without holding the GIL."""
    if cwd:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                    cwd=cwd, env=env, process_group=0).pid
        except OSError as e:
            raise SiteError(f"cannot start {argv[0]!r} in {cwd}: {e.strerror or e}") from None
        finally:
            os.close(fd)
    try:
        return spawnp(argv, env, log)
    except OSError as e:
        raise SiteError(f"cannot start {argv[0]!r}: {e.strerror or e}") from None


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


_LINGER_S = 0.001


class _Reaper(threading.Thread):
    """Waits on a pidfd per supervised child and reports each exit as it happens.

    Registering a pidfd with epoll from the submitting thread needs no wake-up of
    this thread (epoll_ctl is thread-safe), so submitting costs no thread switch.
    """

    def __init__(self, run: "LocalRun"):
        super().__init__(name="lwfm-local-reaper", daemon=True)
        self.run_ = run
        self.ep = select.epoll()
        self.jobs: dict[int, tuple[int, str]] = {}   # pidfd -> (pid, job id)

    def watch(self, pid: int, job_id: str) -> None:
        fd = os.pidfd_open(pid)
        self.jobs[fd] = (pid, job_id)
        self.ep.register(fd, select.EPOLLIN)

    def run(self) -> None:
        while True:
            ready = self.ep.poll()
            time.sleep(_LINGER_S)  # gather exits: one wake-up per burst, not one per job
            ready += self.ep.poll(0)
            for fd in dict.fromkeys(fd for fd, _ in ready):
                self.ep.unregister(fd)
                pid, job_id = self.jobs.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                self.run_._finished(job_id, os.waitstatus_to_exitcode(status))


class LocalRun(Run):
    poll_interval = 0.5

    def __init__(self, host: SiteHost, detach: bool):
        self.host = host
        self.detach = detach
        self._procs: dict[str, int] = {}
        self._reaper: _Reaper | None = None
        self._lock = threading.Lock()
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
        if defn.cwd and not os.path.isdir(defn.cwd):
            raise SiteError(f"the job's working directory {defn.cwd} is not a directory")
        extra = self.host.job_env(defn, ctx)
        argv = job_argv(defn)
        if self.detach:
            extra["LWFM_EXIT_FILE"] = self._file(ctx.job_id, "exit")
            argv = ["/bin/sh", "-c", _WRAP, "sh", *argv]
        env = _environ_bytes()
        env.update((os.fsencode(k), os.fsencode(v)) for k, v in extra.items())
        stamp = int(time.time() * 1000)
        pid = _spawn(argv, env, self._file(ctx.job_id, "log"), defn.cwd)
        ctx.native_id = f"{pid}:{stamp}" + (":x" if self.detach else "")
        # Detached or not, it is our child: while we live, its end is an event here (and
        # reaping leaves no zombie); a detached job's exit file serves everyone else.
        with self._lock:
            self._procs[ctx.job_id] = pid
            if self._reaper is None:
                self._reaper = _Reaper(self)
                self._reaper.start()
        self._reaper.watch(pid, ctx.job_id)
        return JobStatus(ctx.job_id, State.RUNNING, native_state=f"pid {pid}")

    def _finished(self, job_id: str, code: int) -> None:
        cancelled = os.path.exists(self._file(job_id, "cancelled"))
        self.host.report(exit_status(job_id, code, cancelled))
        with self._lock:  # only now: whoever sees it unsupervised finds the report queued
            self._procs.pop(job_id, None)

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
        return self._copy(Path(local_file).resolve(), local_path(dest), Direction.PUT)

    def get(self, source: str, local_file: Path, ctx: JobContext | None) -> DataObject:
        return self._copy(local_path(source), Path(local_file).resolve(), Direction.GET)

    def find(self, pattern: str) -> list[str]:
        base = Path(pattern).expanduser()
        root = Path(base.anchor or ".")
        return sorted(p.resolve().as_uri() for p in root.glob(str(base.relative_to(root)))
                      if p.is_file())


class LocalSite(Site):
    """This machine. Config: ``detach`` (bool), ``compute_types`` (list)."""

    def __init__(self, host: SiteHost):
        super().__init__(host)
        self.auth = NoAuth()
        detach, types = host.config.get("detach", False), host.config.get("compute_types", ["default"])
        if not isinstance(detach, bool):
            raise ConfigError(f"site {host.name!r}: detach must be true or false, not {detach!r}")
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise ConfigError(f"site {host.name!r}: compute_types must be a list of names")
        self.run = LocalRun(host, detach=detach)
        self.repo = LocalRepo(host)
        self.spin = StaticSpin(types)

    @property
    def detach(self) -> bool:
        return self.run.detach

    @detach.setter
    def detach(self, value: bool) -> None:
        self.run.detach = value
