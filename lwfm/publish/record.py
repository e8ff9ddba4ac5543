"""Publishing, recorded in the thread with the tables that exist: a job of the publish
kind that *gets* each published file and *puts* the dataset, whose metadata holds its
identifier; a re-publish of the same selection is the next version, ``derived_from``
the one before (PROV: a revision is a derivation)."""

from __future__ import annotations

from datetime import datetime

from lwfm.context import USER
from lwfm.model import (DataObject, Direction, EntryKind, Job, JobContext, JobDefn, JobStatus,
                        State)
from lwfm.store import Store, t

KIND = "lwfm.publish"  # data metadata key marking a published dataset
ENTRY = "lwfm.publish:publish"


def previous_version(store: Store, key: str) -> tuple[DataObject | None, int]:
    """(the latest dataset published from this selection, the next version number)."""
    found = store.find_data({"publish_selection": key, "kind": KIND})
    if not found:
        return None, 1
    last = max(found, key=lambda d: int(d.metadata.get("version", 0)))
    return last, int(last.metadata.get("version", 0)) + 1


def record_publish(store: Store, *, job_id: str, dataset_id: str, started: datetime,
                   ended: datetime, name: str, args: list[str], workflow_id: str | None,
                   uses: list[DataObject], dataset: DataObject) -> None:
    """Write the publish job, its statuses, the data it used and the dataset, atomically."""
    defn = JobDefn(entry=ENTRY, kind=EntryKind.PYTHON, name=name, args=args)
    ctx = JobContext(job_id=job_id, workflow_id=workflow_id)
    job = Job(defn, ctx, created=started, submitter=USER)  # the person who published
    job.instance_id = store.instance_id
    job.state, job.started, job.ended, job.exit_code = State.COMPLETE, started, ended, 0
    sts = [JobStatus(job_id, State.READY, time=started), JobStatus(job_id, State.RUNNING, time=started),
           JobStatus(job_id, State.COMPLETE, time=ended, exit_code=0)]
    rows, meta = [], []
    for d in [*uses, dataset]:
        d.job_id, d.workflow_id = job_id, workflow_id
        d.instance_id = store.instance_id
        rows.append(d.to_dict())
        meta += Store.meta_rows(d)
    with store.write("record the publish in") as c:
        store.insert_many(c, t.jobs, [Store.job_row(job)])
        store.journal(c, "job", [job_id])
        store._insert_statuses(c, sts)
        store.insert_many(c, t.data, rows)
        if meta:
            store.insert_many(c, t.data_meta, meta)
        store.journal(c, "data", [r["id"] for r in rows])


def dataset_object(dataset_id: str, url: str, *, identifier: str, title: str, license_id: str,
                   version: int, key: str, previous: DataObject | None, size: int,
                   sha256: str | None, media_type: str, time: datetime,
                   extra: dict[str, str] | None = None) -> DataObject:
    meta = {"kind": KIND, "identifier": identifier, "title": title, "license": license_id,
            "version": version, "publish_selection": key, **(extra or {})}
    if previous is not None:
        meta["previous_version"] = previous.metadata.get("identifier")
    return DataObject(url=url, direction=Direction.PUT, metadata=meta, size=size, sha256=sha256,
                      media_type=media_type, derived_from=previous.id if previous else None,
                      id=dataset_id, time=time)


def used_object(d_id: str, url: str, sha256: str, size: int, media_type: str | None,
                time: datetime) -> DataObject:
    """The publish job's *get* of one file it published (derived from the recorded one)."""
    return DataObject(url=url, direction=Direction.GET, sha256=sha256, size=size,
                      media_type=media_type, derived_from=d_id, time=time,
                      metadata={"role": "published file"})


__all__ = ["KIND", "dataset_object", "previous_version", "record_publish", "used_object"]
