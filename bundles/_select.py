"""Which rows an export carries: the closure of a selection over the thread.

A job brings its descendants (via ``parent_id``), the ancestors that link it to
its roots, its statuses, the data it put or got, the workflows they sit in and
the triggers that fired or watch them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from sqlalchemy import Connection, select

from lwfm.errors import BundleError, NotFound
from lwfm.model import iso, parse_time
from lwfm.store import Store, t

CHUNK = 500


def chunks(ids: list[str], n: int = CHUNK) -> Iterator[list[str]]:
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


@dataclass
class Selection:
    spec: dict[str, Any]
    jobs: list[str] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)


def _in(c: Connection, col, ids: Iterable[str], want) -> set[str]:  # noqa: ANN001
    out: set[str] = set()
    for ch in chunks(sorted(set(ids))):
        out.update(c.execute(select(want).where(col.in_(ch))).scalars())
    return out


def _descendants(c: Connection, roots: set[str]) -> set[str]:
    seen = set(roots)
    frontier = set(roots)
    while frontier:
        kids = _in(c, t.jobs.c.parent_id, frontier, t.jobs.c.id) - seen
        seen |= kids
        frontier = kids
    return seen


def _ancestors(c: Connection, ids: set[str]) -> set[str]:
    """Parents (existing rows) of the given jobs, up to their roots."""
    found: set[str] = set()
    frontier = ids
    while frontier:
        rows = []
        for ch in chunks(sorted(frontier)):
            rows += c.execute(select(t.jobs.c.parent_id).where(
                t.jobs.c.id.in_(ch), t.jobs.c.parent_id.is_not(None))).scalars().all()
        parents = set(rows) - ids - found
        parents = _in(c, t.jobs.c.id, parents, t.jobs.c.id)
        found |= parents
        frontier = parents
    return found


def select_closure(store: Store, *, workflow_id: str | None = None, job_id: str | None = None,
                   since: Any = None, all: bool = False) -> Selection:  # noqa: A002
    """Resolve exactly one selector into sorted id lists."""
    given = [x for x in (workflow_id, job_id, since) if x] + ([True] if all else [])
    if len(given) != 1:
        raise BundleError("choose exactly one of --workflow ID, --job ID, --since TIME, --all")
    with store.read() as c:
        if all:
            sel = Selection({"all": True})
            sel.jobs = sorted(c.execute(select(t.jobs.c.id)).scalars())
            sel.workflows = sorted(c.execute(select(t.workflows.c.id)).scalars())
            sel.data = sorted(c.execute(select(t.data.c.id)).scalars())
            sel.triggers = sorted(c.execute(select(t.triggers.c.id)).scalars())
            return sel
        wfs: set[str] = set()
        data: set[str] = set()
        if job_id:
            job_id = store.resolve_job_id(job_id)
            spec: dict[str, Any] = {"job": job_id}
            jobs = _descendants(c, {job_id})
        elif workflow_id:
            if c.execute(select(t.workflows.c.id).where(t.workflows.c.id == workflow_id)).first() is None:
                raise NotFound(f"no workflow with id {workflow_id!r} (lwfm workflows lists them)")
            spec = {"workflow": workflow_id}
            wfs.add(workflow_id)
            jobs = set(c.execute(select(t.jobs.c.id).where(t.jobs.c.workflow_id == workflow_id)).scalars())
            jobs = _descendants(c, jobs)
            data |= set(c.execute(select(t.data.c.id).where(t.data.c.workflow_id == workflow_id)).scalars())
        else:
            try:
                ts = iso(parse_time(since))
            except (TypeError, ValueError):
                raise BundleError(f"--since {since!r} is not an ISO 8601 time "
                                  "(e.g. 2026-11-21T13:00:00Z)") from None
            spec = {"since": ts}
            jobs = set(c.execute(select(t.jobs.c.id).where(t.jobs.c.created >= ts)).scalars())
            jobs |= set(c.execute(select(t.statuses.c.job_id).where(t.statuses.c.time >= ts)).scalars())
            data |= set(c.execute(select(t.data.c.id).where(t.data.c.time >= ts)).scalars())
            wfs |= set(c.execute(select(t.workflows.c.id).where(t.workflows.c.created >= ts)).scalars())
        jobs |= _ancestors(c, jobs)
        data |= _in(c, t.data.c.job_id, jobs, t.data.c.id)
        wfs |= {w for w in _in(c, t.jobs.c.id, jobs, t.jobs.c.workflow_id) if w}
        wfs |= {w for w in _in(c, t.data.c.id, data, t.data.c.workflow_id) if w}
        wfs = _in(c, t.workflows.c.id, wfs, t.workflows.c.id)
        trg = _in(c, t.triggers.c.job_id, jobs, t.triggers.c.id)
        trg |= _in(c, t.trigger_watch.c.job_id, jobs, t.trigger_watch.c.trigger_id)
        trg = _in(c, t.triggers.c.id, trg, t.triggers.c.id)
    return Selection(spec, sorted(jobs), sorted(wfs), sorted(data), sorted(trg))
