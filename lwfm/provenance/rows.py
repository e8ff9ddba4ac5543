"""The SQL rows behind a batch of journal events, read for the incremental sync.

Status reports are immutable, so only the ones the events name are read, each with its
position in the job's history computed by the database (``row_number()``): the cost of
a status does not grow with the length of the job's history.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping

from sqlalchemy import Connection, Text, cast, func, select

from ..store import chunks
from ..store import schema as t

def job_columns() -> list[Any]:
    """Job columns with ``defn`` as its JSON text (parsed once per distinct definition)."""
    return [col if col.name != "defn" else cast(col, Text).label("defn") for col in t.jobs.c]


def bundle_items(c: Connection, bundle_id: str) -> list[str]:
    """Ids of the records (not statuses) one imported bundle brought."""
    return list(c.execute(select(t.bundle_items.c.ref).where(
        t.bundle_items.c.bundle_id == bundle_id, t.bundle_items.c.kind != "status")
        .order_by(t.bundle_items.c.ref)).scalars())


@dataclass
class Batch:
    jobs: list[Mapping[str, Any]] = field(default_factory=list)
    statuses: list[Mapping[str, Any]] = field(default_factory=list)   # with "n"
    data: list[Mapping[str, Any]] = field(default_factory=list)
    meta: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    workflows: list[Mapping[str, Any]] = field(default_factory=list)
    triggers: list[Mapping[str, Any]] = field(default_factory=list)
    bundles: list[tuple[Mapping[str, Any], list[str]]] = field(default_factory=list)
    crates: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)   # crate id -> rows


def fetch(c: Connection, refs: Mapping[str, set[str]]) -> Batch:
    b = Batch()
    job_ids = set(refs.get("job", ()))
    seqs = sorted(int(s) for s in refs.get("status", ()))
    for ch in chunks(seqs):
        owners = list(c.execute(select(t.statuses.c.job_id).where(t.statuses.c.seq.in_(ch))
                                .distinct()).scalars())
        job_ids.update(owners)
        n = (func.row_number().over(partition_by=t.statuses.c.job_id,
                                    order_by=t.statuses.c.seq) - 1).label("n")
        hist = select(t.statuses, n).where(t.statuses.c.job_id.in_(owners)).subquery()
        b.statuses += c.execute(select(hist).where(hist.c.seq.in_(ch))).mappings().all()
    cols = job_columns()
    for ch in chunks(sorted(job_ids)):
        b.jobs += c.execute(select(*cols).where(t.jobs.c.id.in_(ch))).mappings().all()
    for ch in chunks(sorted(refs.get("data", ()))):
        b.data += c.execute(select(t.data).where(t.data.c.id.in_(ch))).mappings().all()
        for m in c.execute(select(t.data_meta).where(t.data_meta.c.data_id.in_(ch))
                           .order_by(t.data_meta.c.data_id, t.data_meta.c.key)).mappings():
            b.meta[m["data_id"]].append((m["key"], m["value"]))
    for ch in chunks(sorted(refs.get("workflow", ()))):
        b.workflows += c.execute(select(t.workflows).where(t.workflows.c.id.in_(ch))
                                 ).mappings().all()
    for ch in chunks(sorted(refs.get("trigger", ()))):
        b.triggers += c.execute(select(t.triggers).where(t.triggers.c.id.in_(ch))).mappings().all()
    for ch in chunks(sorted(refs.get("bundle", ()))):
        for r in c.execute(select(t.bundles).where(t.bundles.c.id.in_(ch))).mappings().all():
            b.bundles.append((r, bundle_items(c, r["id"])))
    for ch in chunks(sorted(refs.get("crate", ()))):
        for cid in ch:
            b.crates[cid] = []
        for r in c.execute(select(t.crate_nodes).where(t.crate_nodes.c.crate_id.in_(ch))).mappings():
            b.crates[r["crate_id"]].append(r)
    return b
