"""Futures: handles on jobs and on the data they will put, as a workflow author expects
(concurrent.futures, Parsl, PSI/J): wait, result, chain, callbacks.

A future holds no state of its own: it is a view of the store, by id. So it survives a
restart (``Manager().future(job_id)`` in another process is the same future), and two
processes waiting on one job agree. A job with retries is one *logical* job: its future
follows the attempts (:mod:`lwfm.retry`) and is done on the last one's outcome.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple

from .data_triggers import first_put
from .errors import JobFailed, LwfmError, NotFound
from .model import DataObject, Job, JobDefn, State, Trigger, TriggerStatus
from .retry import Resolved, resolve, retry_of_job

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger("lwfm.futures")
_TAIL_LINES = 20
_JOB_FIELDS = frozenset(f.name for f in dataclasses.fields(Job)) | {"id"}
_TRIGGER_FIELDS = frozenset({"status", "reason", "fired_by", "fired_at", "watch", "kind",
                             "states", "pattern", "deadline", "at_least"})
_STATIC = frozenset({"defn", "created", "submitter", "triggered_by", "instance_id"})

FIRST_COMPLETED, ALL_COMPLETED = "FIRST_COMPLETED", "ALL_COMPLETED"


class JobFuture:
    """A job that is running, will run (its trigger is pending) or has ended.

    For code written when ``submit`` returned a :class:`Job` and ``on`` a :class:`Trigger`:
    the Job's attributes (``context``, ``exit_code``, ...) read the job as recorded now,
    and the trigger's (``status``, ``reason``, ``fired_by``, ...) its trigger now;
    ``job_id`` is ``id``, and the trigger's own id is ``trigger_id``."""

    def __init__(self, manager: "Manager", job_id: str, snapshot: Job | None = None,
                 trigger_id: str | None = None):
        self._m = manager
        self.id = job_id
        self.trigger_id = trigger_id
        self._snap = snapshot

    @property
    def job_id(self) -> str:
        return self.id

    def __repr__(self) -> str:
        return f"<JobFuture {self.id}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in _JOB_FIELDS:
            if name in _STATIC and self._snap is not None:
                return getattr(self._snap, name)
            job = self.snapshot()
            if job is None:
                raise AttributeError(f"job {self.id} has not been started by its trigger yet, "
                                     f"so it has no {name}")
            return getattr(job, name)
        if name in _TRIGGER_FIELDS and self.trigger is not None:
            return getattr(self.trigger, name)
        raise AttributeError(f"'JobFuture' object has no attribute {name!r}")

    # -- reading ------------------------------------------------------------------------
    def snapshot(self) -> Job | None:
        """The job (its first attempt) as recorded now; None while its trigger is pending."""
        self._m.flush()
        job = self._m.triggers.job_or_future(self.id)
        if job is not None and self._snap is None:
            self._snap = job
        return job

    @property
    def trigger(self) -> Trigger | None:
        """The trigger that starts this job, as it is now (None for a submitted job)."""
        self._m.flush()
        if self.trigger_id is None:
            tr = self._m.store.trigger_for_job(self.id)
            if tr is None:
                return None
            self.trigger_id = tr.id
            return tr
        return self._m.store.get_trigger(self.trigger_id)

    def _resolved(self) -> Resolved:
        self._m.flush()
        return resolve(self._m.store, self.id)

    @property
    def state(self) -> State | None:
        """The state now of the current attempt; PENDING while a retry is due, None while
        the trigger that starts it is pending."""
        r = self._resolved()
        if r.dead:
            return State.CANCELLED
        if r.job is None:
            return None
        return State.PENDING if not r.final and r.job.state and r.job.state.terminal \
            else r.job.state

    @property
    def attempts(self) -> list[str]:
        """The job ids of every attempt so far (one unless it was retried)."""
        return self._resolved().attempts

    def done(self) -> bool:
        """True once nothing more will run: its last attempt ended, or it never will."""
        return self._resolved().final

    @property
    def outputs(self) -> list["DataFuture"]:
        """Futures of the data this job declared it will put (``JobDefn.outputs``)."""
        defn = self.defn if self._snap is not None or self.snapshot() else self.trigger.defn  # type: ignore[union-attr]
        return [DataFuture(self._m, dict(p), self.id) for p in defn.outputs]

    # -- waiting ------------------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> Job:
        """The final Job (its last attempt), whatever its end state. Raises TimeoutError,
        or JobFailed if it will never run (its trigger is dead: the reason says why)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            r = self._resolved()
            if r.final:
                if r.job is None:
                    raise JobFailed(f"job {self.id} will never run: {r.dead}")
                return r.job
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {self.id} has not ended after {timeout} s "
                                   f"(attempt {len(r.attempts)})")
            if r.job is None or r.job.state is None or not r.job.state.terminal:
                try:
                    self._m.wait(r.attempts[-1], left)
                except TimeoutError:
                    raise TimeoutError(f"job {self.id} has not ended after {timeout} s "
                                       f"(attempt {len(r.attempts)})") from None
                except LwfmError:
                    continue  # its trigger died: resolve says so on the next pass
            else:  # a retry is due after its backoff: the manager loop starts it
                self._m._ensure_loop()
                with self._m._changed:
                    self._m._changed.wait(0.05 if left is None else min(0.05, left))

    def result(self, timeout: float | None = None) -> Job:
        """The final Job if it COMPLETED; else raises JobFailed with its log's last lines."""
        return _checked(self._m, self.wait(timeout))

    def exception(self, timeout: float | None = None) -> JobFailed | None:
        try:
            self.result(timeout)
        except JobFailed as e:
            return e
        return None

    # -- acting -------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Cancel the current attempt and any retry still due. False if it had ended."""
        r = self._resolved()
        cur = r.attempts[-1]
        retried = False
        if r.job is not None:
            tr = retry_of_job(self._m.store, cur)
            if tr is not None and tr.status is TriggerStatus.PENDING:
                retried = self._m.store.settle_trigger(tr.id, TriggerStatus.DEAD,
                                                       reason="cancelled by user")
                if retried:
                    self._m.triggers.on_job_change(cur)
        return self._m.cancel(cur) or retried

    def then(self, defn: JobDefn, states: Iterable[State | str] = (State.COMPLETE,),
             **kw: Any) -> "JobFuture":
        """Run ``defn`` once this job (its last attempt) reaches one of ``states``."""
        return self._m.on(self.id, defn, states, **kw)

    def add_done_callback(self, fn: Callable[["JobFuture"], object]) -> None:
        """Call ``fn(self)`` once done, on this Manager's callback thread (at once if done)."""
        if self.done():
            _call(fn, self)
        else:
            self._m._callbacks().add(self, fn)


def _checked(m: "Manager", job: Job) -> Job:
    if job.state is State.COMPLETE:
        return job
    try:
        tail = "\n".join(m.log(job.id).splitlines()[-_TAIL_LINES:])
    except LwfmError:
        tail = ""
    code = "" if job.exit_code is None else f" (exit code {job.exit_code})"
    raise JobFailed(f"job {job.id} ({job.defn.name}) ended {job.state.value if job.state else '?'}"
                    f"{code}", job, tail)


class DataFuture:
    """Data a job declared it will put: a metadata pattern, and the job that puts it."""

    def __init__(self, manager: "Manager", pattern: dict[str, Any], producer: str | None):
        self._m = manager
        self.pattern = pattern
        self.producer = producer

    def __repr__(self) -> str:
        return f"<DataFuture {self.pattern} from {self.producer}>"

    def _found(self) -> DataObject | None:
        self._m.flush()
        return first_put(self._m.store, self.pattern, self.producer)

    def done(self) -> bool:
        return self._found() is not None

    def result(self, timeout: float | None = None) -> DataObject:
        """The data object once put; JobFailed if its producer ended without putting it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._m._ensure_loop()
        while (d := self._found()) is None:
            if self.producer is not None and JobFuture(self._m, self.producer).done():
                if (d := self._found()) is not None:
                    return d
                raise JobFailed(f"job {self.producer} ended without putting data matching "
                                f"{self.pattern}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"no data matching {self.pattern} after {timeout} s")
            with self._m._changed:
                self._m._changed.wait(0.05)
        return d

    wait = result


class DoneAndNotDone(NamedTuple):
    done: set[JobFuture]
    not_done: set[JobFuture]


def _done(fs: list[JobFuture]) -> list[JobFuture]:
    """Which futures are done; one query for those of a Manager that have not ended."""
    out: list[JobFuture] = []
    by_m: dict[int, list[JobFuture]] = {}
    for f in fs:
        by_m.setdefault(id(f._m), []).append(f)
    for group in by_m.values():
        m = group[0]._m
        m.flush()
        ended = m.store.terminal_among([f.id for f in group])
        for f in group:
            plain = f._snap is not None and f._snap.defn.retries is None
            if f.id in ended and plain:
                out.append(f)
            elif (f.id in ended or not plain) and f.done():
                out.append(f)
    return out


def _pause(fs: Iterable[JobFuture], step: float) -> None:
    m = next(iter(fs))._m
    m._ensure_loop()
    with m._changed:
        m._changed.wait(step)


def wait(fs: Iterable[JobFuture], timeout: float | None = None,
         return_when: str = ALL_COMPLETED) -> DoneAndNotDone:
    """As ``concurrent.futures.wait``: (done, not_done) once all (or the first) are done
    or ``timeout`` passes."""
    pending = list(dict.fromkeys(fs))
    deadline = None if timeout is None else time.monotonic() + timeout
    done: set[JobFuture] = set()
    step = 0.005
    while pending:
        got = _done(pending)
        done.update(got)
        pending = [f for f in pending if f not in done]
        if not pending or (return_when == FIRST_COMPLETED and done):
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        _pause(pending, step if deadline is None else min(step, max(0.0, deadline - time.monotonic())))
        step = min(step * 2, 0.25)
    return DoneAndNotDone(done, set(pending))


def wait_all(fs: Iterable[JobFuture], timeout: float | None = None) -> list[Job]:
    """The final Job of each future, in order, whatever its end (``result`` raises on
    failure; this does not). Raises TimeoutError, or JobFailed for a job that will never
    run. Futures of one Manager are waited on together (one query per pass)."""
    fs = list(fs)
    deadline = None if timeout is None else time.monotonic() + timeout
    by_m: dict[int, list[JobFuture]] = {}
    for f in fs:
        by_m.setdefault(id(f._m), []).append(f)
    final: dict[str, Job] = {}
    for group in by_m.values():
        m = group[0]._m
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            jobs = m.wait_all([f.id for f in group], left)
        except TimeoutError:
            raise
        except LwfmError:  # a trigger died: each future says which
            jobs = [None] * len(group)  # type: ignore[list-item]
        for f, job in zip(group, jobs):
            if job is not None and job.defn.retries is None:
                final[f.id] = job
            else:
                final[f.id] = f.wait(None if deadline is None else
                                     max(0.0, deadline - time.monotonic()))
    return [final[f.id] for f in fs]


def as_completed(fs: Iterable[JobFuture], timeout: float | None = None) -> Iterator[JobFuture]:
    """As ``concurrent.futures.as_completed``: each future as it is done."""
    pending = list(dict.fromkeys(fs))
    deadline = None if timeout is None else time.monotonic() + timeout
    step = 0.005
    while pending:
        got = _done(pending)
        for f in got:
            yield f
        pending = [f for f in pending if f not in got]
        if not pending:
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"{len(pending)} (of {len(pending) + len(got)}) futures "
                               f"unfinished after {timeout} s")
        _pause(pending, step)
        step = min(step * 2, 0.25)


def _call(fn: Callable[[JobFuture], object], f: JobFuture) -> None:
    try:
        fn(f)
    except Exception:  # as concurrent.futures: a callback's error is logged, not raised
        log.exception("done callback %r of future %s raised", fn, f.id)


class Callbacks:
    """The thread that calls done callbacks for one Manager; stopped by its close."""

    def __init__(self, changed: threading.Condition, ensure_loop: Callable[[], None]):
        self._changed = changed
        self._ensure_loop = ensure_loop
        self._items: list[tuple[JobFuture, Callable[[JobFuture], object]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, f: JobFuture, fn: Callable[[JobFuture], object]) -> None:
        self._ensure_loop()
        with self._lock:
            self._items.append((f, fn))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lwfm-callbacks",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                self._changed.wait(0.1)
            with self._lock:
                items = list(self._items)
            if not items:
                continue
            try:
                done = set(map(id, _done([f for f, _ in items])))
            except (LwfmError, NotFound) as e:
                log.warning("done callbacks: %s", e)
                continue
            with self._lock:
                fire = [(f, fn) for f, fn in self._items if id(f) in done]
                self._items = [(f, fn) for f, fn in self._items if id(f) not in done]
            for f, fn in fire:
                _call(fn, f)

    def close(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(10)
