"""The Store's trigger rows: persisted triggers, the one atomic claim that fires each (and
records its job in the same transaction), and the claim on starting that job."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from sqlalchemy import Connection, Text, cast, insert, or_, select, update

from ..errors import NotFound
from ..model import Job, JobStatus, State, Trigger, TriggerKind, TriggerStatus, iso, utcnow
from . import schema as t


class TriggerRows:
    """Mixed into the Store, whose transactions and journal it uses."""

    if TYPE_CHECKING:
        instance_id: str

        def write(self) -> AbstractContextManager[Connection]: ...
        def read(self) -> AbstractContextManager[Connection]: ...
        def journal(self, c: Connection, kind: str, refs: Iterable[str]) -> None: ...
        def _insert_jobs(self, c: Connection, run: list[tuple[Job, JobStatus | None]]) -> Any: ...
        def _statuses(self, c: Connection, run: list[tuple[JobStatus, str | None]]) -> Any: ...

    def add_trigger(self, tr: Trigger) -> Trigger:
        with self.write() as c:
            self._insert_trigger(c, tr)
        return tr

    def _insert_trigger(self, c: Connection, tr: Trigger) -> None:
        tr.instance_id = tr.instance_id or self.instance_id
        c.execute(insert(t.triggers).values(
            id=tr.id, kind=tr.kind.value, status=tr.status.value, body=tr.to_dict(),
            job_id=tr.job_id, fired_by=None, reason=None, fired_at=None))
        # The index of jobs whose changes wake the trigger: the jobs it watches, and a data
        # trigger's producers (their end, without the data, kills it).
        woken = tr.watch or (list(dict.fromkeys(p for _, p in tr.data_inputs() if p))
                             if tr.kind is TriggerKind.DATA else [])
        if woken:
            c.execute(insert(t.trigger_watch), [{"trigger_id": tr.id, "job_id": j}
                                                for j in woken])
        self.journal(c, "trigger", [tr.id])

    def _trigger(self, r: Mapping[str, Any]) -> Trigger:
        body = dict(r["body"])
        body.update(status=r["status"], fired_by=r["fired_by"], reason=r["reason"],
                    fired_at=r["fired_at"])
        return Trigger.from_dict(body)

    def get_trigger(self, trigger_id: str) -> Trigger:
        with self.read() as c:
            r = c.execute(select(t.triggers).where(t.triggers.c.id == trigger_id)).mappings().first()
        if r is None:
            raise NotFound(f"no trigger with id {trigger_id!r}")
        return self._trigger(r)

    def trigger_for_job(self, job_id: str) -> Trigger | None:
        """The trigger that will start (or started) ``job_id``, if any."""
        with self.read() as c:
            r = c.execute(select(t.triggers).where(t.triggers.c.job_id == job_id)).mappings().first()
        return None if r is None else self._trigger(r)

    def triggers(self, status: TriggerStatus | None = None, kind: str | None = None,
                 watching: str | None = None, limit: int | None = None) -> list[Trigger]:
        q = select(t.triggers).limit(limit)
        if status is not None:
            q = q.where(t.triggers.c.status == TriggerStatus(status).value)
        if kind is not None:
            q = q.where(t.triggers.c.kind == kind)
        if watching is not None:
            q = q.where(t.triggers.c.id.in_(select(t.trigger_watch.c.trigger_id).where(
                t.trigger_watch.c.job_id == watching)))
        with self.read() as c:
            return [self._trigger(r) for r in c.execute(q).mappings()]

    def timed_triggers(self) -> list[Trigger]:
        """Pending triggers with a deadline or a retry backoff (which time alone may
        settle): found by their body's keys, left out while empty (a false match, the key
        text inside a job's command, costs one idempotent evaluation)."""
        body = cast(t.triggers.c.body, Text)
        q = select(t.triggers).where(t.triggers.c.status == TriggerStatus.PENDING.value,
                                     or_(body.like('%"deadline"%'), body.like('%"delay_s"%')))
        with self.read() as c:
            return [self._trigger(r) for r in c.execute(q).mappings()]

    def settle_trigger(self, trigger_id: str, status: TriggerStatus, *, fired_by: str | None = None,
                       reason: str | None = None) -> bool:
        """Move a pending trigger to fired/dead. True only for the one caller that won."""
        with self.write() as c:
            n = c.execute(update(t.triggers).where(t.triggers.c.id == trigger_id,
                                                   t.triggers.c.status == "pending").values(
                status=TriggerStatus(status).value, fired_by=fired_by, reason=reason,
                fired_at=iso(utcnow()))).rowcount
            if n:
                self.journal(c, "trigger", [trigger_id])
        return n == 1

    # -- firing and starting the fired job ---------------------------------------------
    def fire_trigger(self, trigger_id: str, fired_by: str | None, job: Job, status: JobStatus,
                     launcher: str, then: Trigger | None = None,
                     used: list[str] | None = None) -> bool:
        """Fire a pending trigger AND record its job (state PENDING, not started) in ONE
        transaction, claimed for starting by ``launcher``. True only for the one winner:
        whoever fires also owns the start, and a crash leaves either both or neither.
        ``then``: a trigger added in the same transaction (a retry's next attempt);
        ``used``: the data ids that fed the job (data futures), kept in the body."""
        with self.write() as c:
            values: dict[str, Any] = dict(
                status=TriggerStatus.FIRED.value, fired_by=fired_by, reason=None,
                fired_at=iso(utcnow()), launch="waiting", launcher=launcher)
            if used is not None:
                body = c.execute(select(t.triggers.c.body).where(
                    t.triggers.c.id == trigger_id)).scalar()
                if body is not None:
                    values["body"] = {**body, "used": list(used)}
            n = c.execute(update(t.triggers).where(t.triggers.c.id == trigger_id,
                                                   t.triggers.c.status == "pending")
                          .values(**values)).rowcount
            if n:
                self.journal(c, "trigger", [trigger_id])
                self._insert_jobs(c, [(job, status)])
                if then is not None:
                    self._insert_trigger(c, then)
        return n == 1

    def begin_launch(self, trigger_id: str, launcher: str) -> bool:
        """Move a waiting start we hold to "starting", just before its site is asked. False
        if the claim is gone (another process took it over) or the job ended meanwhile
        (cancelled): then it must not start."""
        with self.write() as c:
            job_state = c.execute(select(t.jobs.c.state).join(
                t.triggers, t.triggers.c.job_id == t.jobs.c.id).where(
                t.triggers.c.id == trigger_id)).scalar()
            if job_state != State.PENDING.value:
                c.execute(update(t.triggers).where(t.triggers.c.id == trigger_id,
                                                   t.triggers.c.launch == "waiting")
                          .values(launch="done", launcher=None))
                return False
            return c.execute(update(t.triggers).where(
                t.triggers.c.id == trigger_id, t.triggers.c.launch == "waiting",
                t.triggers.c.launcher == launcher).values(launch="starting")).rowcount == 1

    def end_launch(self, trigger_id: str, expect: str | None = None) -> bool:
        """The start is over (it started, failed to, or was cancelled first). ``expect``:
        only from that phase (a cancel ends only a start no one has begun)."""
        q = update(t.triggers).where(t.triggers.c.id == trigger_id,
                                     t.triggers.c.launch.in_([expect] if expect else
                                                             ["waiting", "starting"]))
        with self.write() as c:
            return c.execute(q.values(launch="done", launcher=None)).rowcount == 1

    def cancel_launch(self, trigger_id: str, status: JobStatus) -> bool:
        """End a fired job no one has begun to start, recording ``status`` (CANCELLED) in
        the same transaction, so it can neither start later nor stay PENDING."""
        with self.write() as c:
            n = c.execute(update(t.triggers).where(t.triggers.c.id == trigger_id,
                                                   t.triggers.c.launch == "waiting")
                          .values(launch="done", launcher=None)).rowcount
            if n:
                self._statuses(c, [(status, None)])
        return n == 1

    def take_launch(self, trigger_id: str, old: str | None, new: str | None) -> bool:
        """Compare-and-swap the claim on a start not done yet: take over a dead process's
        claim (``new`` = ours), or release ours (``new`` None) for the next process."""
        cond = (t.triggers.c.launcher.is_(None) if old is None else t.triggers.c.launcher == old)
        with self.write() as c:
            return c.execute(update(t.triggers).where(
                t.triggers.c.id == trigger_id, t.triggers.c.launch.in_(["waiting", "starting"]),
                cond).values(launcher=new)).rowcount == 1

    def unstarted(self) -> list[tuple[str, str, str, str | None, str | None, str | None]]:
        """Fired triggers whose job is not started yet: (trigger id, job id, launch phase,
        launcher, the job's state, its native id)."""
        q = (select(t.triggers.c.id, t.triggers.c.job_id, t.triggers.c.launch,
                    t.triggers.c.launcher, t.jobs.c.state, t.jobs.c.native_id)
             .join(t.jobs, t.jobs.c.id == t.triggers.c.job_id, isouter=True)
             .where(t.triggers.c.launch.in_(["waiting", "starting"])))
        with self.read() as c:
            return [tuple(r) for r in c.execute(q)]  # type: ignore[misc]

    def launch_of(self, job_id: str) -> tuple[str, str, str | None] | None:
        """(trigger id, launch phase, launcher) of a fired job not started yet, else None."""
        with self.read() as c:
            r = c.execute(select(t.triggers.c.id, t.triggers.c.launch, t.triggers.c.launcher)
                          .where(t.triggers.c.job_id == job_id,
                                 t.triggers.c.launch.in_(["waiting", "starting"]))).first()
        return None if r is None else tuple(r)  # type: ignore[return-value]

    # Submitted jobs (not fired): the submitting process's claim sits on the job's row.
    def submitted_unstarted(self) -> list[tuple[str, str]]:
        """This instance's submitted jobs with no start recorded: (job id, launcher claim)."""
        q = select(t.jobs.c.id, t.jobs.c.launcher).where(
            t.jobs.c.state == State.PENDING.value, t.jobs.c.native_id.is_(None),
            t.jobs.c.launcher.is_not(None), t.jobs.c.instance_id == self.instance_id)
        with self.read() as c:
            return [tuple(r) for r in c.execute(q)]  # type: ignore[misc]

    def take_job_launch(self, job_id: str, old: str, new: str) -> bool:
        """Compare-and-swap the claim on a submitted job still unstarted (so one process
        alone ends it, and a crash meanwhile leaves a claim the next process takes)."""
        with self.write() as c:
            return c.execute(update(t.jobs).where(
                t.jobs.c.id == job_id, t.jobs.c.launcher == old,
                t.jobs.c.state == State.PENDING.value, t.jobs.c.native_id.is_(None))
                .values(launcher=new)).rowcount == 1
