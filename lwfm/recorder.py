"""Group commit: one writer thread per Manager turns many small writes into few transactions.

Job inserts and status reports from any thread of the process (the submitter, the
local reaper, site pollers) go into one FIFO; the writer drains whatever has queued
and applies it with :meth:`Store.write_batch` in a single transaction. Under load a
transaction carries many jobs; when idle, a report is written within a few ms.
Readers in the same process call :meth:`flush` first so they see their own writes.
``close`` (and interpreter exit) drains the queue, so nothing reported is lost.

The linger adapts. Idle, a report is written ~2 ms after it arrives (a trigger hop is
one report). While ops keep arriving during writes, the linger doubles, up to 20 ms or
until 512 ops wait; each write that leaves the queue empty halves it, down to 2 ms. A
commit costs far more than a row: a 1000-job burst written in 2 ms batches spends
twice the recorder CPU, on the cores the jobs need. A ``flush`` (someone waits to
read) cuts any linger short.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import deque
from typing import Any, Callable

from .errors import LwfmError
from .store import Store

log = logging.getLogger("lwfm.recorder")
_BATCH = 2000
_LINGER_S = 0.002       # idle: let a batch gather, one wake-up per batch, not per write
_LINGER_BUSY_S = 0.02   # under load: fewer, larger commits
_BUSY_BATCH = 512       # ... written as soon as this many ops wait

Op = tuple[str, tuple[Any, Any]]
Results = list[tuple[str, Any, bool]]


class Recorder:
    def __init__(self, store: Store, on_written: Callable[[Results], None]):
        self.store = store
        self.on_written = on_written
        self._q: deque[Op] = deque()
        self._cv = threading.Condition()
        self._queued = 0      # ops ever queued
        self._done = 0        # ops ever written (or failed)
        self._errors: list[LwfmError] = []
        self._closed = False
        self._idle = False
        self._lingering = False
        self._linger = _LINGER_S
        self._urgent = False   # a flush waits: stop lingering
        self._thread = threading.Thread(target=self._run, name="lwfm-recorder", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        atexit.register(lambda: (r := ref()) is not None and r.close())

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, op: Op) -> None:
        with self._cv:
            if self._closed:
                raise LwfmError("the Manager is closed")
            self._q.append(op)
            self._queued += 1
            if self._idle or (self._lingering and len(self._q) >= _BUSY_BATCH):
                self._cv.notify_all()

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until everything queued so far is written; raise what failed."""
        if threading.current_thread() is self._thread:
            return
        with self._cv:
            target = self._queued
            if self._done < target:  # (nothing to hurry when all is written)
                self._urgent = True
                self._cv.notify_all()
            if not self._cv.wait_for(lambda: self._done >= target, timeout):
                raise LwfmError(f"the store did not accept writes within {timeout} s")
            errors, self._errors = self._errors, []
        if errors:
            raise errors[0]

    def close(self) -> None:
        with self._cv:
            if self._closed:
                return
        try:
            self.flush()
        except LwfmError as e:
            log.error("writes lost at close: %s", e)
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cv:
                self._idle = True
                self._cv.wait_for(lambda: self._q or self._closed)
                self._idle = False
                if not self._q and self._closed:
                    return
                self._lingering = True
                self._cv.wait_for(lambda: self._urgent or self._closed
                                  or len(self._q) >= _BUSY_BATCH,
                                  self._linger)
                self._lingering = self._urgent = False
                ops = [self._q.popleft() for _ in range(min(len(self._q), _BATCH))]
            results = self._write(ops)
            with self._cv:
                self._done += len(ops)
                # Ops arrived while we wrote: load. Linger longer next time, up to the cap.
                self._linger = (min(2 * self._linger, _LINGER_BUSY_S) if self._q
                                else max(self._linger / 2, _LINGER_S))
                self._cv.notify_all()
            if results:
                try:
                    self.on_written(results)
                except Exception:  # a failing trigger must not stop recording
                    log.exception("after-write hook failed")

    def _write(self, ops: list[Op]) -> Results:
        try:
            return self.store.write_batch(ops)
        except Exception as e:
            if len(ops) > 1:  # isolate the bad op; the others still land
                return [r for op in ops for r in self._write([op])]
            err = e if isinstance(e, LwfmError) else LwfmError(
                f"could not record {ops[0][0]} for job {getattr(ops[0][1][0], 'job_id', '?')}: {e}")
        log.error("%s", err)
        with self._cv:
            self._errors.append(err)
        return []
