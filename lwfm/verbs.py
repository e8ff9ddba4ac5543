"""The Manager's authoring verbs, which hand back futures: submit, triggers, joins (all,
any, at least k of n, all ended), deadlines, and jobs waiting on other jobs' data."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .errors import InvalidInput, LwfmError
from .futures import Callbacks, DataFuture, JobFuture
from .model import Job, JobDefn, State, Trigger, TriggerKind, parse_time, utcnow
from .triggers import parse_states

if TYPE_CHECKING:
    import threading

    from .store import Store
    from .triggers import TriggerEngine

JobRef = str | JobFuture


def job_id_of(ref: JobRef) -> str:
    """A job id, from an id, a future (or a Job)."""
    return ref if isinstance(ref, str) else ref.id


def _deadline(timeout: float | None, deadline: datetime | str | None) -> datetime | None:
    if timeout is not None and deadline is not None:
        raise InvalidInput("give a trigger a timeout (seconds from now) or a deadline, not both")
    if timeout is not None:
        if timeout <= 0:
            raise InvalidInput(f"a trigger's timeout must be > 0 seconds, not {timeout}")
        return utcnow() + timedelta(seconds=timeout)
    return parse_time(deadline)


class TriggerVerbs:
    """Mixed into the Manager."""

    if TYPE_CHECKING:
        store: Store
        triggers: TriggerEngine
        _changed: threading.Condition
        _callbacks_: Callbacks | None

        def ensure_open(self) -> None: ...
        def submit_job(self, defn: JobDefn, *, parent_id: str | None = None,
                       workflow_id: str | None = None, job_id: str | None = None,
                       triggered_by: str | None = None) -> Job: ...
        def flush(self) -> None: ...
        def _ensure_loop(self) -> None: ...

    def submit(self, defn: JobDefn, *, inputs: Iterable[DataFuture] = (),
               parent_id: str | None = None, workflow_id: str | None = None,
               job_id: str | None = None, triggered_by: str | None = None) -> JobFuture:
        """Record, then start a job on ``defn.site``; returns its future (see
        :meth:`submit_job`). With ``inputs`` (data futures), the job starts once all of
        that data is put, by a persisted data trigger (:meth:`after_data`)."""
        if inputs:
            if job_id is not None or triggered_by is not None:
                raise InvalidInput("a job waiting for data gets its id from its trigger")
            return self.after_data(inputs, defn, parent_id=parent_id, workflow_id=workflow_id)
        job = self.submit_job(defn, parent_id=parent_id, workflow_id=workflow_id,
                              job_id=job_id, triggered_by=triggered_by)
        return JobFuture(self, job.id, job)  # type: ignore[arg-type]

    def future(self, job_id: JobRef) -> JobFuture:
        """The future of a job by id: from this process or any other, before or after a
        restart (a future is a view of the store)."""
        jid = job_id_of(job_id)
        self.flush()
        self.triggers.job_or_future(jid)  # an unknown id raises NotFound now
        return JobFuture(self, jid)  # type: ignore[arg-type]

    def on(self, job_id: JobRef, defn: JobDefn, states: Iterable[State | str] = (State.COMPLETE,),
           *, timeout: float | None = None, deadline: datetime | str | None = None,
           **kw: Any) -> JobFuture:
        """Run ``defn`` when the job reaches one of ``states`` ("terminal" = any end).
        ``timeout`` (s) or ``deadline``: past it, still pending, the trigger is dead
        ("timeout") and its job never runs."""
        return self._trigger(Trigger(kind=TriggerKind.JOB, watch=[job_id_of(job_id)], defn=defn,
                                     states=parse_states(states),
                                     deadline=_deadline(timeout, deadline), **kw))

    def on_all(self, job_ids: Iterable[JobRef], defn: JobDefn,
               states: Iterable[State | str] = (State.COMPLETE,), *, at_least: int | None = None,
               timeout: float | None = None, deadline: datetime | str | None = None,
               **kw: Any) -> JobFuture:
        """Join: run ``defn`` when every job (or ``at_least`` k of them) reaches one of
        ``states``; ``states="terminal"`` runs it once all have ended, whatever their end.
        The job finds its inputs' states in ``LWFM_JOIN_STATES`` (:meth:`join_states`)."""
        return self._trigger(Trigger(kind=TriggerKind.ALL, watch=[job_id_of(j) for j in job_ids],
                                     defn=defn, states=parse_states(states), at_least=at_least,
                                     deadline=_deadline(timeout, deadline), **kw))

    def on_ended(self, job_ids: Iterable[JobRef], defn: JobDefn, **kw: Any) -> JobFuture:
        """Run ``defn`` once every job has ended, whatever its state (a clean-up, a report
        on partial results)."""
        return self.on_all(job_ids, defn, states="terminal", **kw)

    def on_any(self, job_ids: Iterable[JobRef], defn: JobDefn,
               states: Iterable[State | str] = (State.COMPLETE,), *,
               timeout: float | None = None, deadline: datetime | str | None = None,
               **kw: Any) -> JobFuture:
        return self._trigger(Trigger(kind=TriggerKind.ANY, watch=[job_id_of(j) for j in job_ids],
                                     defn=defn, states=parse_states(states),
                                     deadline=_deadline(timeout, deadline), **kw))

    def on_data(self, pattern: Mapping[str, Any], defn: JobDefn, *, timeout: float | None = None,
                deadline: datetime | str | None = None, **kw: Any) -> Trigger:
        """Run ``defn`` when data whose metadata matches ``pattern`` is put."""
        tr = Trigger(kind=TriggerKind.DATA, pattern=dict(pattern), defn=defn,
                     deadline=_deadline(timeout, deadline), **kw)
        self.ensure_open()
        return self.triggers.add(tr)

    def after_data(self, inputs: Iterable[DataFuture], defn: JobDefn, **kw: Any) -> JobFuture:
        """Run ``defn`` once every data future is put (by its producer), whatever the
        producers' states; the job reads its inputs in ``LWFM_INPUTS`` and the thread
        records it ``prov:used`` each. A producer ending without its data kills it."""
        try:
            ins = [inputs] if isinstance(inputs, DataFuture) else list(inputs)
        except TypeError:
            raise InvalidInput(f"inputs must be a list of data futures, not {inputs!r}") from None
        if not ins:
            raise InvalidInput("a job waiting for data needs at least one data future "
                               "(a producer's future.outputs[i])")
        bad = [i for i in ins if not isinstance(i, DataFuture)]
        if bad:
            raise InvalidInput(f"inputs must be data futures (a job future's .outputs), not "
                               f"{type(bad[0]).__name__}: {bad[0]!r}")
        if len(ins) == 1:
            tr = self.on_data(ins[0].pattern, defn, producer=ins[0].producer, **kw)
        else:
            tr = self.on_data(ins[0].pattern, defn, inputs=[
                {"pattern": dict(i.pattern), "producer": i.producer} for i in ins], **kw)
        return JobFuture(self, tr.job_id, trigger_id=tr.id)  # type: ignore[arg-type]

    def inputs_of(self, job_id: JobRef) -> list[dict[str, str]]:
        """For a job a data trigger started: the data it was fed, in input order (each
        ``{"id", "url"}``, as the job reads them in ``LWFM_INPUTS``)."""
        return self._fired_with(job_id, "LWFM_INPUTS", "data (submit(inputs=...), on_data)")

    def _trigger(self, tr: Trigger) -> JobFuture:
        self.ensure_open()
        tr = self.triggers.add(tr)
        return JobFuture(self, tr.job_id, trigger_id=tr.id)  # type: ignore[arg-type]

    def join_states(self, job_id: JobRef) -> dict[str, str | None]:
        """For a job a join started: each input's state when it fired (which completed)."""
        return self._fired_with(job_id, "LWFM_JOIN_STATES", "a join (on_all / on_any)")

    def _fired_with(self, job_id: JobRef, var: str, what: str) -> Any:
        """What the trigger that started a job handed it in ``var`` (JSON in its env)."""
        self.flush()
        job = self.store.get_job(job_id_of(job_id))
        raw = job.defn.env.get(var)
        if raw is None:
            raise LwfmError(f"job {job.id} was not started by {what}")
        return json.loads(raw)

    def _callbacks(self) -> Callbacks:
        if self._callbacks_ is None:
            self._callbacks_ = Callbacks(self._changed, self._ensure_loop)
        return self._callbacks_
