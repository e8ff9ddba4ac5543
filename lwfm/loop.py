"""The manager loop: what ``lwfm serve`` runs, and what a waiting Manager runs in a thread.

It tails the store's events journal so that changes recorded by *other* processes
(a job reporting its own status, a data put inside a job, a trigger added by the
CLI) fire triggers here too, and it polls jobs that no process reports on (detached
local jobs, jobs on remote sites). Pending triggers are all re-evaluated at start,
so they survive restarts.

On PostgreSQL, sequence values can commit out of order; the loop re-reads a short
trailing window of the journal each pass, which is safe because evaluation is
idempotent and firing is an atomic claim.

The loop sees its Manager through a :class:`LoopHost`, the four things it uses.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import func, select

from .errors import LwfmError
from .model import TriggerStatus
from .store import Store, chunks, t
from .triggers import TriggerEngine

log = logging.getLogger("lwfm.loop")
_WINDOW = 0  # extra journal entries re-read per pass (set >0 for PostgreSQL)
_RECOVER_S = 2.0  # how often fired jobs that stopped processes left are looked for
_TIMED_S = 0.25   # how often deadlines and retry backoffs are looked at


@dataclass
class LoopHost:
    """What the manager loop may use of the Manager running it."""

    store: Store
    triggers: TriggerEngine
    wake: Callable[[], None]      # wake this process's waiters: the store changed
    reconcile: Callable[[Callable[[str, float], bool]], int]  # poll jobs nobody reports


class ManagerLoop:
    def __init__(self, host: LoopHost, interval: float = 0.05):
        self.host = host
        self.interval = interval
        self.window = _WINDOW if host.store.sqlite else 200
        self._polled: dict[str, float] = {}

    def run(self, stop: threading.Event) -> None:
        store, triggers = self.host.store, self.host.triggers
        seq = store.last_event()
        self._safely(triggers.evaluate_all)
        recovered = timed = 0.0
        while not stop.is_set():
            if time.monotonic() - recovered > _RECOVER_S:
                self._safely(triggers.recover)
                recovered = time.monotonic()
            if time.monotonic() - timed > _TIMED_S:
                self._safely(triggers.check_timed)
                timed = time.monotonic()
            events = store.events_after(max(0, seq - self.window))
            if events:
                seq = max(seq, events[-1][0])
                self._safely(lambda: self._apply(events))
                self.host.wake()
            self._safely(lambda: self.host.reconcile(self._due))
            stop.wait(self.interval)

    def _safely(self, fn) -> None:  # noqa: ANN001
        try:
            fn()
        except LwfmError as e:
            log.warning("manager loop: %s", e)
        except Exception:  # the loop must outlive one bad record; the error is logged in full
            log.exception("manager loop step failed")

    def _pending(self) -> int:
        with self.host.store.read() as c:
            return c.execute(select(func.count()).select_from(t.triggers).where(
                t.triggers.c.status == TriggerStatus.PENDING.value)).scalar_one()

    def _apply(self, events: list[tuple[int, str, str]]) -> None:
        if not self._pending():
            return
        status_seqs = [int(ref) for _, kind, ref in events if kind == "status"]
        job_ids: set[str] = set()
        if status_seqs:
            with self.host.store.read() as c:
                for ch in chunks(status_seqs):
                    job_ids.update(c.execute(select(t.statuses.c.job_id).where(
                        t.statuses.c.seq.in_(ch))).scalars())
        for jid in job_ids:
            self.host.triggers.on_job_change(jid)
        for _, kind, ref in events:
            if kind == "data":
                self.host.triggers.on_data(self.host.store.get_data(ref))
            elif kind == "trigger":
                tr = self.host.store.get_trigger(ref)
                if tr.status is TriggerStatus.PENDING:
                    self.host.triggers.evaluate(tr)

    def _due(self, job_id: str, poll_interval: float) -> bool:
        """Poll each job no one reports at its site's pace."""
        now = time.monotonic()
        if now - self._polled.get(job_id, 0.0) < poll_interval:
            return False
        self._polled[job_id] = now
        return True
