"""The Store's write path for jobs and their status reports: the group commit's hot path.

New jobs and status reports go in batches, in one transaction each, with the states they
move the jobs to (:func:`lwfm.model.advance`); on SQLite the rows and queries go straight
to the DB-API cursor of the same transaction (see :func:`.sql.insert_many`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Iterable

from sqlalchemy import Connection, bindparam, insert, select, update

from ..errors import NotFound
from ..model import Job, JobStatus, State, advance, iso
from . import schema as t
from .sql import failing


class StatusRows:
    """Mixed into the Store, whose transactions, journal and job rows it uses."""

    if TYPE_CHECKING:
        url: str
        sqlite: bool
        instance_id: str

        def write(self) -> AbstractContextManager[Connection]: ...
        def read(self) -> AbstractContextManager[Connection]: ...
        def _write_on(self, conn: Connection) -> AbstractContextManager[Connection]: ...
        def journal(self, c: Connection, kind: str, refs: Iterable[str]) -> None: ...
        def insert_many(self, c: Connection, table: Any, rows: list[dict[str, Any]]) -> None: ...
        def get_job(self, job_id: str) -> Job: ...
        @staticmethod
        def job_row(job: Job) -> dict[str, Any]: ...

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
