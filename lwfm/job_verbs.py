"""The Manager's verbs on jobs already submitted: status, history, wait, cancel, log.

Each tells the truth about a job wherever it is: running here, detached, on a remote
site, or fired by a trigger and not started yet (the trigger engine answers for those).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterable

from .errors import LwfmError, NotFound
from .model import Job, JobStatus, State
from .verbs import JobRef, job_id_of

if TYPE_CHECKING:
    import threading

    from .recorder import Recorder
    from .runner import JobRunner
    from .site import Site
    from .store import Store
    from .triggers import TriggerEngine


class JobVerbs:
    """Mixed into the Manager."""

    if TYPE_CHECKING:
        store: Store
        triggers: TriggerEngine
        runner: JobRunner
        _rec: Recorder
        _changed: threading.Condition

        def ensure_open(self) -> None: ...
        def flush(self) -> None: ...
        def site(self, name: str) -> Site: ...
        def _site(self, name: str) -> Site: ...
        def _wake(self) -> None: ...
        def _ensure_loop(self) -> None: ...

    def status(self, job_id: JobRef) -> Job:
        """The job as recorded, refreshed from its site when nothing else will report it."""
        job_id = job_id_of(job_id)
        self.flush()
        job = self.store.get_job(job_id)
        if self.triggers.settle_unstarted(job):  # its submitter died before starting it
            self.flush()
            job = self.store.get_job(job_id)
        return self.runner.refreshed(job)

    def reconcile(self, due: Callable[[str, float], bool] | None = None) -> int:
        """Bring the recorded states of active jobs that no process reports (detached,
        remote) up to date with their sites, so a listing shows no finished job as
        running. ``due(job_id, poll_interval)``: which to ask now (the loop's pace);
        default all. Returns how many changed. A site that cannot answer is logged."""
        self.ensure_open()
        return self.runner.reconcile(due)

    def history(self, job_id: JobRef) -> list[JobStatus]:
        self.flush()
        return self.store.history(job_id_of(job_id))

    def wait(self, job_id: JobRef, timeout: float | None = None) -> Job:
        """Block until the job is terminal. Event-driven for jobs this process runs; others
        are polled with a backoff bounded by their site's poll interval. (This attempt:
        ``future(job_id).wait()`` follows a job's retries.)"""
        job_id = job_id_of(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        self._ensure_loop()  # it also starts fired jobs that a stopped process left
        while True:
            self._rec.flush()
            job = self.triggers.job_or_future(job_id)
            if job is not None:
                job = self.runner.refreshed(job)
                if job.state is not None and job.state.terminal:
                    return job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                now = job.state.value if job and job.state else "waiting for its trigger"
                note = self.triggers.note(job_id) if job else None
                raise TimeoutError(f"job {job_id} is still {now} after {timeout} s"
                                   + (f": {note}" if note else ""))
            step = delay if left is None else min(delay, left)
            with self._changed:
                self._changed.wait(step)
            try:
                cap = self._site(job.context.site).jobs.poll_interval if job else 0.5
            except LwfmError:
                cap = 1.0
            delay = min(delay * 2, cap)

    def wait_all(self, job_ids: Iterable[JobRef], timeout: float | None = None) -> list[Job]:
        """Wait for many jobs: one query per pass finds those already ended, and a full
        :meth:`wait` on the first one still going covers polling, futures and dead triggers."""
        ids = [job_id_of(j) for j in job_ids]
        pending = list(dict.fromkeys(ids))
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            self._rec.flush()
            done = self.store.terminal_among(pending)
            pending = [j for j in pending if j not in done]
            if pending:
                self.wait(pending[0], None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.store.get_jobs(ids)

    def cancel(self, job_id: JobRef) -> bool:
        """Stop a job on its site and record CANCELLED. False if it had already ended.

        A job a pending trigger has yet to start is cancelled by retiring the trigger
        (dead, "cancelled by user"), so triggers chained on that job see it end; one fired
        but not started yet is ended before it starts."""
        job_id = job_id_of(job_id)
        self.flush()
        try:
            job = self.store.get_job(job_id)
        except NotFound:
            retired = self.triggers.retire(job_id)
            if retired is not None:
                return retired
            job = self.store.get_job(job_id)  # it fired meanwhile: recorded with the firing
        if job.state is not None and job.state.terminal:
            return False
        if not job.context.native_id:
            if self.triggers.cancel_unstarted(job_id):
                self._wake()
                return True
            job = self._started_or_ended(job_id)  # a submit is starting it: wait for its id
            if job.state is not None and job.state.terminal:
                return False
        stopped = True
        if job.context.native_id:
            stopped = self.site(job.context.site).jobs.cancel(job.context)
        if stopped:
            self.runner.record(JobStatus(job_id, State.CANCELLED, info="cancelled by user"))
        return stopped

    def _started_or_ended(self, job_id: str, timeout: float = 10.0) -> Job:
        """The job once its site has given it a native id (or it ended): a submit records a
        job before its site starts it, and a cancel in between must stop what then runs.
        Past ``timeout`` (its starter died?) the job is taken as it is."""
        deadline = time.monotonic() + timeout
        while True:
            self.flush()
            job = self.store.get_job(job_id)
            if job.context.native_id or (job.state is not None and job.state.terminal) \
                    or time.monotonic() > deadline:
                return job
            time.sleep(0.05)

    def log(self, job_id: JobRef) -> str:
        job_id = job_id_of(job_id)
        self.flush()
        job = self.triggers.job_or_future(job_id)
        if job is None:
            raise LwfmError(f"job {job_id} has no output yet: its trigger has not fired")
        if not job.context.native_id and (note := self.triggers.note(job_id)):
            raise LwfmError(f"job {job_id} has no output yet: {note}")
        return self.site(job.context.site).jobs.log(job.context)

    def start_note(self, job_id: str) -> str | None:
        """For a job fired by its trigger but not started yet, what to tell about it."""
        return self.triggers.note(job_id)
