"""Persistent store over SQLAlchemy Core: SQLite (WAL) by default, PostgreSQL by config.

Safe for many processes at once: job processes record their own statuses and data
notations while their parent runs. Writes on SQLite take the database lock up front
(``BEGIN IMMEDIATE``) so read-then-write transactions never deadlock; on PostgreSQL
the job row is locked with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import DataError

from ..errors import InvalidInput, NotFound
from ..model import (TERMINAL, DataObject, Job, JobContext, JobDefn, JobStatus, LogRecord, State,
                     Workflow, advance, iso, parse_time, redacted_env)
from . import schema as t
from .metadata import field_matches, is_glob, matches, meta_rows_for, meta_value
from ._migrate import open_store
from .sql import READ_ONLY, chunks, failing, insert_many, make_engine
from .triggers import TriggerRows

__all__ = ["Store", "chunks", "field_matches", "is_glob", "matches", "t"]


class Store(TriggerRows):
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
    def write(self, action: str = "write to") -> Iterator[Connection]:
        """One write transaction; a value the database cannot take is an InvalidInput, a
        database that cannot write (disk full, locked, read-only) a StoreError that says
        it could not ``action`` the store, and why."""
        try:
            with failing(self.url, action), self._writable() as c, c.begin():
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

    def insert_many(self, c: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        """executemany of plain rows (see :func:`lwfm.store.sql.insert_many`)."""
        insert_many(c, table, rows, self.sqlite)

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

    # -- statuses ---------------------------------------------------------------------
    def record_status(self, st: JobStatus, native_id: str | None = None) -> tuple[State | None, bool]:
        """Append ``st`` to the job's history; returns (current state, whether it changed)."""
        _, state, changed = self.write_batch([("status", (st, native_id))])[0]
        return state, changed

    def write_batch(self, ops: list[tuple[str, tuple[Any, Any]]],
                    conn: Connection | None = None) -> list[tuple[str, State | None, bool]]:
        """Apply new jobs and status reports in ONE transaction (group commit).

        ``ops`` items are ``("job", (Job, first JobStatus | None))`` or
        ``("status", (JobStatus, native_id | None))``. All job inserts go first, then all
        statuses in queue order: a job's insert always precedes its own statuses in the
        queue, so each history keeps its order. Returns ``(job_id, current state,
        changed)`` per status (a job insert's first status included). ``conn``: a held
        connection (:meth:`connect_writer`) to write on, instead of one from the pool.
        """
        jobs = [op[1] for op in ops if op[0] == "job"]
        sts = [op[1] for op in ops if op[0] == "status"]
        if self.sqlite and conn is not None and not sts and all(st is None for _, st in jobs):
            return self._jobs_alone(conn, jobs)
        with (self.write() if conn is None else self._write_on(conn)) as c:
            out = self._insert_jobs(c, jobs) if jobs else []
            return out + (self._statuses(c, sts) if sts else [])

    def _jobs_alone(self, conn: Connection, run: list[tuple[Job, JobStatus | None]]):
        """New jobs alone, without statuses (a submit's row, written before the job starts
        and before its first status), on a held SQLite connection: the transaction goes
        straight to its DB-API connection, as the rows themselves do (:func:`insert_many`),
        since SQLAlchemy's begin and commit cost more than the insert. Nothing here runs a SQLAlchemy statement, so none can begin a
        transaction of its own inside this one."""
        raw = conn.connection.driver_connection
        assert raw is not None
        with failing(self.url, "write to"):
            raw.execute("BEGIN IMMEDIATE")
            try:
                out = self._insert_jobs(conn, run)
                raw.execute("COMMIT")
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
        return out

    def _insert_jobs(self, c: Connection, run: list[tuple[Job, JobStatus | None]]):
        rows = []
        for job, st in run:
            job.instance_id = job.instance_id or self.instance_id
            if job.state is None and st is not None:
                job.state = st.state  # a new job starts in its first status
            rows.append(self.job_row(job))
        self.insert_many(c, t.jobs, rows)
        self.journal(c, "job", [r["id"] for r in rows])
        sts = [st for _, st in run if st is not None]
        self._insert_statuses(c, sts)
        return [(st.job_id, job.state, True) for job, st in run if st is not None]

    def _insert_statuses(self, c: Connection, sts: list[JobStatus]) -> None:
        if not sts:
            return
        rows = [dict(job_id=st.job_id, state=st.state.value, native_state=st.native_state,
                     info=st.info, time=iso(st.time), exit_code=st.exit_code) for st in sts]
        if self.sqlite:
            # The write transaction holds SQLite's lock: the new rows are exactly those above
            # the old maximum. (Ordered RETURNING would cost one statement per row here.)
            # Straight to the DB-API cursor of the same connection, as insert_many does.
            cur = c.connection.cursor()
            try:
                before = cur.execute("SELECT coalesce(max(seq), 0) FROM statuses").fetchone()[0]
                self.insert_many(c, t.statuses, rows)
                seqs = [r[0] for r in cur.execute(
                    "SELECT seq FROM statuses WHERE seq > ? ORDER BY seq", (before,))]
            finally:
                cur.close()
        else:
            seqs = c.execute(insert(t.statuses).returning(t.statuses.c.seq,
                                                          sort_by_parameter_order=True),
                             rows).scalars().all()
        self.journal(c, "status", [str(q) for q in seqs])

    def _statuses(self, c: Connection, run: list[tuple[JobStatus, str | None]]):
        ids = sorted({st.job_id for st, _ in run})
        cur: dict[str, State | None] = {r[0]: State(r[1]) if r[1] else None
                                        for r in self._job_states(c, ids)}
        missing = [i for i in ids if i not in cur]
        if missing:
            raise NotFound(f"no job with id {missing[0]!r}")
        changes: dict[str, dict[str, Any]] = {}
        out = []
        for st, native_id in run:
            vals = changes.setdefault(st.job_id, {})
            if native_id is not None:
                vals["native_id"] = native_id
            before = cur[st.job_id]
            new = advance(before, st.state)
            changed = new != before
            if changed:
                cur[st.job_id] = new
                vals["state"] = new.value if new else None
                if new is State.RUNNING:
                    vals["started"] = iso(st.time)
                if new is not None and new.terminal:
                    vals["ended"] = iso(st.time)
                    vals["exit_code"] = st.exit_code
            out.append((st.job_id, new, changed))
        self._insert_statuses(c, [st for st, _ in run])
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}  # one executemany per column set
        for job_id, vals in changes.items():
            if vals:
                groups.setdefault(tuple(sorted(vals)), []).append(
                    {"_id": job_id, **{f"v_{k}": v for k, v in vals.items()}})
        for keys, rows in groups.items():
            if self.sqlite:  # the hot path, as in insert_many
                c.exec_driver_sql(f'UPDATE jobs SET {", ".join(f"{k} = ?" for k in keys)} '
                                  'WHERE id = ?', [(*(r[f"v_{k}"] for k in keys), r["_id"])
                                                   for r in rows])
            else:
                c.execute(update(t.jobs).where(t.jobs.c.id == bindparam("_id"))
                          .values({k: bindparam(f"v_{k}") for k in keys}), rows)
        self.journal(c, "job", [j for j, v in changes.items() if "native_id" in v])
        return out

    def _job_states(self, c: Connection, ids: list[str]) -> Iterable[tuple[str, str | None]]:
        """(id, state) of ``ids`` in the write transaction (locked for update on
        PostgreSQL; on SQLite the transaction holds the lock, and the query goes straight
        to the cursor: SQLAlchemy's parameter handling cost more than the query)."""
        if not self.sqlite:
            return [tuple(r) for r in c.execute(  # type: ignore[misc]
                select(t.jobs.c.id, t.jobs.c.state).where(t.jobs.c.id.in_(ids)).with_for_update())]
        cur = c.connection.cursor()
        try:
            out = []
            for lo in range(0, len(ids), 900):  # SQLite's bound-parameter limit, with room
                part = ids[lo:lo + 900]
                out += cur.execute(f"SELECT id, state FROM jobs WHERE id IN "
                                   f"({', '.join('?' * len(part))})", part).fetchall()
            return out
        finally:
            cur.close()

    def history(self, job_id: str) -> list[JobStatus]:
        q = select(t.statuses).where(t.statuses.c.job_id == job_id).order_by(t.statuses.c.seq)
        with self.read() as c:
            rows = c.execute(q).mappings().all()
        if not rows:
            self.get_job(job_id)  # raises NotFound for an unknown id
        return [JobStatus.from_dict({k: v for k, v in r.items() if k != "seq"}) for r in rows]

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
