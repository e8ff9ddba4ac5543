"""Group commit: one writer thread per Manager turns many small writes into few transactions.

Job inserts and status reports from any thread of the process (the submitter, the
local reaper, site pollers) go into one FIFO; the writer drains whatever has queued
and applies it with :meth:`Store.write_batch` in a single transaction. Under load a
transaction carries many jobs; when idle, a report is written within a few ms.
Readers in the same process call :meth:`flush` first so they see their own writes.

Every failure has an owner. :meth:`write` waits for its op and raises that op's own
error, nobody else's. An op :meth:`put` without a waiting caller (a reaper's report) is
never dropped for a systemic error (disk full, database locked): it stays at the head
of the queue, in order, and is retried with a backoff until the store takes it; only
an op the store refuses for itself (an unknown job) is given up, and logged at ERROR.
Meanwhile :meth:`flush` raises at once that the store is stalled, since what its caller
would read is behind. ``close`` (and interpreter exit) drains the queue for a while and
logs at ERROR, op by op, whatever the store still would not take.

The linger adapts. Idle, a report is written ~2 ms after it arrives (a trigger hop is
one report). While ops keep arriving during writes, the linger doubles, up to 20 ms or
until 512 ops wait; each write that leaves the queue empty halves it, down to 2 ms. A
commit costs far more than a row: a 1000-job burst written in 2 ms batches spends
twice the recorder CPU, on the cores the jobs need. A ``flush`` or ``write`` (someone
waits) cuts any linger short.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy.exc import DataError, IntegrityError

from .errors import InvalidInput, LwfmError, NotFound
from .store import Store

log = logging.getLogger("lwfm.recorder")
_BATCH = 2000
_LINGER_S = 0.002       # idle: let a batch gather, one wake-up per batch, not per write
_LINGER_BUSY_S = 0.02   # under load: fewer, larger commits
_BUSY_BATCH = 512       # ... written as soon as this many ops wait
_RETRY_S = (0.05, 1.0)  # backoff of a systemic failure: first and longest pause
_CLOSE_S = 10.0         # how long close keeps retrying what the store will not take

Op = tuple[str, tuple[Any, Any]]
Results = list[tuple[str, Any, bool]]


class StoreStalled(LwfmError):
    """The store does not take writes now (disk full, locked); queued reports are kept."""


@dataclass
class _Entry:
    op: Op
    owned: bool = False                 # a caller waits in write() and gets the outcome
    done: bool = False
    error: LwfmError | None = None
    results: Results = field(default_factory=list)


def describe(op: Op) -> str:
    kind, (obj, _) = op
    if kind == "job":
        return f"job {obj.id}"
    return f"status {obj.state.value} of job {obj.job_id}"


def _own_fault(e: BaseException) -> bool:
    """The store refused this op for itself (bad value, unknown job): retrying is useless.
    Anything else (disk full, database locked, connection lost) is the store's state."""
    return isinstance(e, (InvalidInput, NotFound, IntegrityError, DataError))


def _as_lwfm(e: BaseException, op: Op) -> LwfmError:
    if isinstance(e, LwfmError):
        return e
    why = getattr(e, "orig", None) or e
    return LwfmError(f"could not record {describe(op)}: {why}")


class Recorder:
    def __init__(self, store: Store, on_written: Callable[[Results], None]):
        self.store = store
        self.on_written = on_written
        self._q: deque[_Entry] = deque()
        self._cv = threading.Condition()
        self._queued = 0      # ops ever queued
        self._done = 0        # ops ever written (or given up, with their owner told)
        self._stalled: LwfmError | None = None  # the systemic error of the last attempt
        self._attempts = 0    # write attempts ever made
        self._closed = False
        self._idle = False
        self._lingering = False
        self._linger = _LINGER_S
        self._urgent = False   # a flush waits: stop lingering
        self._wlock = threading.Lock()  # held by whichever thread writes a batch now
        self._conn: Any = None          # the held write connection (used under _wlock)
        self._thread = threading.Thread(target=self._run, name="lwfm-recorder", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: (r := ref()) is not None and r.close())

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, op: Op) -> None:
        """Queue an op no caller waits for: kept until written (see the module doc)."""
        self._enqueue(_Entry(op))

    def write(self, op: Op, timeout: float | None = 60.0) -> Results:
        """Queue an op and wait until it is written; raise its own error if it is not."""
        if threading.current_thread() is self._thread:  # (from the after-write hook)
            raise LwfmError("the recorder cannot wait for itself")
        e = _Entry(op, owned=True)
        # The caller writes (its op and all queued before it) itself when no write is under
        # way: handing over to the writer thread costs two wake-ups, each a scheduler slice
        # on a loaded machine, and a submit loop waits for one write per job.
        if self._wlock.acquire(blocking=False):
            try:
                self._enqueue(e, wake=False)
                results = self._drain()
            finally:
                self._wlock.release()
            self._after(results)
        else:
            self._enqueue(e, urgent=True)
        with self._cv:
            if not e.done:
                self._urgent = True
                self._cv.notify_all()
            if not self._cv.wait_for(lambda: e.done, timeout):
                raise StoreStalled(f"the store did not record {describe(op)} within {timeout} s"
                                   + (f": {self._stalled}" if self._stalled else ""))
        if e.error is not None:
            raise e.error
        return e.results

    def write_alone(self, op: Op) -> None:
        """Write one op now, in this thread and a transaction of its own, ahead of what is
        queued; raise its error. Only for an op nothing queued can depend on: a new job's
        row, without its first status (that one is queued after it). It costs the
        submitter one small commit, and no wake-up of the writer thread."""
        with self._cv:
            if self._closed:
                raise LwfmError("the Manager is closed")
        with self._wlock:  # one writer at a time in this process (no SQLite busy waits)
            try:
                self._write_batch([op])
            except Exception as exc:  # noqa: BLE001 - classified: the caller gets it
                raise _as_lwfm(exc, op) from exc

    def _write_batch(self, ops: list[Op]) -> Results:
        """One transaction on the held connection (under ``_wlock``); after a failure the
        connection is replaced, whatever state the error left it in."""
        if self._conn is None:
            self._conn = self.store.connect_writer()
        try:
            return self.store.write_batch(ops, conn=self._conn)
        except Exception:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone
                log.debug("closing a failed write connection", exc_info=True)
            raise

    def _enqueue(self, e: _Entry, urgent: bool = False, wake: bool = True) -> None:
        with self._cv:
            if self._closed:
                raise LwfmError("the Manager is closed")
            self._q.append(e)
            self._queued += 1
            self._urgent = self._urgent or urgent
            if wake and (urgent or self._idle or (self._lingering and len(self._q) >= _BUSY_BATCH)):
                self._cv.notify_all()

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until everything queued so far is written. Raises StoreStalled when the
        store does not take writes (what the caller reads would be behind); the ops stay
        queued. Another op's own error goes to its owner, not here."""
        if threading.current_thread() is self._thread:
            return
        with self._cv:
            target, tried = self._queued, self._attempts
            if self._done < target:  # (nothing to hurry when all is written; a stall: retry now)
                self._urgent = True
                self._cv.notify_all()
            if not self._cv.wait_for(lambda: self._done >= target or (
                    self._stalled is not None and self._attempts > tried), timeout):
                raise StoreStalled(f"the store did not accept writes within {timeout} s")
            if self._done < target and self._stalled:
                raise StoreStalled(f"the store does not accept writes now ({self._stalled}); "
                                   f"{len(self._q)} queued reports are kept and retried")

    def close(self, timeout: float = _CLOSE_S) -> None:
        with self._cv:
            if self._closed:
                return
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.flush(timeout=max(0.0, deadline - time.monotonic()))
                break
            except StoreStalled:
                if time.monotonic() >= deadline:
                    break
                time.sleep(_RETRY_S[0])
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=timeout)
        with self._wlock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        for e in list(self._q):  # the store would not take these, even at the end
            log.error("lost at close, the store would not take it (%s): %s",
                      self._stalled, describe(e.op))

    def _run(self) -> None:
        pause = _RETRY_S[0]
        while True:
            with self._cv:
                self._idle = True
                self._cv.wait_for(lambda: self._q or self._closed)
                self._idle = False
                if self._closed and (not self._q or self._stalled):
                    return
                self._lingering = True
                self._cv.wait_for(lambda: self._urgent or self._closed
                                  or len(self._q) >= _BUSY_BATCH,
                                  self._linger)
                self._lingering = self._urgent = False
            with self._wlock:
                results = self._drain()
            self._after(results)
            systemic = self._stalled
            if systemic is not None:
                with self._cv:  # back off; only someone waiting (a flush) asks again sooner
                    self._cv.wait_for(lambda: self._closed or self._urgent, pause)
                pause = min(2 * pause, _RETRY_S[1])
            else:
                pause = _RETRY_S[0]

    def _drain(self) -> Results:
        """Write what is queued, up to a batch (the caller holds ``_wlock``: batches are
        written one at a time, in queue order)."""
        with self._cv:
            batch = [self._q.popleft() for _ in range(min(len(self._q), _BATCH))]
        if not batch:
            return []
        results, keep, systemic = self._write(batch)
        with self._cv:
            self._q.extendleft(reversed(keep))  # in order, ahead of what came since
            self._done += len(batch) - len(keep)
            self._stalled = systemic
            self._attempts += 1
            # Ops arrived while we wrote: load. Linger longer next time, up to the cap.
            self._linger = (min(2 * self._linger, _LINGER_BUSY_S) if self._q
                            else max(self._linger / 2, _LINGER_S))
            self._cv.notify_all()
        return results

    def _after(self, results: Results) -> None:
        if not results:
            return
        try:
            self.on_written(results)
        except Exception:  # a failing trigger must not stop recording
            log.exception("after-write hook failed")

    def _write(self, batch: list[_Entry]) -> tuple[Results, list[_Entry], LwfmError | None]:
        """Write ``batch``: (results, entries to keep and retry, the systemic error)."""
        try:
            results = self._write_batch([e.op for e in batch])
        except Exception as exc:  # noqa: BLE001 - every failure is classified and owned below
            if _own_fault(exc) and len(batch) > 1:  # isolate the bad op; the others land
                out: Results = []
                keep: list[_Entry] = []
                systemic = None
                for i, e in enumerate(batch):
                    if systemic is not None:  # no point trying the rest now
                        keep += [x for x in batch[i:] if not self._give_up(x, systemic)]
                        break
                    r, k, systemic = self._write([e])
                    out += r
                    keep += k
                return out, keep, systemic
            err = _as_lwfm(exc, batch[0].op)
            if _own_fault(exc):
                self._give_up(batch[0], err, logged=True)
                return [], [], None
            log.warning("the store does not take writes now, %d kept and retried: %s",
                        len(batch), err)
            return [], [e for e in batch if not self._give_up(e, err)], err
        # write_batch returns one result per status, jobs' first statuses first.
        for e in batch:
            e.done = True
        if any(e.owned for e in batch):
            by_job: dict[str, list[tuple[str, Any, bool]]] = {}
            for r in results:
                by_job.setdefault(r[0], []).append(r)
            for e in batch:
                if e.owned:
                    jid = e.op[1][0].id if e.op[0] == "job" else e.op[1][0].job_id
                    e.results = by_job.get(jid, [])
        return results, [], None

    def _give_up(self, e: _Entry, err: LwfmError, logged: bool = False) -> bool:
        """An owned op fails now (its owner is told); an ownerless one is kept (False),
        unless it is its own fault (``logged``): then it is dropped, at ERROR."""
        if e.owned or logged:
            e.done, e.error = True, err
            if not e.owned:
                log.error("not recorded: %s", err)
            return True
        return False
