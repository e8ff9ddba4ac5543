"""Live updates as server-sent events, fed by the store's events journal.

Every write to the store appends to the journal in its own transaction, whichever
process made it (a job reporting its end, another CLI), so tailing the journal sees
every change. Each open page gets one stream; a pass every 0.2 s keeps a change on the
page well within a second, and costs one indexed read while nothing happens.

Events: ``jobs`` (the listing rows of jobs that changed) and ``change`` (the kinds
that changed, so the thread, sites and bundles pages refetch).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, AsyncIterator

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from ..store import Store, chunks, t
from .api import job_rows

PASS_S = 0.2
BEAT_S = 15.0


def _changes(store: Store, seq: int) -> tuple[int, list[dict[str, Any]], list[str]]:
    events = store.events_after(seq, limit=5000)
    if not events:
        return seq, [], []
    job_ids = {ref for _, kind, ref in events if kind == "job"}
    status_seqs = [int(ref) for _, kind, ref in events if kind == "status"]
    if status_seqs:
        with store.read() as c:
            for ch in chunks(status_seqs):
                job_ids.update(c.execute(select(t.statuses.c.job_id)
                                         .where(t.statuses.c.seq.in_(ch))).scalars())
    kinds = sorted({kind for _, kind, _ in events})
    return events[-1][0], job_rows(store, sorted(job_ids)), kinds


def _frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n".encode()


async def stream(store: Store, since: int | None, stop: threading.Event,
                 disconnected: Any) -> AsyncIterator[bytes]:
    """The event stream of one page, from journal position ``since`` (default: now)."""
    seq = since if since is not None else await run_in_threadpool(store.last_event)
    yield _frame("hello", {"seq": seq})
    quiet = 0.0
    while not stop.is_set():
        seq, rows, kinds = await run_in_threadpool(_changes, store, seq)
        if rows:
            yield _frame("jobs", rows)
        if kinds:
            yield _frame("change", {"seq": seq, "kinds": kinds})
            quiet = 0.0
        elif quiet >= BEAT_S:
            yield b": beat\n\n"
            quiet = 0.0
        if await disconnected():
            return
        await asyncio.sleep(PASS_S)
        quiet += PASS_S
