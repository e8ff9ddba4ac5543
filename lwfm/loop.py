"""The manager loop: what ``lwfm serve`` runs, and what a waiting Manager runs in a thread.

It tails the store's events journal so that changes recorded by *other* processes
(a job reporting its own status, a data put inside a job, a trigger added by the
CLI) fire triggers here too, and it polls jobs that no process reports on (detached
local jobs, jobs on remote sites). Pending triggers are all re-evaluated at start,
so they survive restarts.

On PostgreSQL, sequence values can commit out of order; the loop re-reads a short
trailing window of the journal each pass, which is safe because evaluation is
idempotent and firing is an atomic claim.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from .errors import LwfmError
from .model import State, TriggerStatus
from .store import chunks, t

if TYPE_CHECKING:
    from .manager import Manager

log = logging.getLogger("lwfm.loop")
_ACTIVE = [s.value for s in (State.READY, State.PENDING, State.RUNNING, State.FINISHING)]
_WINDOW = 0  # extra journal entries re-read per pass (set >0 for PostgreSQL)


class ManagerLoop:
    def __init__(self, manager: "Manager", interval: float = 0.05):
        self.m = manager
        self.interval = interval
        self.window = _WINDOW if manager.store.sqlite else 200
        self._polled: dict[str, float] = {}

    def run(self, stop: threading.Event) -> None:
        store = self.m.store
        seq = store.last_event()
        self._safely(self.m.triggers.evaluate_all)
        while not stop.is_set():
            events = store.events_after(max(0, seq - self.window))
            if events:
                seq = max(seq, events[-1][0])
                self._safely(lambda: self._apply(events))
                with self.m._changed:
                    self.m._changed.notify_all()
            self._safely(self._poll_unreported)
            stop.wait(self.interval)

    def _safely(self, fn) -> None:  # noqa: ANN001
        try:
            fn()
        except LwfmError as e:
            log.warning("manager loop: %s", e)
        except Exception:  # the loop must outlive one bad record; the error is logged in full
            log.exception("manager loop step failed")

    def _pending(self) -> int:
        with self.m.store.read() as c:
            return c.execute(select(func.count()).select_from(t.triggers).where(
                t.triggers.c.status == TriggerStatus.PENDING.value)).scalar_one()

    def _apply(self, events: list[tuple[int, str, str]]) -> None:
        if not self._pending():
            return
        status_seqs = [int(ref) for _, kind, ref in events if kind == "status"]
        job_ids: set[str] = set()
        if status_seqs:
            with self.m.store.read() as c:
                for ch in chunks(status_seqs):
                    job_ids.update(c.execute(select(t.statuses.c.job_id).where(
                        t.statuses.c.seq.in_(ch))).scalars())
        for jid in job_ids:
            self.m.triggers.on_job_change(jid)
        for _, kind, ref in events:
            if kind == "data":
                self.m.triggers.on_data(self.m.store.get_data(ref))
            elif kind == "trigger":
                tr = self.m.store.get_trigger(ref)
                if tr.status is TriggerStatus.PENDING:
                    self.m.triggers.evaluate(tr)

    def _poll_unreported(self) -> None:
        """Ask sites about active jobs that no event will report, at each site's pace."""
        now = time.monotonic()
        with self.m.store.read() as c:
            rows = c.execute(select(t.jobs.c.id, t.jobs.c.site).where(
                t.jobs.c.state.in_(_ACTIVE), t.jobs.c.native_id.is_not(None))).all()
        configured = set(self.m.site_names())
        for job_id, site_name in rows:
            if site_name not in configured:
                continue
            site = self.m.site(site_name)
            if getattr(site.run, "supervises", lambda _j: False)(job_id):
                continue
            if now - self._polled.get(job_id, 0.0) < site.run.poll_interval:
                continue
            self._polled[job_id] = now
            self.m.status(job_id)
