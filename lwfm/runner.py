"""Jobs on their sites: recorded before they start, started, and kept up to date.

The Manager's run verbs sit on this. It writes a new job's row before asking its site
(a job that cannot be recorded does not run), starts it, and keeps each job's reports in
order (a fast job's end may arrive before its start is queued). For jobs no process
reports (detached, remote) it asks the site: once per job on demand (``refresh``), or
for all of them (``reconcile``: the manager loop at each site's pace, a listing at once).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, NoReturn

from sqlalchemy import select

from .errors import ConfigError, InvalidInput, LwfmError, NotFound, SiteError
from .model import Job, JobStatus, State
from .recorder import Recorder
from .site import Site
from .store import Store, t

log = logging.getLogger("lwfm")
_GRACE_S = 10.0  # how long a vanished process may wait for its supervisor's report
_ACTIVE = [s.value for s in (State.READY, State.PENDING, State.RUNNING, State.FINISHING)]


class JobRunner:
    """Records, starts and refreshes jobs for one Manager."""

    def __init__(self, store: Store, rec: Recorder, site: Callable[[str], Site],
                 site_names: Callable[[], list[str]]):
        self.store = store
        self._rec = rec
        self._site = site
        self._site_names = site_names
        self._lock = threading.Lock()
        self._inflight: dict[str, list[JobStatus]] = {}
        self._polled: dict[str, tuple[State, str | None, str | None]] = {}
        self._unknown_since: dict[str, float] = {}  # job id -> when this process first got UNKNOWN

    def insert(self, job: Job, first: JobStatus) -> None:
        """Write a new job's row now, before it runs; raise if it cannot be written. The row
        goes alone, in a small transaction (the submit hot path); its first status follows
        through the group commit, in order before any later report of the job."""
        job.state = job.state or first.state
        try:
            self._rec.write_alone(("job", (job, None)))
        except (InvalidInput, NotFound):
            raise
        except LwfmError as e:
            raise LwfmError(f"{e}; so job {job.id} was not started") from e
        self._rec.put(("status", (first, None)))

    def launch(self, job: Job, site: Site | None = None, confirm: bool = False) -> JobStatus:
        """Start a recorded job on its site and record its first status (``confirm``: and
        wait until it is written). If it cannot start, it is recorded FAILED and this
        raises. The site's reports of this job wait until its first status is queued."""
        ctx = job.context
        with self._lock:
            self._inflight[ctx.job_id] = []
        try:
            try:
                site = site or self._site(job.defn.site)
                st = site.jobs.submit(job.defn, ctx)
            except Exception as e:
                self._failed_to_start(job, e)
            except BaseException:  # Ctrl-C while its site started it: end it, then stop
                self._interrupted(job)
                raise
            op = ("status", (st, ctx.native_id))
            if not confirm:
                self._rec.put(op)
            else:
                try:
                    self._rec.write(op)
                except LwfmError as e:  # it runs: its start is kept and retried, not lost
                    log.warning("job %s started; recording that waits for the store: %s",
                                ctx.job_id, e)
                    self._rec.put(op)
        finally:
            with self._lock:
                late = self._inflight.pop(ctx.job_id, [])
            for s_ in late:
                self.report(s_)
        return st

    def _failed_to_start(self, job: Job, e: Exception) -> NoReturn:
        err = e if isinstance(e, LwfmError) else SiteError(
            f"site {job.defn.site!r} could not start the job: {e}")
        try:
            self.record(JobStatus(job.id, State.FAILED, info=f"could not start: {e}"))
        except LwfmError as rec:
            raise LwfmError(f"{err}; and its failure could not be recorded: {rec}") from e
        raise err from (None if err is e else e)

    def _interrupted(self, job: Job) -> None:
        try:
            self.record(JobStatus(job.id, State.FAILED, info=(
                "interrupted while its site started it: it may have run (its log tells), "
                "and it is not started again")))
        except LwfmError as e:  # the claim on its row ends it once this process is gone
            log.warning("job %s was interrupted while starting; not recorded: %s", job.id, e)

    def report(self, st: JobStatus) -> None:
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

    def record(self, st: JobStatus) -> None:
        """Record a status and wait until it is written; raise if it was not."""
        self._rec.write(("status", (st, None)))

    def refreshed(self, job: Job) -> Job:
        """``job`` as it is now: asks its site if it is still going and nothing reports it."""
        if job.state is not None and job.state.terminal:
            return job
        return self.store.get_job(job.id) if self.refresh(job) else job

    def reconcile(self, due: Callable[[str, float], bool] | None = None) -> int:
        """Ask the sites of active jobs no process reports (``due``: which now); returns
        how many changed. A site that cannot answer is logged and the others still asked;
        a store that cannot take what changed (a full disk) ends the round, logged: what
        is listed then is the state as last recorded."""
        self._rec.flush()
        with self.store.read() as c:
            rows = c.execute(select(t.jobs.c.id, t.jobs.c.site).where(
                t.jobs.c.state.in_(_ACTIVE), t.jobs.c.native_id.is_not(None))).all()
        configured = set(self._site_names())
        changed = 0
        for job_id, site_name in rows:
            if site_name not in configured:
                continue  # a site configured elsewhere (imported job): nothing to ask
            try:
                run = self._site(site_name).jobs
                if run.supervises(job_id):
                    continue  # this process reports it as it moves
                if due is None or due(job_id, run.poll_interval):
                    changed += self.refresh(self.store.get_job(job_id))
            except (SiteError, ConfigError) as e:
                log.warning("could not ask site %r about job %s: %s", site_name, job_id, e)
            except LwfmError as e:
                log.warning("job states are as last recorded: %s", e)
                break
        return changed

    def refresh(self, job: Job) -> bool:
        """Ask the job's site; record and return True if that changed anything."""
        try:
            site = self._site(job.context.site)
        except LwfmError:
            return False  # a site configured elsewhere (imported job): nothing to ask
        if site.jobs.supervises(job.id) or not job.context.native_id:
            return False
        st = site.jobs.status(job.context)
        if st.state is not State.UNKNOWN:
            with self._lock:
                self._unknown_since.pop(job.id, None)
        if st.state is job.state:
            return False
        if st.state is State.UNKNOWN:
            # Its supervisor (another process) may be about to record the end, or its exit
            # file be on its way: only an answer that stays UNKNOWN for the whole grace, as
            # this process saw it, means the outcome is lost. Judged from the first time
            # this process saw it, not from the start: a job that ran long then ended is
            # not failed on the first look, while its owner's report is still queued.
            now_m = time.monotonic()
            with self._lock:
                first = self._unknown_since.setdefault(job.id, now_m)
            if now_m - first < _GRACE_S:
                return False
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
        self.record(st)
        return True

