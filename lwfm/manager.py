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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from . import config as _config
from .context import USER, adopt_context
from .data import DataVerbs
from .errors import LwfmError, NotFound
from .futures import Callbacks
from .loop import LoopHost, ManagerLoop
from .model import (DataObject, Job, JobContext, JobDefn, JobStatus, LogRecord, State, Workflow,
                    check_json)
from .recorder import Recorder
from .runner import JobRunner
from .registry import make_site
from .retry import first_retry
from .site import Site, SiteHost
from .store import Store
from .triggers import TriggerEngine, TriggerHost, check_no_secret
from .job_verbs import JobVerbs
from .verbs import TriggerVerbs

if TYPE_CHECKING:
    from .provenance import ProvenanceGraph

log = logging.getLogger("lwfm")
_JOIN_S = 30.0   # how long close waits for the loop thread (it may be in a site call)


class Manager(JobVerbs, DataVerbs, TriggerVerbs):
    """Submit, track and link jobs and data across sites."""

    def __init__(self, home: str | os.PathLike[str] | None = None):
        self.config = _config.load(home)
        self.store = Store(self.config.store_url)
        self._closed = False        # set first in close(): the public verbs refuse
        self._sites_closed = False  # set once the sites are closed: nothing may reopen one
        self._sites: dict[str, Site] = {}
        self._changed = threading.Condition()
        self._lock = threading.RLock()
        self._submits = 0  # submit_job calls under way, in any thread: close waits for them
        self._submits_done = threading.Condition(self._lock)
        self._loop: threading.Thread | None = None
        self._stop = threading.Event()
        self._graph: ProvenanceGraph | None = None
        self._rec = Recorder(self.store, self._written)
        self.runner = JobRunner(self.store, self._rec, self._site, self.site_names)
        self._context: JobContext | None = None
        self._context_known = False
        self._callbacks_: Callbacks | None = None
        self.triggers = TriggerEngine(TriggerHost(
            store=self.store, flush=self.flush, site_names=self.site_names,
            check_request=lambda defn: self.site(defn.site).check_request(defn),
            context=lambda: self.context, record_log=self.record_log,
            launch=lambda job: self.runner.launch(job, confirm=True), record=self.runner.record))

    @property
    def closed(self) -> bool:
        return self._closed

    def ensure_open(self) -> None:
        """Refuse to work after close (nothing closed may be reopened)."""
        if self._closed:
            raise LwfmError("this Manager is closed; open a new one")

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
        self.ensure_open()
        return self._site(name)

    def _site(self, name: str) -> Site:
        """The site, also while closing (the starter finishes its starts), never after."""
        with self._lock:
            if self._sites_closed:
                raise LwfmError("this Manager is closed; open a new one")
            if name not in self._sites:
                host = SiteHost(name=name, home=self.home, config=self.config.site_config(name),
                                report=self.runner.report, instance_id=self.instance_id,
                                lookup_data=self.store.get_data, record_data=self._site_data)
                self._sites[name] = make_site(self.config, name, host)
            return self._sites[name]

    def _site_data(self, d: DataObject) -> DataObject:
        """A driver records data its job used or produced (``d.job_id``), as a put would."""
        ctx, wf = self._data_context(d.job_id)
        return self._notate(d, None, ctx, wf)

    def site_names(self) -> list[str]:
        return sorted(set(self.config.sites) | {"local"})

    # -- run --------------------------------------------------------------------------
    def submit_job(self, defn: JobDefn, *, parent_id: str | None = None,
                   workflow_id: str | None = None, job_id: str | None = None,
                   triggered_by: str | None = None) -> Job:
        """Record, then start a job on ``defn.site``; returns it (state RUNNING or later).

        The job's row is written before its site is asked: if it cannot be recorded
        (disk full), this raises and nothing runs. A ``job_id`` given here was handed out
        before the job existed: if the job cannot even be made (its site or workflow gone),
        it is recorded FAILED, so whoever waits on that id sees it end. A ``close`` from
        another thread meanwhile waits until this has recorded how the start went."""
        with self._lock:
            self.ensure_open()
            self._submits += 1
        try:
            return self._submit_job(defn, parent_id, workflow_id, job_id, triggered_by)
        finally:
            with self._lock:
                self._submits -= 1
                self._submits_done.notify_all()

    def _submit_job(self, defn: JobDefn, parent_id: str | None, workflow_id: str | None,
                    job_id: str | None, triggered_by: str | None) -> Job:
        defn.check_plain()
        if defn.retries is not None and defn.retries.count:
            check_no_secret(defn, "a job with retries")  # its retry trigger stores it
        try:
            site = self.site(defn.site)
            site.check_request(defn)  # what it cannot honour is refused before any record
            job = self._new_job(defn, parent_id, workflow_id, job_id, triggered_by)
        except Exception as e:
            if job_id is not None:
                self._record_unstarted(defn, job_id, str(e), workflow_id, triggered_by)
            raise
        self.runner.insert(job, JobStatus(job.id, State.PENDING))
        if (retry := first_retry(job)) is not None:  # before it can end: retried once it does
            self.store.add_trigger(retry)
            self.triggers.added()
        st = self.runner.launch(job, site)
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
        return Job(defn=defn, context=ctx, triggered_by=triggered_by, submitter=USER,
                   launcher=self.triggers.claim)

    def _record_unstarted(self, defn: JobDefn, job_id: str, reason: str,
                          workflow_id: str | None, triggered_by: str | None) -> None:
        if workflow_id is not None:
            try:
                self.store.get_workflow(workflow_id)
            except NotFound:
                workflow_id = None  # the workflow is what is gone
        ctx = JobContext(workflow_id=workflow_id, site=defn.site, job_id=job_id)
        job = Job(defn=defn, context=ctx, triggered_by=triggered_by, submitter=USER)
        self.runner.insert(job, JobStatus(job_id, State.FAILED, info=f"could not start: {reason}"))

    def _wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _written(self, results: list[tuple[str, State | None, bool]]) -> None:
        """After each group commit: wake waiters, then fire what the changes enable (store
        work only: the fired jobs start on the starter's thread, not this writer's)."""
        self._wake()
        if self.triggers.any_pending():
            for job_id in dict.fromkeys(j for j, _, changed in results if changed):
                self.triggers.on_job_change(job_id)

    def flush(self) -> None:
        """Wait until this process's queued writes are in the store."""
        self.ensure_open()
        self._rec.flush()

    def report_status(self, state: State | str, info: str | None = None,
                      job_id: str | None = None) -> None:
        """Record a status (e.g. INFO progress) for a job, by default the one we run in."""
        jid = job_id or (self.context.job_id if self.context else None)
        if jid is None:
            raise LwfmError("report_status needs a job id outside an lwfm job")
        self.runner.record(JobStatus(jid, State(state), info=info))

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

    # -- the manager loop -------------------------------------------------------------
    def _ensure_loop(self) -> None:
        with self._lock:
            self.ensure_open()
            if self._loop is None:
                self._loop = threading.Thread(target=self._serve, args=(self._stop, 0.05),
                                              name="lwfm-manager-loop", daemon=True)
                self._loop.start()

    def serve(self, stop: threading.Event | None = None, interval: float = 0.05) -> None:
        """Pick up what other processes recorded: fire triggers, start fired jobs that a
        stopped process left, poll jobs no one reports."""
        self.ensure_open()
        self._serve(stop or threading.Event(), interval)

    def _serve(self, stop: threading.Event, interval: float) -> None:
        host = LoopHost(store=self.store, triggers=self.triggers, wake=self._wake,
                        reconcile=self.runner.reconcile)
        ManagerLoop(host, interval).run(stop)

    # -- provenance -------------------------------------------------------------------
    def open_graph(self, sync: bool = True) -> "ProvenanceGraph":
        """The provenance graph, synced with the store first unless ``sync`` is False
        (``lwfm reindex`` rebuilds it anyway)."""
        self.ensure_open()
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
        """Stop everything this Manager started, in order: the loop (which fires and
        polls), then what the writes still queued fire (the starter starts what is
        queued for a while and leaves the rest to the next process), the recorder, the
        sites, the graph, the store. Afterwards every verb refuses."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # A submit under way in another thread records how its start went first: its
            # site may take a while (an SSH connect), and a start nobody recorded would be
            # settled later as "may have run".
            if not self._submits_done.wait_for(lambda: self._submits == 0, _JOIN_S):
                log.error("closing while %d submit(s) in other threads still start their "
                          "jobs (after %.0f s); the next Manager settles what they leave",
                          self._submits, _JOIN_S)
        self._stop.set()
        if self._callbacks_ is not None:
            self._callbacks_.close()
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join(_JOIN_S)
            if self._loop.is_alive():
                log.error("the manager loop did not stop within %.0f s", _JOIN_S)
        try:
            self._rec.flush()  # what the queued writes fire reaches the starter
        except LwfmError as e:
            log.error("closing: %s", e)  # (the recorder keeps retrying them at its close)
        self.triggers.close()
        self._rec.close()
        with self._lock:
            self._sites_closed = True
            sites = list(self._sites.values())
        for s in sites:
            s.close()
        if self._graph is not None:
            self._graph.close()
        self.store.close()

    def __enter__(self) -> "Manager":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

