"""Retries: each attempt is its own job, started by a persisted retry trigger.

A job submitted with ``JobDefn.retries`` gets, before it starts, a pending trigger
(``Trigger.retry_of`` = the job) that watches it for the retried end states. If it ends
so, the trigger fires like any other (exactly once, surviving restarts; the backoff is
its ``delay_s``) and starts the next attempt, recording the trigger for the attempt
after it in the same transaction. If it ends otherwise, the trigger is dead ("no retry
needed"). The first attempt's id is the *logical* job: triggers and futures on it see
the outcome of its last attempt (:func:`resolve`), so they fire once, on the final one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import NotFound
from .model import Job, JobDefn, State, Trigger, TriggerKind, TriggerStatus, utcnow
from .store import Store


def retry_trigger(defn: JobDefn, watched: Job | str, root: str, attempt: int,
                  parent_id: str | None, workflow_id: str | None) -> Trigger | None:
    """The trigger that starts attempt ``attempt`` if ``watched`` (attempt - 1) ends in a
    retried state; None when the retries are used up."""
    r = defn.retries
    if r is None or attempt > r.count + 1:
        return None
    watched_id = watched if isinstance(watched, str) else watched.id
    base = defn.name.split(" (attempt ")[0]
    nxt = dataclasses.replace(defn, name=f"{base} (attempt {attempt})")
    return Trigger(kind=TriggerKind.JOB, watch=[watched_id], defn=nxt,
                   states=[State(s) for s in r.states], exit_codes=r.exit_codes,
                   delay_s=r.delay(attempt), retry_of=root, attempt=attempt,
                   parent_id=parent_id, workflow_id=workflow_id)


def first_retry(job: Job) -> Trigger | None:
    return retry_trigger(job.defn, job, job.id, 2, job.context.parent_id, job.context.workflow_id)


def next_retry(tr: Trigger) -> Trigger | None:
    """After ``tr`` fires (starting attempt ``tr.attempt``): the trigger of the next one."""
    assert tr.retry_of is not None
    return retry_trigger(tr.defn, tr.job_id, tr.retry_of, tr.attempt + 1, tr.parent_id,
                         tr.workflow_id)


def retry_of_job(store: Store, job_id: str) -> Trigger | None:
    """The retry trigger watching ``job_id`` (whatever its status), if any."""
    for tr in store.triggers(watching=job_id):
        if tr.retry_of is not None:
            return tr
    return None


def would_retry(tr: Trigger, job: Job) -> bool:
    """Whether the pending retry trigger ``tr`` will start another attempt after ``job``."""
    if job.state is None or not job.state.terminal or job.state not in tr.states:
        return False
    return tr.exit_codes is None or job.exit_code in tr.exit_codes


@dataclass
class Resolved:
    """Where a logical job stands: its current attempt, and whether that is its end."""

    job: Job | None          # the current attempt (None: its retry has not started it yet)
    attempts: list[str]      # every attempt's job id so far, first to last
    final: bool              # nothing more will run: ``job`` is the outcome
    dead: str | None = None  # the attempt will never run: why (its trigger is dead)


def resolve(store: Store, job_id: str, job: Job | None = None) -> Resolved:
    """Follow a job's retries to its current attempt. A job without retries is its own
    (one query, or none when ``job`` is given)."""
    attempts = [job_id]
    if job is None:
        job = _job_or_none(store, job_id)
    while True:
        if job is None:
            tr = store.trigger_for_job(attempts[-1])
            if tr is not None and tr.status is TriggerStatus.DEAD:
                return Resolved(None, attempts, True, tr.reason)
            return Resolved(None, attempts, False)
        if job.state is None or not job.state.terminal or job.defn.retries is None:
            return Resolved(job, attempts, bool(job.state and job.state.terminal))
        tr = retry_of_job(store, job.id)
        if tr is None or tr.status is TriggerStatus.DEAD or (
                tr.status is TriggerStatus.PENDING and not would_retry(tr, job)):
            return Resolved(job, attempts, True)
        if tr.status is TriggerStatus.PENDING:  # the retry is due (it waits for its backoff)
            return Resolved(job, attempts, False)
        attempts.append(tr.job_id)
        job = _job_or_none(store, tr.job_id)


def _job_or_none(store: Store, job_id: str) -> Job | None:
    try:
        return store.get_job(job_id)
    except NotFound:
        if store.trigger_for_job(job_id) is None:
            raise
        return None


def due(tr: Trigger, ended_at: float | None) -> bool:
    """Whether a retry's backoff has passed since the watched job ended (epoch seconds)."""
    if not tr.delay_s or ended_at is None:
        return True
    return utcnow().timestamp() >= ended_at + tr.delay_s
