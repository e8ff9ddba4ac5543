"""Which rows an export carries: the closure of a selection over the thread.

A job brings its descendants (via ``parent_id``), the ancestors that link it to
its roots, its statuses, the data it put or got, the workflows they sit in and
the triggers that fired or watch them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (JSON, Column, Connection, MetaData, String, Table, func, insert, or_,
                        select, union)

from lwfm.errors import BundleError, NotFound
from lwfm.model import iso, parse_time
from lwfm.store import Store, chunks, t

@dataclass
class Selection:
    spec: dict[str, Any]
    jobs: list[str] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)


# The selected jobs, in a temporary table of the reading connection: the closure's
# queries join it instead of sending 100k ids back and forth in IN lists.
_SEL = Table("lwfm_export_jobs", MetaData(), Column("id", String(64), primary_key=True),
             prefixes=["TEMPORARY"])


def _closure(c: Connection, seed: Any) -> None:
    """Fill _SEL: jobs of ``seed`` (a select of ids), their descendants, the ancestors linking them."""
    d = seed.cte("sel_desc", recursive=True)
    d = d.union(select(t.jobs.c.id).join(d, t.jobs.c.parent_id == d.c.id))
    c.execute(insert(_SEL).from_select(["id"], select(d.c.id)))
    a = (select(t.jobs.c.parent_id.label("id")).join(_SEL, _SEL.c.id == t.jobs.c.id)
         .where(t.jobs.c.parent_id.is_not(None)).cte("sel_anc", recursive=True))
    j2 = t.jobs.alias("j2")
    a = a.union(select(j2.c.parent_id).join(a, j2.c.id == a.c.id).where(j2.c.parent_id.is_not(None)))
    c.execute(insert(_SEL).from_select(["id"], select(t.jobs.c.id).where(
        t.jobs.c.id.in_(select(a.c.id)), t.jobs.c.id.not_in(select(_SEL.c.id)))))


def _ids(c: Connection, q: Any) -> list[Any]:
    """The first column of ``q``, fetched at once: SQLAlchemy's row-by-row scalars cost
    ~0.5 s per 200k ids."""
    return [r[0] for r in c.execute(q).cursor.fetchall()]


def select_closure(store: Store, *, workflow_id: str | None = None, job_id: str | None = None,
                   since: Any = None, all: bool = False) -> Selection:
    """Resolve exactly one selector into sorted id lists."""
    given = [x for x in (workflow_id, job_id, since) if x] + ([True] if all else [])
    if len(given) != 1:
        raise BundleError("choose exactly one of --workflow ID, --job ID, --since TIME, --all")
    if job_id:
        job_id = store.resolve_job_id(job_id)
    with store.read() as c:
        if all:
            sel = Selection({"all": True})
            sel.jobs = sorted(_ids(c, select(t.jobs.c.id)))
            sel.workflows = sorted(_ids(c, select(t.workflows.c.id)))
            sel.data = sorted(_ids(c, select(t.data.c.id)))
            sel.triggers = sorted(_ids(c, select(t.triggers.c.id)))
            return sel
        if job_id:
            spec: dict[str, Any] = {"job": job_id}
            seed = select(t.jobs.c.id).where(t.jobs.c.id == job_id)
            more_data, wfs = None, set()
        elif workflow_id:
            if c.execute(select(t.workflows.c.id).where(t.workflows.c.id == workflow_id)).first() is None:
                raise NotFound(f"no workflow with id {workflow_id!r} (lwfm workflows lists them)")
            spec = {"workflow": workflow_id}
            seed = select(t.jobs.c.id).where(t.jobs.c.workflow_id == workflow_id)
            more_data, wfs = t.data.c.workflow_id == workflow_id, {workflow_id}
        else:
            try:
                ts = iso(parse_time(since))
            except (TypeError, ValueError):
                raise BundleError(f"--since {since!r} is not an ISO 8601 time "
                                  "(e.g. 2026-11-21T13:00:00Z)") from None
            spec = {"since": ts}
            seed = select(t.jobs.c.id).where(or_(
                t.jobs.c.created >= ts,
                t.jobs.c.id.in_(select(t.statuses.c.job_id).where(t.statuses.c.time >= ts))))
            more_data = t.data.c.time >= ts
            wfs = set(_ids(c, select(t.workflows.c.id).where(t.workflows.c.created >= ts)))
        _SEL.drop(c, checkfirst=True)
        _SEL.create(c)
        try:
            _closure(c, seed)
            sel_ids = select(_SEL.c.id)
            jobs = sorted(_ids(c, sel_ids))
            in_data = t.data.c.job_id.in_(sel_ids)
            if more_data is not None:
                in_data = or_(in_data, more_data)
            rows = c.execute(select(t.data.c.id, t.data.c.workflow_id).where(in_data)).cursor.fetchall()
            data = sorted(r[0] for r in rows)
            wfs |= {r[1] for r in rows}
            wfs |= set(_ids(c, select(t.jobs.c.workflow_id).distinct()
                            .where(t.jobs.c.id.in_(sel_ids))))
            wfs.discard(None)
            wfs = set(_ids(c, select(t.workflows.c.id).where(
                t.workflows.c.id.in_(sorted(wfs))))) if wfs else set()
            trg = union(select(t.triggers.c.id).where(t.triggers.c.job_id.in_(sel_ids)),
                        select(t.trigger_watch.c.trigger_id).where(t.trigger_watch.c.job_id.in_(sel_ids)))
            trg_ids = sorted(_ids(c, select(t.triggers.c.id).where(
                t.triggers.c.id.in_(select(trg.subquery().c[0])))))
        finally:
            _SEL.drop(c)
    return Selection(spec, jobs, sorted(wfs), data, trg_ids)


def size_hint(store: Store, *, workflow_id: str | None = None, all: bool = False) -> int:
    """Jobs + data a selection holds at least (0 if unknown), known before its closure:
    enough to decide early that an export will use workers."""
    if not (all or workflow_id):
        return 0
    with store.read() as c:
        n = 0
        for table in (t.jobs, t.data):
            q = select(func.count()).select_from(table)
            if not all:
                q = q.where(table.c.workflow_id == workflow_id)
            n += c.execute(q).scalar_one()
    return n


def fetch_in(c: Connection, table: Any, col: str, ids: list[str], order: str | None = None,
             cols: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of ``table`` whose ``col`` is in ``ids``, straight from the driver.

    Chunked ``IN (...)`` with driver placeholders: SQLAlchemy's per-row result and
    bind processing dominates at 100k rows. Only the columns ``cols`` (default: all)
    are read; JSON columns come back decoded. Rows follow ``ids`` chunk by chunk,
    ordered by ``order`` (an integer column) within.
    """
    columns = [table.c[n] for n in cols] if cols is not None else list(table.columns)
    names = [str(k.name) for k in columns]   # plain str (not quoted_name): orjson keys
    js = {i for i, k in enumerate(columns) if isinstance(k.type, JSON)}
    mark = "?" if c.dialect.paramstyle == "qmark" else "%s"
    loads = json.loads
    for ch in chunks(ids):
        sql = (f"SELECT {', '.join(names)} FROM {table.name} WHERE {col} IN "
               f"({', '.join([mark] * len(ch))})" + (f" ORDER BY {order}" if order else ""))
        for row in c.exec_driver_sql(sql, tuple(ch)).cursor.fetchall():
            if js:
                row = list(row)
                for i in js:
                    if isinstance(row[i], str):
                        row[i] = loads(row[i])
            yield dict(zip(names, row))
