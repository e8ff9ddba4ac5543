"""The Manager: one Python facade over sites, the store, triggers and the graph.

A Manager is cheap to open and safe to open in many processes at once over the same
home: the submitting workflow, the jobs it starts (which find their context in
``LWFM_JOB_ID``), ``lwfm serve``, and the CLI.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from . import config as _config
from .context import USER, adopt_context, env_job_id
from .data import DataVerbs
from .errors import LwfmError, NotFound, SiteError
from .model import (Job, JobContext, JobDefn, JobStatus, LogRecord, State, Trigger, TriggerKind,
                    Workflow, check_json)
from .recorder import Recorder
from .registry import make_site
from .site import Site, SiteHost
from .store import Store
from .triggers import TriggerEngine, parse_states

if TYPE_CHECKING:
    from .provenance import ProvenanceGraph

log = logging.getLogger("lwfm")
_GRACE_S = 10.0  # how long a vanished process may wait for its supervisor's report


class Manager(DataVerbs):
    """Submit, track and link jobs and data across sites."""

    def __init__(self, home: str | os.PathLike[str] | None = None):
        self.config = _config.load(home)
        self.store = Store(self.config.store_url)
        self.triggers = TriggerEngine(self)
        self._sites: dict[str, Site] = {}
        self._changed = threading.Condition()
        self._inflight: dict[str, list[JobStatus]] = {}
        self._polled: dict[str, tuple[State, str | None, str | None]] = {}
        self._lock = threading.RLock()
        self._loop: threading.Thread | None = None
        self._stop = threading.Event()
        self._graph: ProvenanceGraph | None = None
        self._rec = Recorder(self.store, self._written)
        self._context: JobContext | None = None
        self._context_known = False

    @property
    def context(self) -> JobContext | None:
        """The job this process runs in (``LWFM_JOB_ID``), looked up, or adopted when another
        instance launched it, on first use: a read-only command records no job."""
        with self._lock:
            if not self._context_known:
                self._context = adopt_context(self.store)
                self._context_known = True
            return self._context

    @property
    def instance_id(self) -> str:
        return self.store.instance_id

    @property
    def home(self) -> Path:
        return self.config.home

    # -- sites ------------------------------------------------------------------------
    def site(self, name: str) -> Site:
        with self._lock:
            if name not in self._sites:
                host = SiteHost(name=name, home=self.home, config=self.config.site_config(name),
                                report=self._report, instance_id=self.instance_id)
                site = make_site(self.config, name, host)
                if env_job_id() and getattr(site, "detach", None) is False:
                    # We run inside a job, which may exit before what it starts: those
                    # jobs must record their own end (the detached path).
                    site.detach = True  # type: ignore[attr-defined]
                self._sites[name] = site
            return self._sites[name]

    def site_names(self) -> list[str]:
        return sorted(set(self.config.sites) | {"local"})

    # -- run --------------------------------------------------------------------------
    def submit(self, defn: JobDefn, *, parent_id: str | None = None, workflow_id: str | None = None,
               job_id: str | None = None, triggered_by: str | None = None) -> Job:
        """Record and start a job on ``defn.site``; returns it (state RUNNING or later).

        A ``job_id`` given here was handed out before the job existed (a trigger's): if the
        job cannot even be recorded (its site or workflow gone), it is recorded FAILED,
        so whoever waits on that id sees it end."""
        defn.check_plain()
        try:
            site = self.site(defn.site)
            job = self._new_job(defn, parent_id, workflow_id, job_id, triggered_by)
        except Exception as e:
            if job_id is not None:
                self._record_unstarted(defn, job_id, str(e), workflow_id, triggered_by)
            raise
        ctx = job.context
        with self._lock:
            self._inflight[ctx.job_id] = []
        try:
            self._rec.put(("job", (job, JobStatus(ctx.job_id, State.PENDING))))
            try:
                st = site.run.submit(defn, ctx)
            except Exception as e:
                self._rec.put(("status", (JobStatus(ctx.job_id, State.FAILED,
                                                    info=f"could not start: {e}"), None)))
                self._rec.flush()
                if isinstance(e, LwfmError):
                    raise
                raise SiteError(f"site {defn.site!r} could not start the job: {e}") from e
            self._rec.put(("status", (st, ctx.native_id)))
        finally:
            with self._lock:
                late = self._inflight.pop(ctx.job_id, [])
        for s_ in late:
            self._rec.put(("status", (s_, None)))
        # The queued Job may not be written yet: hand back a copy, never mutate it.
        return dataclasses.replace(job, state=st.state)

    def _new_job(self, defn: JobDefn, parent_id: str | None, workflow_id: str | None,
                 job_id: str | None, triggered_by: str | None) -> Job:
        """The job to record: linked to its parent (default: the job we run in), which
        gives its originator and, unless given, its workflow."""
        if parent_id is None and self.context is not None:
            parent_id = self.context.job_id
        originator = None
        if parent_id is not None:
            self._rec.flush()
            parent = self.store.get_job(parent_id).context
            originator = parent.originator_id
            workflow_id = workflow_id or parent.workflow_id
        if workflow_id is not None:
            self.store.get_workflow(workflow_id)
        ctx = JobContext(parent_id=parent_id, originator_id=originator, workflow_id=workflow_id,
                         site=defn.site, **({"job_id": job_id} if job_id else {}))
        return Job(defn=defn, context=ctx, triggered_by=triggered_by, submitter=USER)

    def _record_unstarted(self, defn: JobDefn, job_id: str, reason: str,
                          workflow_id: str | None, triggered_by: str | None) -> None:
        if workflow_id is not None:
            try:
                self.store.get_workflow(workflow_id)
            except NotFound:
                workflow_id = None  # the workflow is what is gone
        ctx = JobContext(workflow_id=workflow_id, site=defn.site, job_id=job_id)
        job = Job(defn=defn, context=ctx, triggered_by=triggered_by, submitter=USER)
        self._rec.put(("job", (job, JobStatus(job_id, State.FAILED, info=f"could not start: {reason}"))))
        self._rec.flush()

    def _report(self, st: JobStatus) -> None:
        """Drivers call this (from any thread) when a job moves."""
        with self._lock:
            if st.job_id in self._inflight:  # its submit() is still recording; keep order
                self._inflight[st.job_id].append(st)
                return
        try:
            self._rec.put(("status", (st, None)))
        except LwfmError:
            if not self._rec.closed:
                raise
            # The job outlived this Manager: a detached job's exit file tells the others.
            log.debug("job %s ended (%s) after its Manager closed", st.job_id, st.state.value)

    def _record(self, st: JobStatus) -> None:
        """Record a status and wait until it is written (callers read it back)."""
        self._rec.put(("status", (st, None)))
        self._rec.flush()

    def _written(self, results: list[tuple[str, State | None, bool]]) -> None:
        """After each group commit: wake waiters, then fire what the changes enable."""
        with self._changed:
            self._changed.notify_all()
        if self.triggers.any_pending():
            for job_id in dict.fromkeys(j for j, _, changed in results if changed):
                self.triggers.on_job_change(job_id)

    def flush(self) -> None:
        """Wait until this process's queued writes are in the store."""
        self._rec.flush()

    def report_status(self, state: State | str, info: str | None = None,
                      job_id: str | None = None) -> None:
        """Record a status (e.g. INFO progress) for a job, by default the one we run in."""
        jid = job_id or (self.context.job_id if self.context else None)
        if jid is None:
            raise LwfmError("report_status needs a job id outside an lwfm job")
        self._record(JobStatus(jid, State(state), info=info))

    def status(self, job_id: str) -> Job:
        """The job as recorded, refreshed from its site when nothing else will report it."""
        self._rec.flush()
        return self._refreshed(self.store.get_job(job_id))

    def _refreshed(self, job: Job) -> Job:
        """``job`` as it is now: asks its site if it is still going and nothing reports it."""
        if job.state is not None and job.state.terminal:
            return job
        return self.store.get_job(job.id) if self._refresh(job) else job

    def _refresh(self, job: Job) -> bool:
        """Ask the job's site; record and return True if that changed anything."""
        try:
            site = self.site(job.context.site)
        except LwfmError:
            return False  # a site configured elsewhere (imported job): nothing to ask
        if getattr(site.run, "supervises", lambda _j: False)(job.id) or not job.context.native_id:
            return False
        st = site.run.status(job.context)
        if st.state is job.state:
            return False
        if st.state is State.UNKNOWN:
            if job.started and time.time() - job.started.timestamp() < _GRACE_S:
                return False  # its supervisor may not have recorded the exit yet (ask again)
            # Its supervisor died with it: the outcome is lost. End it, so waits return.
            st = JobStatus(job.id, State.FAILED, native_state=st.native_state,
                           info=f"{st.info} (recorded as FAILED)")
        seen = (st.state, st.info, st.native_state)
        with self._lock:  # the loop and a waiter may poll the same job: report a change once
            if self._polled.get(job.id) == seen:
                return False
            self._polled[job.id] = seen
        self._rec.flush()  # the job's supervisor may have reported meanwhile: its word wins
        now = self.store.get_job(job.id).state
        if now is st.state or (now is not None and now.terminal):
            return False
        self._record(st)
        return True

    def history(self, job_id: str) -> list[JobStatus]:
        self._rec.flush()
        return self.store.history(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is terminal. Event-driven for jobs this process runs; others
        are polled with a backoff bounded by their site's poll interval."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        self._ensure_loop()
        while True:
            self._rec.flush()
            job = self.triggers.job_or_future(job_id)
            if job is not None:
                job = self._refreshed(job)
                if job.state is not None and job.state.terminal:
                    return job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                now = job.state.value if job and job.state else "waiting for its trigger"
                raise TimeoutError(f"job {job_id} is still {now} after {timeout} s")
            step = delay if left is None else min(delay, left)
            with self._changed:
                self._changed.wait(step)
            try:
                cap = self.site(job.context.site).run.poll_interval if job else 0.5
            except LwfmError:
                cap = 1.0
            delay = min(delay * 2, cap)

    def wait_all(self, job_ids: Iterable[str], timeout: float | None = None) -> list[Job]:
        """Wait for many jobs: one query per pass finds those already ended, and a full
        :meth:`wait` on the first one still going covers polling, futures and dead triggers."""
        ids = list(job_ids)
        pending = list(dict.fromkeys(ids))
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            self._rec.flush()
            done = self.store.terminal_among(pending)
            pending = [j for j in pending if j not in done]
            if pending:
                self.wait(pending[0], None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.store.get_jobs(ids)

    def cancel(self, job_id: str) -> bool:
        """Stop a job on its site and record CANCELLED. False if it had already ended.

        A job a pending trigger has yet to start is cancelled by retiring the trigger
        (dead, "cancelled by user"), so triggers chained on that job see it end."""
        self._rec.flush()
        try:
            job = self.store.get_job(job_id)
        except NotFound:
            retired = self.triggers.retire(job_id)
            if retired is not None:
                return retired
            job = self.triggers.fired_job(job_id)
        if job.state is not None and job.state.terminal:
            return False
        stopped = True
        if job.context.native_id:
            stopped = self.site(job.context.site).run.cancel(job.context)
        if stopped:
            self._record(JobStatus(job_id, State.CANCELLED, info="cancelled by user"))
        return stopped

    def log(self, job_id: str) -> str:
        self._rec.flush()
        job = self.triggers.job_or_future(job_id)
        if job is None:
            raise LwfmError(f"job {job_id} has no output yet: its trigger has not fired")
        return self.site(job.context.site).run.log(job.context)

    # -- workflows and logs -----------------------------------------------------------
    def create_workflow(self, name: str, description: str = "",
                        props: Mapping[str, Any] | None = None) -> Workflow:
        check_json(dict(props or {}), "workflow props")
        return self.store.add_workflow(Workflow(name=name, description=description,
                                                props=dict(props or {})))

    def workflows(self, name: str | None = None) -> list[Workflow]:
        return self.store.find_workflows(name)

    def record_log(self, message: str, level: str = "INFO", job_id: str | None = None,
                   workflow_id: str | None = None) -> None:
        """A log line linked to a job and workflow (default: the job we run in)."""
        if job_id is None and self.context is not None:
            job_id, workflow_id = self.context.job_id, workflow_id or self.context.workflow_id
        level = level.upper()
        self.store.add_log(LogRecord(message=message, level=level, job_id=job_id,
                                     workflow_id=workflow_id))
        num = logging.getLevelName(level)  # a number for a known level name, else a string
        log.log(num if isinstance(num, int) else logging.INFO, message)

    # -- triggers ---------------------------------------------------------------------
    def on(self, job_id: str, defn: JobDefn, states: Iterable[State | str] = (State.COMPLETE,),
           **kw: Any) -> Trigger:
        """Run ``defn`` when ``job_id`` reaches one of ``states`` ("terminal" = any end)."""
        return self.triggers.add(Trigger(kind=TriggerKind.JOB, watch=[job_id], defn=defn,
                                         states=parse_states(states), **kw))

    def on_all(self, job_ids: Iterable[str], defn: JobDefn,
               states: Iterable[State | str] = (State.COMPLETE,), **kw: Any) -> Trigger:
        """Join: run ``defn`` when every job reaches one of ``states``."""
        return self.triggers.add(Trigger(kind=TriggerKind.ALL, watch=list(job_ids), defn=defn,
                                         states=parse_states(states), **kw))

    def on_any(self, job_ids: Iterable[str], defn: JobDefn,
               states: Iterable[State | str] = (State.COMPLETE,), **kw: Any) -> Trigger:
        return self.triggers.add(Trigger(kind=TriggerKind.ANY, watch=list(job_ids), defn=defn,
                                         states=parse_states(states), **kw))

    def on_data(self, pattern: Mapping[str, Any], defn: JobDefn, **kw: Any) -> Trigger:
        """Run ``defn`` when data whose metadata matches ``pattern`` is put."""
        return self.triggers.add(Trigger(kind=TriggerKind.DATA, pattern=dict(pattern), defn=defn,
                                         **kw))

    # -- the manager loop -------------------------------------------------------------
    def _ensure_loop(self) -> None:
        with self._lock:
            if self._loop is None:
                self._loop = threading.Thread(target=self.serve, kwargs={"stop": self._stop},
                                              name="lwfm-manager-loop", daemon=True)
                self._loop.start()

    def serve(self, stop: threading.Event | None = None, interval: float = 0.05) -> None:
        """Pick up what other processes recorded: fire triggers, poll jobs no one reports."""
        from .loop import ManagerLoop
        ManagerLoop(self, interval).run(stop or threading.Event())

    # -- provenance -------------------------------------------------------------------
    def open_graph(self, sync: bool = True) -> "ProvenanceGraph":
        """The provenance graph, synced with the store first unless ``sync`` is False
        (``lwfm reindex`` rebuilds it anyway)."""
        if self._graph is None:
            from .provenance import ProvenanceGraph
            self._graph = ProvenanceGraph(self.config, self.store)
        self._rec.flush()  # statuses queued by the group commit reach SQL first
        if sync:
            self._graph.sync()
        return self._graph

    @property
    def graph(self) -> "ProvenanceGraph":
        """The provenance graph, synced with the store."""
        return self.open_graph()

    def close(self) -> None:
        self._rec.close()
        self._stop.set()
        for s in self._sites.values():
            s.close()
        if self._graph is not None:
            self._graph.close()
        self.store.close()

    def __enter__(self) -> "Manager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

