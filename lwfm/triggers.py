"""Deciding when persisted triggers fire, and firing each exactly once.

A trigger is evaluated whenever something it watches moves: in the process that
recorded the change (so a hop costs milliseconds), and by any process running the
manager loop, which replays the events journal (so triggers survive restarts and
changes recorded by other processes). Evaluation is idempotent; the atomic
``fire_trigger`` claim makes sure only one process fires, and records the fired job in
the same transaction. Evaluating touches only the store (it runs after each group
commit, on the writer thread); the fired job is started by :mod:`lwfm.starter`.

The engine sees its Manager through a :class:`TriggerHost`, the few things it uses.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

from .context import USER
from .data_triggers import data_matches, decide_data
from .errors import InvalidInput, LwfmError, NotFound
from .model import (SECRET_NAME, DataObject, Job, JobContext, JobDefn, JobStatus, State, Trigger,
                    TriggerKind, TriggerStatus, check_json)
from .retry import due, first_retry, next_retry, resolve
from .starter import Starter
from .store import Store

log = logging.getLogger("lwfm.triggers")


_NEVER_REACHED = {State.INFO: "INFO is a report a job makes, not a state it reaches",
                  State.UNKNOWN: "UNKNOWN means a site could not tell, not a state a job reaches"}
_REACHABLE = [s.value for s in State if s not in _NEVER_REACHED]


def parse_states(states: Iterable[State | str] | State | str) -> list[State]:
    """States a trigger waits for; "terminal" stands for every end state."""
    out: list[State] = []
    for s in ([states] if isinstance(states, (str, State)) else states):
        name = str(getattr(s, "value", s))
        if name.lower() == "terminal":
            out += [State.COMPLETE, State.FAILED, State.CANCELLED]
            continue
        try:
            st = State(name.upper())
        except ValueError:
            raise InvalidInput(f"unknown state {name!r} for a trigger; use one of "
                               f"{', '.join(_REACHABLE)} or 'terminal'") from None
        if st in _NEVER_REACHED:
            raise InvalidInput(f"a trigger cannot wait for {st.value}: {_NEVER_REACHED[st]}")
        out.append(st)
    if not out:
        raise InvalidInput("a trigger needs at least one state to wait for")
    return list(dict.fromkeys(out))


def decide(tr: Trigger, states: dict[str, State | None],
           seen: dict[str, set[State]] | None = None) -> tuple[str, str | None, str | None]:
    """("fire", fired_by, None), ("dead", None, reason) or ("wait", None, None).

    ``states`` holds the current state of each watched job (None if unknown); ``seen``
    every state a job has reported, so a job that passed through a wanted state
    (RUNNING) before anyone looked still counts as having reached it.
    """
    want = set(tr.states)
    seen = seen or {}
    hit = [j for j in tr.watch if states.get(j) in want or want & seen.get(j, set())]
    # A job that ended without reaching a wanted state can never satisfy it.
    lost = [j for j in tr.watch if (s := states.get(j)) is not None and s.terminal and j not in hit]
    wanted = "/".join(s.value for s in tr.states)
    if tr.kind in (TriggerKind.JOB, TriggerKind.ANY):
        if hit:
            return "fire", hit[0], None
        if len(lost) == len(tr.watch):
            ends = ", ".join(f"{j} ended {states[j].value}" for j in lost)  # type: ignore[union-attr]
            return "dead", None, f"waited for {wanted}, but {ends}"
        return "wait", None, None
    if tr.kind is TriggerKind.ALL and tr.at_least is not None:
        if len(hit) >= tr.at_least:
            return "fire", hit[tr.at_least - 1], None
        if len(tr.watch) - len(lost) < tr.at_least:
            ends = ", ".join(f"{j} ended {states[j].value}" for j in lost)  # type: ignore[union-attr]
            return "dead", None, (f"waited for {tr.at_least} of {len(tr.watch)} jobs to reach "
                                  f"{wanted}, but {ends}")
        return "wait", None, None
    if tr.kind is TriggerKind.ALL:
        if lost:
            ends = ", ".join(f"{j} ended {states[j].value}" for j in lost)  # type: ignore[union-attr]
            return "dead", None, f"waited for all jobs to reach {wanted}, but {ends}"
        if len(hit) == len(tr.watch):
            return "fire", hit[-1], None
    return "wait", None, None


def check_no_secret(defn: JobDefn, what: str) -> None:
    """A job stored until a trigger starts it (a triggered job, a retry) cannot carry a
    secret in its env: lwfm does not store secrets."""
    secret = [k for k in defn.env if SECRET_NAME.search(k)]
    if secret:
        raise InvalidInput(f"{what}'s env sets {secret[0]}, which looks like a "
                           "secret, and lwfm does not store secrets: set it in the "
                           "environment of the process that fires triggers (your "
                           "workflow script, or lwfm serve) instead; jobs inherit it")


@dataclass
class TriggerHost:
    """What the trigger engine may use of the Manager hosting it."""

    store: Store
    flush: Callable[[], None]                     # this process's queued writes reach the store
    site_names: Callable[[], list[str]]           # the sites a job may name
    check_request: Callable[[JobDefn], None]      # refuse what the job's site cannot honour
    context: Callable[[], JobContext | None]      # the job this process runs in, if any
    record_log: Callable[..., None]               # (message, level=, workflow_id=)
    launch: Callable[[Job], Any]                  # start a recorded job, record how it went
    record: Callable[[JobStatus], None]           # write a status, wait until it is written


class TriggerEngine:
    """Evaluates and fires triggers for one Manager; its starter starts the fired jobs."""

    def __init__(self, host: TriggerHost):
        self.host = host
        self.store = host.store
        self.starter = Starter(host.store, host.launch, host.record)
        self._checked = 0.0
        self._any = True

    def any_pending(self) -> bool:
        """Cheap guard for the hot path: re-read the count at most every 100 ms. A trigger
        another process adds meanwhile is picked up by the manager loop's journal replay."""
        now = time.monotonic()
        if now - self._checked > 0.1:
            self._any = bool(self.store.triggers(status=TriggerStatus.PENDING, limit=1))
            self._checked = now
        return self._any

    def add(self, tr: Trigger) -> Trigger:
        """Check and persist a new trigger, then evaluate it: its condition may hold already.
        Whatever would stop it firing later (an unknown job or site, a secret it would have
        to store) is an error now."""
        ins = tr.data_inputs() if tr.kind is TriggerKind.DATA else []
        for pattern, _ in ins:
            check_json(pattern, "a data trigger's pattern")
        tr.defn.check_plain()
        check_no_secret(tr.defn, "the triggered job")
        if tr.defn.site not in self.host.site_names():  # now, not when it fires
            raise NotFound(f"no site named {tr.defn.site!r} (lwfm sites lists them)")
        self.host.check_request(tr.defn)  # a resource it cannot honour: refused now too
        self.host.flush()
        # Unknown ids are an error now, not a trigger that never fires.
        watched = [self.job_or_future(j) for j in tr.watch]
        for _, producer in ins:  # a producer that will never run: refused now too
            if producer is not None:
                self.job_or_future(producer)
        if tr.workflow_id is None and tr.watch:
            first = watched[0]
            tr.workflow_id = (first.context.workflow_id if first else
                              self.store.trigger_for_job(tr.watch[0]).workflow_id)  # type: ignore[union-attr]
        if tr.workflow_id is None and (ctx := self.host.context()) is not None:
            tr.workflow_id = ctx.workflow_id
        self.store.add_trigger(tr)
        self.added()
        self.evaluate(tr)
        return self.store.get_trigger(tr.id)

    def added(self) -> None:
        self._any, self._checked = True, time.monotonic()

    def job_or_future(self, job_id: str) -> Job | None:
        """The job, or None while a pending trigger has yet to start it."""
        try:
            return self.store.get_job(job_id)
        except NotFound:
            tr = self.store.trigger_for_job(job_id)
            if tr is None:
                raise
            if tr.status is TriggerStatus.DEAD:
                raise LwfmError(f"job {job_id} will never run: its trigger {tr.id} is dead "
                                f"({tr.reason})") from None
            return None

    def retire(self, job_id: str) -> bool | None:
        """Cancel a job its trigger has yet to start: True if this retired the trigger,
        False if it was dead already, None if it fired (the job is the one to cancel)."""
        tr = self.store.trigger_for_job(job_id)
        if tr is None:
            raise NotFound(f"no job with id {job_id!r}")
        if self.store.settle_trigger(tr.id, TriggerStatus.DEAD, reason="cancelled by user"):
            self.host.record_log(f"trigger {tr.id} cancelled by user: job {job_id} will not run",
                              workflow_id=tr.workflow_id)
            self.on_job_change(job_id)  # triggers chained on it see it end
            return True
        return None if self.store.get_trigger(tr.id).status is TriggerStatus.FIRED else False

    def cancel_unstarted(self, job_id: str, timeout: float = 30.0) -> bool | None:
        """Cancel a fired job that has not started: True if this cancelled it, None if it
        is not (or no longer) such a job. A start in progress is waited for (then the job
        has a native id and is cancelled on its site)."""
        deadline = time.monotonic() + timeout
        while (got := self.store.launch_of(job_id)) is not None:
            trigger_id, phase, claim = got
            if phase == "waiting":
                st = JobStatus(job_id, State.CANCELLED, info="cancelled by user before it started")
                if self.store.cancel_launch(trigger_id, st):
                    self.on_job_change(job_id)  # triggers chained on it see it end
                    return True
                continue
            if time.monotonic() > deadline:
                raise LwfmError(f"job {job_id} is being started by process {claim}; "
                                "try again in a moment")
            time.sleep(0.05)
        return None

    def note(self, job_id: str) -> str | None:
        """What to tell about a job fired but not started yet (None if it is not one)."""
        return self.starter.note(job_id)

    def recover(self) -> int:
        """Start the fired jobs that stopped processes left unstarted, and end the
        submitted ones they left unstarted (see lwfm.starter)."""
        return self.starter.recover()

    @property
    def claim(self) -> str:
        """This Manager's claim on the jobs it starts (written on a submitted job's row)."""
        return self.starter.claim

    def settle_unstarted(self, job: Job) -> bool:
        """End ``job`` now if its submitter stopped before starting it (see recover)."""
        if job.launcher is None or job.state is not State.PENDING or job.context.native_id:
            return False
        return self.starter.settle_submitted(job.id, job.launcher)

    def close(self) -> None:
        self.starter.close()

    def states(self, job_ids: Iterable[str], logical: bool = True) -> dict[str, State | None]:
        """Current states; a job whose trigger is dead will never run: CANCELLED.
        ``logical``: a job with retries stands for its last attempt, and has not ended
        while a retry is due (a retry trigger itself watches the attempt as it is)."""
        out: dict[str, State | None] = {}
        for j in job_ids:
            try:
                job = self.job_or_future(j)
                out[j] = job.state if job else None
                if logical and job is not None and job.defn.retries is not None \
                        and job.state is not None and job.state.terminal:
                    r = resolve(self.store, j, job)
                    out[j] = (State.CANCELLED if r.dead else None if not r.final or r.job is None
                              else r.job.state)
            except NotFound:
                out[j] = None
            except LwfmError:  # its trigger is dead
                out[j] = State.CANCELLED
        return out

    def on_job_change(self, job_id: str) -> None:
        for tr in self.store.triggers(status=TriggerStatus.PENDING, watching=job_id):
            self.evaluate(tr)
        by = self.store.trigger_for_job(job_id)  # an attempt: who waits on its logical job
        if by is not None and by.retry_of is not None:
            for tr in self.store.triggers(status=TriggerStatus.PENDING, watching=by.retry_of):
                if tr.retry_of is None:
                    self.evaluate(tr)

    def check_timed(self) -> None:
        """Settle what time alone decides: deadlines passed, retry backoffs over (run by
        the manager loop; evaluation is idempotent, so re-running it is harmless)."""
        timed = self.store.timed_triggers()
        backoff = [tr for tr in timed if tr.deadline is None and tr.delay_s]
        ended = self.store.terminal_among([tr.watch[0] for tr in backoff if tr.watch])
        for tr in timed:  # a backoff only counts once its job has ended (one query for all)
            if tr.deadline is not None or (tr.delay_s and tr.watch and tr.watch[0] in ended):
                self.evaluate(tr)

    def on_data(self, d: DataObject) -> None:
        """A put: every pending data trigger one of whose inputs it matches is evaluated."""
        for tr in self.store.triggers(status=TriggerStatus.PENDING, kind=TriggerKind.DATA.value):
            if data_matches(tr, d, self.store):
                self._evaluate_data(tr, d)

    def _evaluate_data(self, tr: Trigger, fresh: DataObject | None = None) -> None:
        """Fire once every input has its put; dead once a producer ended without it."""
        v = decide_data(tr, self.store, lambda ids: self.states(ids, logical=True), fresh)
        if v.verdict == "fire":
            self._fire(tr, v.fired_by, used=v.used)
        elif v.verdict == "dead":
            self._settle_dead(tr, v.reason or "")
        else:
            self._timeout(tr)

    def evaluate(self, tr: Trigger) -> None:
        if tr.kind is TriggerKind.DATA:
            self._evaluate_data(tr)
            return
        states = self.states(tr.watch, logical=tr.retry_of is None)
        seen = None
        if any(not s.terminal for s in tr.states):  # a passing state: ask the histories
            seen = self.store.states_seen([j for j, s in states.items()
                                           if s is not None and s not in tr.states])
        verdict, fired_by, reason = decide(tr, states, seen)
        if verdict == "fire" and (tr.exit_codes is not None or tr.delay_s):
            job = self.store.get_job(fired_by)  # type: ignore[arg-type]
            if tr.exit_codes is not None and job.exit_code not in tr.exit_codes:
                verdict, reason = "dead", (f"{job.id} ended {job.state.value} with exit code "  # type: ignore[union-attr]
                                           f"{job.exit_code}, not one of {tr.exit_codes}")
            elif not due(tr, job.ended.timestamp() if job.ended else None):
                return  # a retry's backoff: the manager loop looks again (check_timed)
        if verdict == "fire":
            self._fire(tr, fired_by, states)
        elif verdict == "dead":
            self._settle_dead(tr, ("no retry needed: " if tr.retry_of else "") + (reason or ""))
        else:
            self._timeout(tr)

    def _timeout(self, tr: Trigger) -> None:
        if tr.deadline is not None and time.time() >= tr.deadline.timestamp():
            self._settle_dead(tr, "timeout")

    def _settle_dead(self, tr: Trigger, reason: str) -> None:
        if not self.store.settle_trigger(tr.id, TriggerStatus.DEAD, reason=reason):
            return
        if tr.retry_of is None:
            self.host.record_log(f"trigger {tr.id} can no longer fire: {reason}",
                                 level="WARNING", workflow_id=tr.workflow_id)
        self.on_job_change(tr.job_id)  # triggers chained on the job it would have run
        if tr.retry_of is not None:    # the logical job's outcome is now known
            for other in self.store.triggers(status=TriggerStatus.PENDING, watching=tr.retry_of):
                if other.retry_of is None:
                    self.evaluate(other)

    def evaluate_all(self) -> None:
        """Catch up on every pending trigger (after a restart, or at loop start)."""
        for tr in self.store.triggers(status=TriggerStatus.PENDING):
            self.evaluate(tr)

    def _fire(self, tr: Trigger, fired_by: str | None,
              states: dict[str, State | None] | None = None,
              used: list[DataObject] | None = None) -> None:
        """Fire and record the job in one transaction (with the trigger of its next
        attempt, for a retry, and the data that fed it, for data futures); the starter
        starts it."""
        job = self._fired_job(tr, fired_by, states, used)
        first = JobStatus(job.id, State.PENDING, info=f"fired by trigger {tr.id}; not started yet")
        then = (next_retry(tr) if tr.retry_of else
                first_retry(job) if job.defn.retries and job.defn.retries.count else None)
        fed = [d.id for d in used] if used and tr.feeds_job else None
        if self.store.fire_trigger(tr.id, fired_by, job, first, self.starter.claim, then=then,
                                   used=fed):
            if then is not None:
                self.added()
            self.starter.start(tr.id, job.id)
        # (else another process, or an earlier event, won the claim)

    def _fired_job(self, tr: Trigger, fired_by: str | None,
                   states: dict[str, State | None] | None = None,
                   used: list[DataObject] | None = None) -> Job:
        """The job a trigger starts, linked as a submitted job is: its parent is the job
        that fired it (unless the trigger names one, or it is a retry: an attempt sits
        where the first one did), which gives originator and workflow. A join's job reads
        the states its inputs had when it fired in ``LWFM_JOIN_STATES`` (JSON); a data
        trigger's job its inputs, in input order, in ``LWFM_INPUTS`` (JSON: id and url)."""
        parent_id, workflow = tr.parent_id, tr.workflow_id
        if parent_id is None and tr.kind is not TriggerKind.DATA and fired_by and not tr.retry_of:
            parent_id = fired_by
        if parent_id is None and (ctx := self.host.context()) is not None:
            parent_id = ctx.job_id
        originator = None
        if parent_id is not None:
            try:
                parent = self.store.get_job(parent_id).context
                originator, workflow = parent.originator_id, workflow or parent.workflow_id
            except NotFound:  # it never ran (a dead trigger's job fired this one)
                parent_id = None
        if workflow is not None:
            try:
                self.store.get_workflow(workflow)
            except NotFound:
                workflow = None  # the workflow is gone; the job still runs
        ctx = JobContext(job_id=tr.job_id, parent_id=parent_id, originator_id=originator,
                         workflow_id=workflow, site=tr.defn.site)
        defn = tr.defn
        if tr.kind in (TriggerKind.ALL, TriggerKind.ANY) and states is not None:
            got = {j: (s.value if s else None) for j, s in states.items()}
            defn = replace(defn, env={**defn.env, "LWFM_JOIN_STATES": json.dumps(got)})
        if tr.kind is TriggerKind.DATA and used:
            fed = [{"id": d.id, "url": d.url} for d in used]
            defn = replace(defn, env={**defn.env, "LWFM_INPUTS": json.dumps(fed)})
        return Job(defn=defn, context=ctx, triggered_by=tr.id, submitter=USER)
