"""The ``venv`` site: like ``local``, but inside a virtualenv built from a requirement list.

Two venv sites can hold incompatible versions of one library side by side. Configure::

    [sites.old]
    driver = "venv"
    requirements = ["six==1.15.0"]
    # python = "/usr/bin/python3.11"        base interpreter (default: lwfm's own)
    # venv_dir = "/path/to/venv"            default: venvs/<site name> (relative: to the home)
    # driver_class = "mypkg.drv:Driver"     importable in the venv; methods via VenvSite.call
    # driver_options = {key = "value"}      keyword arguments of driver_class
    # pythonpath = ["src"]                   extra import dirs for worker and jobs (relative: to the home)
    # system_site_packages = false           true: the host's packages (lwfm too) show
    #                                         beneath the venv's own, which still win
    # compute_types = ["cpu"]                 what JobDefn.compute_type may name

lwfm itself is not in a plain venv (the worker is stdlib-only). A job that calls lwfm
(notate data, submit children) needs ``system_site_packages = true`` or lwfm among the
requirements (e.g. its source checkout path). ``system_site_packages`` shows the
packages of the interpreter lwfm runs in, a venv's too (see ``_venv_build``), so the job
gets the host's own lwfm however it was installed. ``JobDefn.resources`` may set
``cpu_seconds``, ``memory_mb`` and ``open_files`` (rlimits of the job); any other key
is refused at submit. The venv is built once (see ``_venv_build``) and reused. Jobs and the driver's own
calls go through one long-lived worker interpreter in the venv (``_venv_worker``);
its exit events report completion. Status and cancel also work from any other process,
from the native id ``pid:start_time`` and the exit-code file the worker writes.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lwfm.errors import ConfigError, NotSupported
from lwfm.model import EntryKind, JobContext, JobDefn, JobStatus, State
from lwfm.site import PROCESS_LIMITS, NoAuth, Run, Site, SiteHost, StaticSpin, process_limits

from . import _venv_build as build
from ._venv_client import WORKER_SCRIPT, WorkerClient, worker_env
from ._venv_worker import CANCEL_FILE, EXIT_FILE, proc_stat, write_atomic
from .local import LocalRepo, exit_status, job_argv  # same mapping and argv as local

CANCEL_GRACE = 3.0   # seconds between SIGTERM and SIGKILL of a cancelled job's group


def _str_list(v: Any, what: str) -> list[str]:
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ConfigError(f"{what} must be a list of non-empty strings, got {v!r}")
    return list(v)


def parse_native(native_id: str | None) -> tuple[int, str | None] | None:
    """``"pid:start"`` -> (pid, start); None if absent or malformed."""
    if not native_id:
        return None
    pid, _, start = native_id.partition(":")
    return (int(pid), start or None) if pid.isdigit() else None


def process_alive(native_id: str | None) -> bool:
    """Whether the job's process still runs: same pid AND same start time (pid reuse)."""
    parsed = parse_native(native_id)
    if parsed is None:
        return False
    pid, start = parsed
    fields = proc_stat(pid)
    if not fields or len(fields) < 20 or (start is not None and fields[19] != start):
        return False
    return fields[0] not in ("Z", "X")   # a zombie has ended; its worker reaps it


class VenvRun(Run):
    """Jobs are children of the worker (in the venv), each in its own session."""

    poll_interval = 1.0
    detach = True        # the worker outlives this process and writes each job's exit file
    resource_keys = frozenset(PROCESS_LIMITS)

    def __init__(self, site: "VenvSite"):
        self.site = site

    def _argv(self, defn: JobDefn) -> list[str]:
        py = str(build.venv_python(self.site.venv_dir))
        if defn.kind is EntryKind.PYTHON:   # lwfm._pycall is not in the venv: the worker runs it
            argv = [py, str(WORKER_SCRIPT), "--call", str(defn.entry), *defn.args]
        else:
            argv = job_argv(defn, self.site.name)   # argv and shell exactly as on ``local``
        limits = process_limits(defn.resources)
        if limits:   # set in the job's own process, which then execs the job
            argv = [py, str(WORKER_SCRIPT), "--limits", json.dumps(limits), "--", *argv]
        return argv

    def submit(self, defn: JobDefn, ctx: JobContext) -> JobStatus:
        self.site.check_request(defn)
        argv = self._argv(defn)
        env = self.site.host.job_env(defn, ctx)
        job_dir = self.site.host.job_dir(ctx.job_id)   # made here: the worker writes into it
        worker = self.site.worker()
        spawned, lock = self.site.spawned, self.site.spawned_lock
        with lock:
            spawned[ctx.job_id] = None      # its exit event may beat the response
        try:
            res = worker.request("spawn", {"job": ctx.job_id, "argv": argv, "job_dir": str(job_dir),
                                           "env": env, "cwd": defn.cwd})
        except BaseException:
            with lock:
                spawned.pop(ctx.job_id, None)
            raise
        with lock:
            if ctx.job_id in spawned:       # not ended yet: this worker will report it
                spawned[ctx.job_id] = res["worker"]
        ctx.native_id = f"{res['pid']}:{res['start']}"
        return JobStatus(ctx.job_id, State.RUNNING, native_state="running",
                         info=f"pid {res['pid']} in venv {self.site.venv_dir}")

    def status(self, ctx: JobContext) -> JobStatus:
        if not ctx.native_id:
            return JobStatus(ctx.job_id, State.PENDING)
        job_dir = self.site.host.job_dir(ctx.job_id, create=False)
        st = self._from_exit_file(ctx.job_id, job_dir)
        if st is not None:
            return st
        # like local: our worker reports the end itself (its exit event), no round trip
        if self.supervises(ctx.job_id) or process_alive(ctx.native_id):
            return JobStatus(ctx.job_id, State.RUNNING, native_state="running")
        if (job_dir / CANCEL_FILE).exists():
            return exit_status(ctx.job_id, -signal.SIGTERM, True)
        # like local: UNKNOWN lets the Manager grant the worker a grace period
        return JobStatus(ctx.job_id, State.UNKNOWN, native_state="gone",
                         info="the process ended without an exit code recorded "
                              "(was its venv worker killed?)")

    def supervises(self, job_id: str) -> bool:
        """Whether this process's worker will report the job's end (no polling needed)."""
        w = self.site.existing_worker()
        owner = self.site.spawned.get(job_id)
        return owner is not None and w is not None and w.pid == owner

    @staticmethod
    def _from_exit_file(job_id: str, job_dir: Path) -> JobStatus | None:
        try:
            code = int((job_dir / EXIT_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        return exit_status(job_id, code, (job_dir / CANCEL_FILE).exists())

    def cancel(self, ctx: JobContext) -> bool:
        job_dir = self.site.host.job_dir(ctx.job_id, create=False)
        if (job_dir / EXIT_FILE).exists():
            return False
        w = self.site.existing_worker()
        if w is not None and self.supervises(ctx.job_id):
            return bool(w.request("cancel", {"job": ctx.job_id, "job_dir": str(job_dir),
                                             "grace": CANCEL_GRACE}))
        # another process started it: signal its process group directly
        if not process_alive(ctx.native_id):
            return False
        pid = parse_native(ctx.native_id)[0]  # type: ignore[index]
        write_atomic(str(job_dir / CANCEL_FILE), "1\n")
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        # not a daemon: a short-lived canceller (the CLI) still escalates to SIGKILL
        # if the job ignores SIGTERM; the thread ends as soon as the job is gone
        threading.Thread(target=_escalate, args=(ctx.native_id, pid)).start()
        return True

    def log(self, ctx: JobContext) -> str:
        job_dir = self.site.host.job_dir(ctx.job_id, create=False)
        parts = []
        for name in ("stdout", "stderr"):
            f = job_dir / name
            if f.exists():
                parts.append(f.read_text(errors="replace"))
        return "".join(parts)


def _escalate(native_id: str, pid: int) -> None:
    deadline = time.monotonic() + CANCEL_GRACE
    while time.monotonic() < deadline:
        if not process_alive(native_id):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class VenvSite(Site):
    """A local site whose jobs and driver calls run in the site's own virtualenv."""

    def __init__(self, host: SiteHost):
        super().__init__(host)
        cfg = host.config
        self.requirements = _str_list(cfg.get("requirements"), f"[sites.{host.name}] requirements")
        self.python = str(cfg.get("python") or sys.executable)
        self.venv_dir = host.home / Path(cfg.get("venv_dir") or Path("venvs") / host.name).expanduser()
        self.driver_class = cfg.get("driver_class")
        self.driver_options = cfg.get("driver_options") or {}
        if self.driver_class is not None and (not isinstance(self.driver_class, str)
                                              or ":" not in self.driver_class):
            raise ConfigError(f"[sites.{host.name}] driver_class must be 'module:Class'")
        if not isinstance(self.driver_options, dict):
            raise ConfigError(f"[sites.{host.name}] driver_options must be a table")
        self.pythonpath = [str((host.home / Path(p).expanduser()).resolve()) for p in
                           _str_list(cfg.get("pythonpath"), f"[sites.{host.name}] pythonpath")]
        try:
            self.build_timeout = float(cfg.get("build_timeout", 900))
        except (TypeError, ValueError):
            raise ConfigError(f"[sites.{host.name}] build_timeout must be seconds") from None
        self.system_site_packages = cfg.get("system_site_packages", False)
        if not isinstance(self.system_site_packages, bool):
            raise ConfigError(f"[sites.{host.name}] system_site_packages must be true or false")
        self.auth = NoAuth()
        self.run = VenvRun(self)
        self.repo = LocalRepo(host)
        self.spin = StaticSpin(_str_list(cfg.get("compute_types", ["default"]),
                                         f"[sites.{host.name}] compute_types"))
        self.spawned: dict[str, int | None] = {}   # running job id -> pid of the worker running it
        self.spawned_lock = threading.Lock()
        self._worker: WorkerClient | None = None
        self._lock = threading.Lock()

    def ensure(self) -> bool:
        """Build the venv unless a current one exists; True if it was (re)built."""
        return build.ensure_venv(self.venv_dir, self.requirements, self.python,
                                 site=self.name, timeout=self.build_timeout,
                                 system_site_packages=self.system_site_packages)

    def existing_worker(self) -> WorkerClient | None:
        return self._worker

    def worker(self) -> WorkerClient:
        """The site's worker, building the venv and starting it on first use."""
        with self._lock:
            if self._worker is None:
                self.ensure()
                env = worker_env(self.venv_dir)
                if self.pythonpath:
                    env["PYTHONPATH"] = os.pathsep.join(
                        self.pythonpath + [p for p in [env.get("PYTHONPATH")] if p])
                self._worker = WorkerClient(
                    build.venv_python(self.venv_dir), env,
                    self.venv_dir / "worker.log", self._on_event, site=self.name)
            return self._worker

    def _on_event(self, msg: dict[str, Any]) -> None:
        if msg.get("event") == "exit" and isinstance(msg.get("job"), str):
            with self.spawned_lock:
                self.spawned.pop(msg["job"], None)
            self.host.report(exit_status(msg["job"], int(msg.get("code", -1)),
                                             bool(msg.get("cancelled"))))

    def ping(self, *distributions: str) -> dict[str, Any]:
        """Where the driver's calls run: python version, sys.prefix, worker pid, dist versions."""
        return self.worker().request("ping", {"distributions": list(distributions)})

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a public method of the configured ``driver_class`` inside the venv (JSON in/out)."""
        if not self.driver_class:
            raise NotSupported(f"venv site {self.name!r} has no driver_class configured")
        return self.worker().request("call", {
            "driver_class": self.driver_class, "method": method, "args": list(args),
            "kwargs": kwargs, "options": self.driver_options})

    def close(self) -> None:
        w, self._worker = self._worker, None
        if w is not None:
            w.close(timeout=0.0 if self.spawned else 2.0)
