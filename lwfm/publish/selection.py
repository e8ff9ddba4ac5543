"""What a publication holds: the selected data files and the thread that made them.

The closure is the bundle exporter's (``lwfm.bundles._select``), so a publication and
an export of the same selection describe the same jobs. Files are *included* when
they are selected and local; everything else in the closure is *referenced* by
checksum, as RO-Crate allows for data that is not in the crate.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lwfm.bundles._crate import local_file
from lwfm.bundles._select import Selection, fetch_in, select_closure
from lwfm.errors import NotFound, PublishError
from lwfm.store import Store, t


@dataclass
class DataRow:
    id: str
    url: str
    sha256: str | None
    size: int | None
    media_type: str | None
    job_id: str | None
    path: Path | None  # the local file, when there is one


@dataclass
class PublishSelection:
    spec: dict[str, Any]
    closure: Selection
    included: list[DataRow] = field(default_factory=list)  # files that go into data/

    @property
    def key(self) -> str:
        """Names 'the same selection' across publishes, so a re-publish is a new version."""
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()


def _data_rows(store: Store, ids: list[str], puts_only: bool = False) -> dict[str, DataRow]:
    """The rows of ``ids`` (only those a job put, with ``puts_only``), with their local file."""
    out: dict[str, DataRow] = {}
    cols = ("id", "url", "sha256", "size", "media_type", "job_id", "direction")
    with store.read() as c:
        for r in fetch_in(c, t.data, "id", ids, cols=cols):
            if not puts_only or r["direction"] == "put":
                out[r["id"]] = DataRow(r["id"], r["url"], r["sha256"], r["size"],
                                       r["media_type"], r["job_id"], local_file(r["url"]))
    return out


def _merge(sels: list[Selection], spec: dict[str, Any]) -> Selection:
    out = Selection(spec)
    for name in ("jobs", "workflows", "data", "triggers"):
        setattr(out, name, sorted({i for s in sels for i in getattr(s, name)}))
    return out


def _dedupe(rows: list[DataRow]) -> list[DataRow]:
    """One payload file per local path (a put and a later get name the same file)."""
    seen: set[Path] = set()
    out = []
    for r in sorted(rows, key=lambda r: r.id):
        if r.path is not None and r.path.resolve() not in seen:
            seen.add(r.path.resolve())
            out.append(r)
    return out


def by_workflow(store: Store, workflow_id: str) -> PublishSelection:
    """A workflow's thread; every local file it put is included."""
    sel = select_closure(store, workflow_id=workflow_id)
    rows = _data_rows(store, sel.data, puts_only=True)
    included = _dedupe([r for r in rows.values() if r.path is not None])
    if not included:
        raise PublishError(f"workflow {workflow_id} recorded no local data file to publish "
                           "(pass --data ID for files of other workflows)")
    return PublishSelection({"workflow": workflow_id}, sel, included)


def by_data(store: Store, data_ids: list[str]) -> PublishSelection:
    """Chosen data objects, each with the closure of the job that made it."""
    ids = sorted({store.resolve_id(d, ("data",)) for d in data_ids})
    rows = _data_rows(store, ids)
    missing = [d for d in ids if d not in rows]
    if missing:
        raise NotFound(f"no data object {missing[0]!r} (lwfm find lists them)")
    remote = [r for r in rows.values() if r.path is None]
    if remote:
        raise PublishError(f"data {remote[0].id} ({remote[0].url}) is not a local regular file "
                           "(a remote file: get it first with lwfm get; a folder, such as an "
                           "earlier publication, or a file that is gone: leave it out)")
    sels = [select_closure(store, job_id=j) for j in sorted({r.job_id for r in rows.values()
                                                             if r.job_id})]
    sel = _merge(sels, {"data": ids})
    sel.data = sorted(set(sel.data) | set(ids))
    return PublishSelection({"data": ids}, sel, _dedupe(list(rows.values())))


def data_ids_from_query(graph: Any, sparql: str) -> list[str]:
    """The data objects a SPARQL SELECT names in its first column (``urn:uuid:`` IRIs)."""
    from lwfm.bundles._common import from_urn
    res = graph.query(sparql)
    if getattr(res, "type", None) != "SELECT":
        raise PublishError("--query must be a SELECT whose first column is data objects "
                           "(e.g. SELECT ?d WHERE { ?d a lwfm:DataObject ... })")
    ids = []
    for row in res:
        v = row[0]
        d = from_urn(str(v)) if v is not None else None
        if d is None:
            raise PublishError(f"--query returned {v!s}, not a data object IRI (urn:uuid:...)")
        ids.append(d)
    if not ids:
        raise PublishError("--query selected no data objects: nothing to publish")
    return ids
