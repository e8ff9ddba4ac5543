"""The Store's trigger rows: persisted triggers and the one atomic claim that fires each."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from sqlalchemy import Connection, insert, select, update

from ..errors import NotFound
from ..model import Trigger, TriggerStatus, iso, utcnow
from . import schema as t


class TriggerRows:
    """Mixed into the Store, whose transactions and journal it uses."""

    if TYPE_CHECKING:
        instance_id: str

        def write(self) -> AbstractContextManager[Connection]: ...
        def read(self) -> AbstractContextManager[Connection]: ...
        def journal(self, c: Connection, kind: str, refs: Iterable[str]) -> None: ...

    def add_trigger(self, tr: Trigger) -> Trigger:
        tr.instance_id = tr.instance_id or self.instance_id
        with self.write() as c:
            c.execute(insert(t.triggers).values(
                id=tr.id, kind=tr.kind.value, status=tr.status.value, body=tr.to_dict(),
                job_id=tr.job_id, fired_by=None, reason=None, fired_at=None))
            if tr.watch:
                c.execute(insert(t.trigger_watch), [{"trigger_id": tr.id, "job_id": j}
                                                    for j in tr.watch])
            self.journal(c, "trigger", [tr.id])
        return tr

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
