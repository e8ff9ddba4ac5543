"""The ``psij`` site: lwfm jobs on batch schedulers (Slurm, PBS, LSF, Flux, Cobalt) via
psij-python's JobExecutor.

Configured in ``lwfm.toml``::

    [sites.cluster]
    driver = "psij"
    executor = "slurm"          # any psij executor name
    queue = "debug"             # default partition (a job's compute_type wins)
    account = "proj123"
    polling_interval = 1.0      # seconds between queue queries (psij's default is 30)
    work_dir = "/shared/lwfm-psij"   # batch scripts and exit-code files
    launcher = "srun"           # optional psij launcher; default: run the command directly
    python = "/opt/venv/bin/python"  # runs "module:function" jobs (default: this python)
    resources = { memory_mb = 512 }  # defaults under each job's own
    compute_types = ["batch"]   # for executors other than slurm (slurm: sinfo's partitions)

The native id is the scheduler's job id. One queue poll thread per site asks about all
jobs this process tracks with one query, and reports each change as a psij callback
(never a status twice). A job this process did not submit (its submitter died) is asked
about once, then attached to that thread (psij ``attach``): any later lwfm process tracks
it to its end by native id.
Cancel works from any process (``scancel``-style command by native id).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psij
from psij.executors.batch.batch_scheduler_executor import BatchSchedulerExecutorConfig
from psij.executors.batch.slurm import SlurmExecutorConfig

from lwfm.errors import ConfigError, InvalidInput, NotSupported, SiteError
from lwfm.model import EntryKind, JobContext, JobDefn, JobStatus, State
from lwfm.site import NoAuth, Run, Site, SiteHost, Spin

from ._psij_slurm import LwfmSlurmExecutor
from ._psij_spec import RESOURCE_KEYS, check_resources, job_spec, merged
from ._psij_status import lwfm_status
from .local import job_argv

log = logging.getLogger("lwfm.psij")
_JOIN_S = 5.0


class PsijRun(Run):
    """Jobs through one psij executor; status from its queue poll thread's callbacks."""

    resource_keys = frozenset(RESOURCE_KEYS)
    detach = True

    def __init__(self, host: SiteHost, cfg: dict[str, Any]):
        self.host = host
        self.executor_name = str(cfg.get("executor", "slurm"))
        interval = cfg.get("polling_interval", 1.0)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ConfigError(f"site {host.name!r}: polling_interval must be a positive number "
                              f"of seconds, not {interval!r}")
        self.poll_interval = float(interval)
        self.work_dir = Path(cfg.get("work_dir") or host.home / "psij" / host.name).expanduser()
        self.queue: str | None = cfg.get("queue")
        self.launcher: str | None = cfg.get("launcher")
        self.python = str(cfg.get("python", sys.executable))
        defaults = dict(cfg.get("resources", {}))
        if cfg.get("account"):
            defaults.setdefault("account", cfg["account"])
        try:
            check_resources(defaults, host.name)
        except InvalidInput as e:
            raise ConfigError(f"[sites.{host.name}] resources: {e}") from None
        self.defaults = defaults
        self._lock = threading.Lock()
        self._executor: Any = None
        # lwfm id -> (psij job, (state, info) last reported): never the same report twice
        self._tracked: dict[str, tuple[psij.Job, tuple[State, str | None]]] = {}
        self._by_psij: dict[str, str] = {}                      # psij job id -> lwfm id
        self._watched: dict[str, psij.Job] = {}  # lwfm id -> attached job submitted elsewhere
        self._closed = False

    # -- the executor -----------------------------------------------------------------
    @property
    def executor(self) -> Any:
        """psij's executor, made on first use (it starts the queue poll thread)."""
        with self._lock:
            if self._closed:
                raise SiteError(f"site {self.host.name!r} is closed")
            if self._executor is None:
                self._executor = self._make_executor()
                self._executor.set_job_status_callback(self._on_status)
            return self._executor

    def _make_executor(self) -> Any:
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        kw = dict(work_directory=self.work_dir, queue_polling_interval=self.poll_interval,
                  initial_queue_polling_delay=0, keep_files=True)
        if self.executor_name == "slurm":
            return LwfmSlurmExecutor(config=SlurmExecutorConfig(**kw))  # type: ignore[arg-type]
        try:
            return psij.JobExecutor.get_instance(self.executor_name,
                                                 config=BatchSchedulerExecutorConfig(**kw))  # type: ignore[arg-type]
        except ValueError as e:
            raise ConfigError(f"site {self.host.name!r}: psij has no executor "
                              f"{self.executor_name!r} ({e})") from None

    @property
    def exec_dir(self) -> Path:
        """Where the executor keeps scripts and exit-code files (psij adds its name)."""
        return self.work_dir / self.executor_name

    # -- run --------------------------------------------------------------------------
    def submit(self, defn: JobDefn, ctx: JobContext) -> JobStatus:
        argv = job_argv(defn, self.host.name)
        if defn.kind is EntryKind.PYTHON:
            argv[0] = self.python  # the same runner as the local site, on the compute node
        jdir = self.host.job_dir(ctx.job_id)
        spec = job_spec(argv, name=f"lwfm-{ctx.job_id}", cwd=defn.cwd,
                        env=self.host.job_env(defn, ctx), stdout=jdir / "stdout",
                        stderr=jdir / "stderr", resources=merged(self.defaults, defn.resources),
                        queue=defn.compute_type or self.queue, launcher=self.launcher)
        job = psij.Job(spec)
        executor = self.executor
        with self._lock:
            self._tracked[ctx.job_id] = (job, (State.PENDING, None))
            self._by_psij[job.id] = ctx.job_id
        try:
            executor.submit(job)
        except Exception as e:
            self._untrack(ctx.job_id)
            raise SiteError(f"{self.executor_name} refused job {defn.display_name()!r}: "
                            f"{str(e).strip()}") from None
        ctx.native_id = str(job.native_id)
        return JobStatus(ctx.job_id, State.PENDING, native_state="QUEUED",
                         info=f"submitted as {self.executor_name} job {ctx.native_id}")

    def _on_status(self, job: psij.Job, st: psij.JobStatus) -> None:
        """psij's callback (its poll thread, or submit): report each new state once."""
        with self._lock:
            job_id = self._by_psij.get(job.id)
            if job_id is None or job_id not in self._tracked:
                return
            _, last = self._tracked[job_id]
        native = str(job.native_id)
        out = lwfm_status(job_id, st, native, self.exec_dir, self._stderr(job_id))
        if (out.state, out.info) == last or out.state is State.UNKNOWN or (
                out.state is last[0] and out.state is not State.PENDING):
            return
        if out.state.terminal and self._cancelled_here(native):
            self._untrack(job_id)  # lwfm's cancel records it, with who asked
            return
        with self._lock:
            self._tracked[job_id] = (job, (out.state, out.info))
        self.host.report(out)
        if out.state.terminal:
            self._untrack(job_id)  # only now: a poller finds the report already queued

    def _untrack(self, job_id: str) -> None:
        with self._lock:
            job, _ = self._tracked.pop(job_id, (None, None))
            if job is not None:
                self._by_psij.pop(job.id, None)

    def supervises(self, job_id: str) -> bool:
        return job_id in self._tracked

    def status(self, ctx: JobContext) -> JobStatus:
        """Asked only about jobs this process did not submit (their submitter is gone, or
        is another process): one query the first time, then the job is attached to the
        poll thread and each later answer is its last poll (no query per job). What is
        asked this way is recorded by the Manager only if the store lacks it: a living
        submitter's own report wins, and no end is recorded twice."""
        if not ctx.native_id:
            return JobStatus(ctx.job_id, State.PENDING)
        native = ctx.native_id
        with self._lock:
            watched = self._watched.get(ctx.job_id)
        if watched is not None and watched.status.state is not psij.JobState.NEW:
            st = watched.status
        else:
            executor = self.executor
            if not hasattr(executor, "query"):
                raise NotSupported(f"site {self.host.name!r}: asking about {self.executor_name} "
                                   "jobs another process submitted works for executor 'slurm' only")
            st = executor.query([native]).get(native)
            if st is None:  # gone from the queue: its exit code file tells how it ended
                st = psij.JobStatus(psij.JobState.COMPLETED, exit_code=self._exit_file(native))
        out = lwfm_status(ctx.job_id, st, native, self.exec_dir, self._stderr(ctx.job_id))
        if out.state.terminal:
            with self._lock:
                self._watched.pop(ctx.job_id, None)
            if self._cancelled_here(native):
                return JobStatus(ctx.job_id, State.CANCELLED, native_state=out.native_state,
                                 info="cancelled by user")
        elif watched is None:
            self._watch(ctx.job_id, native)
        return out

    def _watch(self, job_id: str, native: str) -> None:
        """Attach (psij ``attach``) a job submitted elsewhere to this poll thread."""
        job = psij.Job()
        with self._lock:
            if job_id in self._watched:
                return
            self._watched[job_id] = job
        self.executor.attach(job, native)

    def _stderr(self, job_id: str) -> Path:
        return self.host.job_dir(job_id, create=False) / "stderr"

    def _exit_file(self, native: str) -> int | None:
        try:
            text = (self.exec_dir / f"{native}.ec").read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.lstrip("-").isdigit() else None

    def _cancelled_here(self, native: str) -> bool:
        return (self.exec_dir / f"{native}.lwfm-cancelled").exists()

    def cancel(self, ctx: JobContext) -> bool:
        """Cancel by native id (from any process). False if the job had already ended."""
        if not ctx.native_id:
            return False
        native = ctx.native_id
        executor = self.executor
        if hasattr(executor, "query"):
            st = executor.query([native]).get(native)
            if st is None or st.state.final:
                return False
        self.exec_dir.mkdir(parents=True, exist_ok=True)
        (self.exec_dir / f"{native}.lwfm-cancelled").touch()
        try:
            executor._run_command(executor.get_cancel_command(native))
        except subprocess.CalledProcessError as e:
            raise SiteError(f"cannot cancel {self.executor_name} job {native}: "
                            f"{str(e.output).strip()}") from None
        return True

    def log(self, ctx: JobContext) -> str:
        jdir = self.host.job_dir(ctx.job_id, create=False)
        parts = []
        for name in ("stdout", "stderr"):
            try:
                parts.append((jdir / name).read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "".join(parts)

    def close(self) -> None:
        """Stop the queue poll thread. Jobs still going are left to the scheduler: the
        next lwfm process that asks attaches to them."""
        with self._lock:
            self._closed, executor = True, self._executor
            self._executor = None
        if executor is not None:
            thread = executor._queue_poll_thread
            thread.done = True
            try:
                thread.join(self.poll_interval + _JOIN_S)
            except TypeError:
                pass  # it ended: psij's thread class shadows Thread._stop, which join calls


class PsijSpin(Spin):
    """The scheduler's partitions (Slurm: ``sinfo``) or the configured compute types."""

    def __init__(self, host: SiteHost, cfg: dict[str, Any]):
        self.host = host
        self.executor_name = str(cfg.get("executor", "slurm"))
        self._types: list[str] | None = cfg.get("compute_types")

    def compute_types(self) -> list[str]:
        if self._types is None:
            if self.executor_name != "slurm":
                return []
            try:
                out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True,
                                     text=True, timeout=30, check=True).stdout
            except (OSError, subprocess.SubprocessError) as e:
                raise SiteError(f"site {self.host.name!r}: cannot list partitions with sinfo: "
                                f"{getattr(e, 'stderr', '') or e}") from None
            self._types = sorted({p.strip() for p in out.split() if p.strip()})
        return list(self._types)

    def provision(self, compute_type: str, **options: Any) -> str:
        raise NotSupported(f"site {self.host.name!r} ({self.executor_name}) cannot provision "
                           "compute: the scheduler's partitions are fixed; submit jobs to one "
                           "of them (compute_type) instead")

    def deprovision(self, resource_id: str) -> None:
        raise NotSupported(f"site {self.host.name!r} ({self.executor_name}) cannot deprovision "
                           "compute: it provisions none")


class PsijSite(Site):
    """A batch scheduler reached through psij-python (see the module docstring)."""

    def __init__(self, host: SiteHost):
        super().__init__(host)
        cfg = host.config
        if not isinstance(cfg.get("resources", {}), dict):
            raise ConfigError(f"site {host.name!r}: resources must be a table")
        self.auth = NoAuth()
        self.run = PsijRun(host, cfg)
        self.spin = PsijSpin(host, cfg)

    def check_request(self, defn: JobDefn) -> None:
        """As every site, plus each resource value checked (type, range) before recording."""
        if defn.kind is EntryKind.PAYLOAD:
            raise NotSupported(f"site {self.name!r} runs argv, shell and python jobs, "
                               "not site payloads")
        super().check_request(defn)
        check_resources(defn.resources, self.name)

    def close(self) -> None:
        self.run.close()  # type: ignore[attr-defined]
