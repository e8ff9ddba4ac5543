"""Persistent store over SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL by config.

Safe for many processes at once: job processes record their own statuses and data
notations while their parent runs. Writes on SQLite take the database lock up front
(``BEGIN IMMEDIATE``) so read-then-write transactions never deadlock; on PostgreSQL
the job row is locked with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Mapping

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import DataError

from ..errors import InvalidInput, NotFound
from ..model import (TERMINAL, DataObject, Job, JobContext, JobDefn, JobStatus, LogRecord, State,
                     Workflow, iso, parse_time, redacted_env)
from . import schema as t
from .metadata import field_matches, is_glob, matches, meta_rows_for, meta_value
from ._migrate import open_store
from .sql import READ_ONLY, bulk_cache, chunks, failing, insert_many, make_engine
from .statuses import StatusRows
from .triggers import TriggerRows

__all__ = ["Store", "chunks", "field_matches", "is_glob", "matches", "t"]


class Store(StatusRows, TriggerRows):
    """Typed access to lwfm's tables. The Manager is the usual caller."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.sqlite = self.engine.dialect.name == "sqlite"
        self._instance_id = open_store(self)

    @property
    def instance_id(self) -> str:
        """This store's lwfm instance: the named graph its own facts go into."""
        return self._instance_id

    def close(self) -> None:
        self.engine.dispose()

    # -- transactions -----------------------------------------------------------------
    @contextmanager
    def write(self, action: str = "write to", *, bulk: bool = False) -> Iterator[Connection]:
        """One write transaction; a value the database cannot take is an InvalidInput, a
        database that cannot write (disk full, locked, read-only) a StoreError that says
        it could not ``action`` the store, and why. ``bulk``: a large load (an import),
        given a larger page cache (:func:`.sql.bulk_cache`)."""
        try:
            with failing(self.url, action), self._writable() as c, \
                    bulk_cache(c, bulk and self.sqlite), c.begin():
                yield c
        except DataError as e:
            raise InvalidInput(f"the store refused a value: {e.orig}") from None

    def _writable(self) -> Connection:
        """A connection that can write. One SQLite opened read-only (see sql.py) is never
        kept: the open is retried, and if it still cannot write, that is the error."""
        for _ in range(2):
            c = self.engine.connect().execution_options(write=True)
            why = c.connection.info.get(READ_ONLY)
            if why is None:
                return c
            c.invalidate()
            c.close()
        raise sqlite3.OperationalError(why)

    def connect_writer(self) -> Connection:
        """A write connection for one thread at a time to hold: the group commit's hot path
        (a pool checkout per transaction costs more than a job's insert). Pass it to
        :meth:`write_batch`; close it when done."""
        with failing(self.url, "write to"):
            return self._writable()

    @contextmanager
    def _write_on(self, conn: Connection) -> Iterator[Connection]:
        try:
            with failing(self.url, "write to"), conn.begin():
                yield conn
        except DataError as e:
            raise InvalidInput(f"the store refused a value: {e.orig}") from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with failing(self.url, "read"), self.engine.connect() as c:
            immutable = READ_ONLY in c.connection.info
            try:
                with c.begin():
                    yield c
            finally:
                if immutable:
                    c.invalidate()  # a frozen view: the next read tries a normal open again

    def journal(self, c: Connection, kind: str, refs: Iterable[str]) -> None:
        self.insert_many(c, t.events, [{"kind": kind, "ref": r} for r in refs])

    def insert_many(self, c: Connection, table: Any, rows: list[dict[str, Any]],
                    dumps: Callable[[Any], str] = json.dumps) -> None:
        """executemany of plain rows (see :func:`lwfm.store.sql.insert_many`)."""
        insert_many(c, table, rows, self.sqlite, dumps)

    # -- workflows --------------------------------------------------------------------
    def add_workflow(self, wf: Workflow) -> Workflow:
        wf.instance_id = wf.instance_id or self.instance_id
        with self.write() as c:
            c.execute(insert(t.workflows).values(
                id=wf.id, name=wf.name, description=wf.description, props=wf.props,
                created=iso(wf.created), instance_id=wf.instance_id))
            self.journal(c, "workflow", [wf.id])
        return wf

    def get_workflow(self, wf_id: str) -> Workflow:
        with self.read() as c:
            r = c.execute(select(t.workflows).where(t.workflows.c.id == wf_id)).mappings().first()
        if r is None:
            raise NotFound(f"no workflow with id {wf_id!r} (lwfm workflows lists them)")
        return Workflow.from_dict(dict(r))

    def find_workflows(self, name: str | None = None) -> list[Workflow]:
        q = select(t.workflows).order_by(t.workflows.c.created)
        if name:
            q = q.where(t.workflows.c.name == name)
        with self.read() as c:
            return [Workflow.from_dict(dict(r)) for r in c.execute(q).mappings()]

    # -- jobs -------------------------------------------------------------------------
    @staticmethod
    def job_row(job: Job) -> dict[str, Any]:
        ctx = job.context
        defn = job.defn.to_dict()
        if defn["env"]:  # secrets in a job's env are used, never recorded
            defn["env"] = redacted_env(defn["env"])
        return dict(id=ctx.job_id, name=job.defn.name, defn=defn,
                    parent_id=ctx.parent_id, originator_id=ctx.originator_id,
                    workflow_id=ctx.workflow_id, site=ctx.site, native_id=ctx.native_id,
                    state=job.state.value if job.state else None, exit_code=job.exit_code,
                    created=iso(job.created), started=iso(job.started), ended=iso(job.ended),
                    triggered_by=job.triggered_by, instance_id=job.instance_id,
                    submitter=job.submitter, launcher=job.launcher)

    @staticmethod
    def job_from_row(r: Mapping[str, Any]) -> Job:
        ctx = JobContext(job_id=r["id"], parent_id=r["parent_id"],
                         originator_id=r["originator_id"], workflow_id=r["workflow_id"],
                         site=r["site"], native_id=r["native_id"])
        return Job(defn=JobDefn.from_dict(r["defn"]), context=ctx,
                   state=State(r["state"]) if r["state"] else None, exit_code=r["exit_code"],
                   created=parse_time(r["created"]), started=parse_time(r["started"]),
                   ended=parse_time(r["ended"]), triggered_by=r["triggered_by"],
                   instance_id=r["instance_id"], submitter=r.get("submitter"),
                   launcher=r.get("launcher"))

    def add_job(self, job: Job, status: JobStatus | None = None) -> None:
        """Insert a new job, optionally with its first status, in one transaction."""
        self.write_batch([("job", (job, status))])

    def get_job(self, job_id: str) -> Job:
        with self.read() as c:
            r = c.execute(select(t.jobs).where(t.jobs.c.id == job_id)).mappings().first()
        if r is None:
            raise NotFound(f"no job with id {job_id!r} (lwfm jobs lists them)")
        return self.job_from_row(r)

    def resolve_job_id(self, prefix: str) -> str:
        """Accept a unique id prefix, as users copy short ids from tables. A job a pending
        (or dead) trigger has yet to start counts too: its id is known before it runs."""
        return self.resolve_id(prefix, ("job",))

    def resolve_id(self, prefix: str, kinds: tuple[str, ...] = ("job",)) -> str:
        """The one id that a unique prefix (any case) names among ``kinds`` ("job",
        "data"): commands take the short ids ``lwfm jobs`` and ``lwfm find`` show."""
        names = {"job": ("job", "lwfm jobs"), "data": ("data item", "lwfm find")}
        what = " or ".join(names[k][0] for k in kinds)
        if not prefix:
            raise NotFound(f"an empty {what} id")
        esc = prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        cols = {"job": (t.jobs.c.id, t.triggers.c.job_id), "data": (t.data.c.id,)}
        ids: set[str] = set()
        with self.read() as c:
            for col in (col for k in kinds for col in cols[k]):  # a fired trigger's job is in both
                ids.update(c.execute(select(col).where(col.like(esc + "%", escape="\\"))
                                     .limit(2)).scalars())
        if len(ids) == 1:
            return ids.pop()
        if not ids:
            shown = " and ".join(names[k][1] for k in kinds)
            verb = "lists" if len(kinds) == 1 else "list"
            raise NotFound(f"no {what} with id {prefix!r} ({shown} {verb} them)")
        raise NotFound(f"{what} id prefix {prefix!r} is ambiguous; give more characters")

    def terminal_among(self, job_ids: list[str]) -> set[str]:
        """Which of ``job_ids`` have ended (one query per chunk of ids)."""
        done: set[str] = set()
        term = [st.value for st in TERMINAL]
        with self.read() as c:
            for ch in chunks(job_ids):
                done.update(c.execute(select(t.jobs.c.id).where(
                    t.jobs.c.id.in_(ch), t.jobs.c.state.in_(term))).scalars())
        return done

    def states_seen(self, job_ids: list[str]) -> dict[str, set[State]]:
        """Every state each job has reported, for triggers on passing states (RUNNING)."""
        out: dict[str, set[State]] = {j: set() for j in job_ids}
        with self.read() as c:
            for ch in chunks(job_ids):
                for jid, st in c.execute(select(t.statuses.c.job_id, t.statuses.c.state)
                                         .where(t.statuses.c.job_id.in_(ch)).distinct()):
                    out[jid].add(State(st))
        return out

    def get_jobs(self, job_ids: list[str]) -> list[Job]:
        """Jobs by id, in the order given; unknown ids raise NotFound."""
        found: dict[str, Job] = {}
        with self.read() as c:
            for ch in chunks(job_ids):
                for r in c.execute(select(t.jobs).where(t.jobs.c.id.in_(ch))).mappings():
                    found[r["id"]] = self.job_from_row(r)
        missing = [j for j in job_ids if j not in found]
        if missing:
            raise NotFound(f"no job with id {missing[0]!r} (lwfm jobs lists them)")
        return [found[j] for j in job_ids]

    def find_jobs(self, workflow_id: str | None = None, site: str | None = None,
                  state: State | str | None = None, parent_id: str | None = None,
                  limit: int | None = None) -> list[Job]:
        q = select(t.jobs).order_by(t.jobs.c.created)
        for col, v in (("workflow_id", workflow_id), ("site", site), ("parent_id", parent_id)):
            if v is not None:
                q = q.where(t.jobs.c[col] == v)
        if state is not None:
            q = q.where(t.jobs.c.state == State(state).value)
        if limit:
            q = q.limit(limit)
        with self.read() as c:
            return [self.job_from_row(r) for r in c.execute(q).mappings()]

    def set_native_id(self, job_id: str, native_id: str) -> None:
        with self.write() as c:
            c.execute(update(t.jobs).where(t.jobs.c.id == job_id).values(native_id=native_id))
            self.journal(c, "job", [job_id])

    # -- data -------------------------------------------------------------------------
    meta_value = staticmethod(meta_value)
    meta_rows_for = staticmethod(meta_rows_for)

    @staticmethod
    def meta_rows(d: DataObject) -> list[dict[str, Any]]:
        return meta_rows_for(d.id, d.metadata)

    def add_data(self, d: DataObject) -> DataObject:
        d.instance_id = d.instance_id or self.instance_id
        with self.write() as c:
            row = d.to_dict()
            c.execute(insert(t.data).values(**row))
            if d.metadata:
                c.execute(insert(t.data_meta), self.meta_rows(d))
            self.journal(c, "data", [d.id])
        return d

    def get_data(self, data_id: str) -> DataObject:
        with self.read() as c:
            r = c.execute(select(t.data).where(t.data.c.id == data_id)).mappings().first()
        if r is None:
            raise NotFound(f"no data object with id {data_id!r} (lwfm find lists them)")
        return DataObject.from_dict(dict(r))

    def find_data(self, pattern: Mapping[str, Any] | None = None, *, job_id: str | None = None,
                  workflow_id: str | None = None, url: str | None = None) -> list[DataObject]:
        """Data whose metadata matches every field of ``pattern`` (AND).

        A value with ``*``, ``?`` or ``[`` is a glob over that field's value; anything
        else must be equal. Non-string values are compared as canonical JSON.
        """
        q = select(t.data).order_by(t.data.c.time)
        globs: dict[str, str] = {}
        for k, v in (pattern or {}).items():
            sv, typed = self.meta_value(v)
            sub = select(t.data_meta.c.data_id).where(t.data_meta.c.key == str(k))
            if is_glob(v):
                globs[str(k)] = v
            else:
                sub = sub.where(t.data_meta.c.vhash == t.value_hash(sv),
                                t.data_meta.c.value == sv, t.data_meta.c.typed == typed)
            q = q.where(t.data.c.id.in_(sub))
        for col, v in (("job_id", job_id), ("workflow_id", workflow_id), ("url", url)):
            if v is not None:
                q = q.where(t.data.c[col] == v)
        with self.read() as c:
            found = [DataObject.from_dict(dict(r)) for r in c.execute(q).mappings()]
        return [d for d in found if all(matches(d.metadata.get(k), g) for k, g in globs.items())]

    # -- logs -------------------------------------------------------------------------
    def add_log(self, rec: LogRecord) -> None:
        with self.write() as c:
            c.execute(insert(t.logs).values(time=iso(rec.time), level=rec.level,
                                            message=rec.message, job_id=rec.job_id,
                                            workflow_id=rec.workflow_id))

    def logs(self, job_id: str | None = None, workflow_id: str | None = None) -> list[LogRecord]:
        q = select(t.logs).order_by(t.logs.c.seq)
        if job_id:
            q = q.where(t.logs.c.job_id == job_id)
        if workflow_id:
            q = q.where(t.logs.c.workflow_id == workflow_id)
        with self.read() as c:
            return [LogRecord.from_dict({k: v for k, v in r.items() if k != "seq"})
                    for r in c.execute(q).mappings()]

    # -- journal ----------------------------------------------------------------------
    def events_after(self, seq: int, limit: int = 100_000) -> list[tuple[int, str, str]]:
        q = select(t.events.c.seq, t.events.c.kind, t.events.c.ref).where(
            t.events.c.seq > seq).order_by(t.events.c.seq).limit(limit)
        with self.read() as c:
            return [tuple(r) for r in c.execute(q)]  # type: ignore[misc]

    def last_event(self) -> int:
        with self.read() as c:
            return int(c.execute(select(func.coalesce(func.max(t.events.c.seq), 0))).scalar_one())
