"""Export: write a selection of the SQL store as a zipped RO-Crate.

The metadata is written directly as compact JSON with a flat ``@graph`` (running
a JSON-LD compactor over the RO-Crate context costs ~33 s per 2000 entities), one
entity per line, streamed into the zip so a 100k-job thread never sits in memory
as one document. Entities are ordered and keys sorted, so the same selection
exported twice differs only in the export time.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import orjson
from sqlalchemy import select

from lwfm import __version__
from lwfm.model import iso, utcnow
from lwfm.secrets import redacted_defn
from lwfm.provenance.facts import data_facts, job_facts, json_ld, workflow_facts
from lwfm.provenance.vocab import site_iri, software_name
from lwfm.provenance.vocab import node_iri as urn
from lwfm.store import Store, chunks, t

from ._common import (
    BUNDLE_FORMAT,
    LICENSE,
    LWFM_CONTEXT,
    METADATA,
    RO_CRATE_1_1,
    WORKFLOW_RUN_TERMS,
    ExportResult,
    ProgressFn,
    sha256_file,
)
from ._parallel import PARALLEL_MIN, Workers, render_parallel, workers
from ._select import Selection, fetch_in, select_closure, size_hint
from ._workflow import MAIN, PROFILES, RUN, Runs, step_name, workflow_document, workflow_entities

_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


_ENC = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False,
                       ensure_ascii=False)


def dumps(obj: Any) -> str:
    """Canonical JSON (sorted keys, compact, UTF-8): the form records take inside a bundle.

    orjson writes exactly this, several times faster; integers beyond 64 bits, which
    it refuses, take the standard library's identical path.
    """
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return _ENC.encode(obj)


def _ref(iri: str | None) -> dict[str, str] | None:
    return None if iri is None else {"@id": iri}


def encode_entity(e: dict[str, Any]) -> str:
    """One entity as one line of canonical JSON, without null or empty properties."""
    return dumps({k: v for k, v in e.items() if v is not None and v != []})


def merge_entity(e: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """lwfm's entity with a crate's node of the same @id (expanded keys: no clash)."""
    out = {**e, **{k: v for k, v in node.items() if k not in ("@id", "@type")}}
    if "@type" in node:
        mine = e.get("@type") or []
        out["@type"] = list(dict.fromkeys(([mine] if isinstance(mine, str) else mine) + node["@type"]))
    return out


def local_file(url: str) -> Path | None:
    """The local regular file a data url names, if any (payload candidates)."""
    p = urlparse(url)
    if p.scheme == "file":
        path = unquote(p.path)
    elif p.scheme == "" or (len(p.scheme) == 1 and os.name == "nt"):
        path = url
    else:
        return None
    try:  # one lstat: a regular file, not a symlink (publish asks this of 10k urls)
        return Path(path) if stat.S_ISREG(os.lstat(path).st_mode) else None
    except (OSError, ValueError):
        return None


def _safe_name(url: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(urlparse(url).path) or "")
    return name.strip(".") or "payload"


class _Writer:
    """Buffers lines of the metadata document into a zip entry."""

    def __init__(self, fh: Any):
        self.fh, self.buf, self.size, self.first = fh, [], 0, True
        # Foreign crates' nodes still to write (subject -> entity): one whose IRI is also
        # an entity lwfm writes (a license, a profile) is merged into it, not repeated.
        self.crate: dict[str, dict[str, Any]] = {}

    def raw(self, s: str) -> None:
        self.buf.append(s)
        self.size += len(s)
        if self.size > 1 << 20:
            self.flush()

    def entity(self, e: dict[str, Any]) -> None:
        if self.crate and e["@id"] in self.crate:
            e = merge_entity(e, self.crate.pop(e["@id"]))
        self.line(encode_entity(e))

    def line(self, encoded: str) -> None:
        """One encoded entity."""
        self.begin_lines()
        self.raw(encoded)

    def begin_lines(self) -> None:
        """Entities follow (one by :meth:`line`, or a worker's :meth:`block`): the
        separator before them."""
        self.raw("" if self.first else ",\n")
        self.first = False

    def block(self, b: bytes) -> None:
        """Encoded entities joined by ``,\\n``, as a worker wrote them."""
        self.flush()
        self.fh.write(b)

    def flush(self) -> None:
        self.fh.write("".join(self.buf).encode())
        self.buf, self.size = [], 0


def _zinfo(name: str) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, _ZIP_TIME)
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.external_attr = 0o100644 << 16
    return zi


def export_bundle(store: Store, config: Any, out: Path, *, workflow_id: str | None = None,
                  job_id: str | None = None, since: Any = None, all: bool = False,
                  with_data: bool = False, progress: ProgressFn | None = None) -> ExportResult:
    """Write the selection's closure to ``out`` (a zip); atomic via a temp file + rename."""
    early = None   # workers import while the closure is resolved, if it will need them
    if workers() > 1 and size_hint(store, workflow_id=workflow_id, all=all) >= PARALLEL_MIN:
        early = Workers(store.url)
    try:
        return _export(store, out, early, workflow_id=workflow_id, job_id=job_id, since=since,
                       all=all, with_data=with_data, progress=progress)
    finally:
        if early is not None:
            early.close()


def _export(store: Store, out: Path, early: Workers | None, *, workflow_id: str | None,
            job_id: str | None, since: Any, all: bool, with_data: bool,
            progress: ProgressFn | None) -> ExportResult:
    sel = select_closure(store, workflow_id=workflow_id, job_id=job_id, since=since, all=all)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".lwfm-export-", suffix=".zip", dir=out.parent)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compresslevel=1, allowZip64=True) as zf:
            payload = _write_payload(store, sel, zf) if with_data else {}
            with zf.open(_zinfo(METADATA), "w", force_zip64=True) as fh, store.read() as c:
                w = _Writer(fh)
                workflow = _write_metadata(c, store.instance_id, sel, w, payload, progress,
                                           lambda: early or Workers(store.url))
                w.flush()
            zf.writestr(_zinfo(MAIN), workflow)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sha, size = sha256_file(out)
    counts = {"jobs": len(sel.jobs), "workflows": len(sel.workflows), "data": len(sel.data),
              "triggers": len(sel.triggers)}
    return ExportResult(out, sha, store.instance_id, sel.spec, counts, len(payload), size)


def _write_payload(store: Store, sel: Selection, zf: zipfile.ZipFile) -> dict[str, dict[str, Any]]:
    """Copy local data files into ``data/<id>/<name>``; returns data id -> payload entity."""
    out: dict[str, dict[str, Any]] = {}
    with store.read() as c:
        rows = [r for ch in chunks(sel.data) for r in c.execute(
            select(t.data.c.id, t.data.c.url).where(t.data.c.id.in_(ch)))]
    for data_id, url in sorted(rows):
        path = local_file(url)
        if path is None:
            continue
        name = f"data/{data_id}/{_safe_name(url)}"
        h, n = hashlib.sha256(), 0
        with open(path, "rb") as src, zf.open(_zinfo(name), "w", force_zip64=True) as dst:
            while chunk := src.read(1 << 20):
                h.update(chunk)
                n += len(chunk)
                dst.write(chunk)
        out[data_id] = {"@id": name, "@type": "File", "name": os.path.basename(name),
                        "sha256": h.hexdigest(), "contentSize": str(n),
                        "lwfm:payloadOf": {"@id": urn(data_id)}}
    return out


def _rows(c: Any, table: Any, ids: list[str]) -> Iterator[dict[str, Any]]:
    """Rows by id, in the (sorted) order of ``ids``."""
    for ch in chunks(ids):
        yield from sorted(fetch_in(c, table, "id", ch), key=lambda r: r["id"])


def _write_metadata(c: Any, inst: str, sel: Selection, w: _Writer,
                    payload: dict[str, dict[str, Any]], progress: ProgressFn | None,
                    pool: Callable[[], Workers]) -> bytes:
    """The metadata document into ``w``; returns the workflow file (``workflow.json``).
    ``pool`` gives the export workers, if the selection is large enough for them."""
    now = iso(utcnow())
    spec = sel.spec
    what = ", ".join(f"{k} {v}" for k, v in spec.items()) if "all" not in spec else "all"
    w.crate = crate_entities(c, sel)
    w.raw('{"@context":' + dumps([RO_CRATE_1_1, WORKFLOW_RUN_TERMS, LWFM_CONTEXT]) + ',"@graph":[\n')
    w.entity({"@id": METADATA, "@type": "CreativeWork", "about": {"@id": "./"},
              "conformsTo": {"@id": "https://w3id.org/ro/crate/1.1"}})
    has_part = [MAIN] + [urn(d) for d in sel.data] + sorted(p["@id"] for p in payload.values())
    w.entity({"@id": "./", "@type": "Dataset", "name": f"lwfm thread ({what})",
              "description": f"Digital thread exported by lwfm {__version__} from instance {inst} "
                             f"(selection: {what}): jobs as CreateActions, data as Files.",
              "datePublished": now, "license": {"@id": LICENSE},
              "conformsTo": [{"@id": p} for p in PROFILES], "author": {"@id": "#person"},
              "mainEntity": {"@id": MAIN},
              "hasPart": [{"@id": i} for i in has_part],
              "mentions": [{"@id": RUN}] + [{"@id": urn(j)} for j in sel.jobs],
              "lwfm:exportingInstance": {"@id": urn(inst)}, "lwfm:lwfmVersion": __version__,
              "lwfm:bundleFormat": BUNDLE_FORMAT, "lwfm:exportTime": now,
              "lwfm:selection": dumps(spec)})
    w.entity({"@id": "#person", "@type": "Person", "name": _user()})
    w.entity({"@id": LICENSE, "@type": "CreativeWork", "name": "CC BY 4.0"})
    w.entity({"@id": urn(inst), "@type": "lwfm:Instance", "name": f"lwfm instance {inst}"})
    sites: set[tuple[str, str]] = set()
    apps: dict[str, str] = {}
    total = len(sel.jobs) + len(sel.data) + len(sel.workflows) + len(sel.triggers)
    for r in _rows(c, t.workflows, sel.workflows):
        w.entity({"@id": urn(r["id"]), "@type": "lwfm:Workflow",
                  **json_ld(workflow_facts(r)),   # what the graph says too
                  "lwfm:instance": _ref(urn(r["instance_id"])), "lwfm:record": dumps(r)})
    refs = {d: p["@id"] for d, p in payload.items()}
    # a crate node named like a job or data record is merged into it: sequential path
    records = w.crate and any(k.startswith("urn:uuid:") for k in w.crate)
    runs = Runs()
    if len(sel.jobs) + len(sel.data) >= PARALLEL_MIN and workers() > 1 and not records:
        render_parallel(pool(), sel.jobs, sel.data, refs, w, apps, sites, progress, total, runs)
    else:
        done = 0
        for ents in (render_jobs(c, sel.jobs, apps, sites, runs),
                     render_data(c, sel.data, refs, sites)):
            for e in ents:
                w.entity(e)
                done += 1
                if progress and done % 5000 == 0:
                    progress("export", done, total)
    watch = _watch(c, sel.triggers)
    for r in _rows(c, t.triggers, sel.triggers):
        r["watch"] = watch.get(r["id"], [])
        if isinstance(r["body"], dict) and "defn" in r["body"]:
            r["body"] = {**r["body"], "defn": redacted_defn(r["body"]["defn"])}
        w.entity({"@id": urn(r["id"]), "@type": "lwfm:Trigger", "name": f"{r['kind']} trigger",
                  "lwfm:fires": {"@id": urn(r["job_id"])}, "lwfm:triggerStatus": r["status"],
                  "lwfm:watches": [{"@id": urn(j)} for j in r["watch"]], "lwfm:record": dumps(r)})
    for e in workflow_entities(runs, apps, f"lwfm thread ({what})"):
        w.entity(e)
    for app_id, name in sorted(apps.items()):
        w.entity({"@id": app_id, "@type": "SoftwareApplication", "name": name})
    for inst_id, site in sorted(sites):
        w.entity({"@id": site_iri(inst_id, site), "@type": ["Organization", "lwfm:Site"], "name": site,
                  "lwfm:instance": {"@id": urn(inst_id)}})
    for p in sorted(payload.values(), key=lambda e: e["@id"]):
        w.entity(p)
    for _, node in sorted(w.crate.items()):
        w.line(encode_entity(node))
    w.crate = {}
    w.raw("\n]}\n")
    if progress:
        progress("export", total, total)
    return workflow_document(runs, apps)


def crate_entities(c: Any, sel: Selection) -> dict[str, dict[str, Any]]:
    """The nodes of the foreign crates in the selection (those whose workflow it has),
    every triple the crate stated, as entities (:func:`._triples.entities`)."""
    from ._triples import entities
    crates = sorted(c.execute(select(t.crate_nodes.c.crate_id).distinct()).scalars())
    if not crates:
        return {}
    mine = {r["instance_id"] for r in fetch_in(c, t.workflows, "id", sel.workflows,
                                                cols=("instance_id",))}
    chosen = [cid for cid in crates if cid in mine]
    return entities(fetch_in(c, t.crate_nodes, "crate_id", chosen)) if chosen else {}


def render_jobs(c: Any, job_ids: list[str], apps: dict[str, str],
                sites: set[tuple[str, str]], runs: Runs | None = None) -> Iterator[dict[str, Any]]:
    """Job entities (CreateActions) for ``job_ids`` (sorted), with their data links;
    ``runs`` gathers the steps they ran (an export's workflow)."""
    io_map: dict[str, tuple[list[str], list[str]]] = {}
    for r in fetch_in(c, t.data, "job_id", job_ids, cols=("id", "job_id", "direction")):
        io_map.setdefault(r["job_id"], ([], []))[0 if r["direction"] == "get" else 1].append(
            urn(r["id"]))
    hist = _statuses(c, job_ids)
    for r in _rows(c, t.jobs, job_ids):
        jid, statuses = next(hist)
        while jid != r["id"]:  # both streams follow job_ids; rows may skip a vanished id
            jid, statuses = next(hist)
        e = _job_entity(r, statuses, io_map.get(r["id"], ([], [])), apps, sites)
        if runs is not None:
            runs.add(e, step_name(r["defn"]))
        yield e


def render_data(c: Any, data_ids: list[str], refs: dict[str, str],
                sites: set[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Data entities (Files) for ``data_ids`` (sorted); ``refs`` names their payload files."""
    for r in _rows(c, t.data, data_ids):
        sites.add((r["instance_id"], r["site"]))
        yield {"@id": urn(r["id"]), "@type": ["File", "lwfm:DataObject"],
               **json_ld(data_facts(r)),   # what the graph says too
               "sha256": r["sha256"], "lwfm:url": r["url"],
               "lwfm:job": _ref(r["job_id"] and urn(r["job_id"])),
               "isBasedOn": _ref(r["derived_from"] and urn(r["derived_from"])),
               "lwfm:instance": _ref(urn(r["instance_id"])),
               "lwfm:payload": _ref(refs.get(r["id"])), "lwfm:record": dumps(r)}


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _statuses(c: Any, job_ids: list[str]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(job id, its status rows in seq order) for every job id, in the given order."""
    for ch in chunks(job_ids):
        by: dict[str, list[dict[str, Any]]] = {}
        for d in fetch_in(c, t.statuses, "job_id", ch, order="seq"):
            del d["seq"]
            by.setdefault(d.pop("job_id"), []).append(d)
        for j in ch:
            yield j, by.get(j, [])


def _watch(c: Any, ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in fetch_in(c, t.trigger_watch, "trigger_id", ids):
        out.setdefault(r["trigger_id"], []).append(r["job_id"])
    return {k: sorted(v) for k, v in out.items()}


def _job_entity(r: dict[str, Any], statuses: list[dict[str, Any]], io: tuple[list[str], list[str]],
                apps: dict[str, str], sites: set[tuple[str, str]]) -> dict[str, Any]:
    # Secrets never reach a bundle, even from a store written before they were redacted
    # (or under a narrower rule).
    defn = r["defn"] = redacted_defn(r["defn"] or {})
    sites.add((r["instance_id"], r["site"]))
    e: dict[str, Any] = {"@id": urn(r["id"]), "@type": ["CreateAction", "lwfm:Job"],
                         **json_ld(job_facts(r, defn))}   # what the graph says too
    apps[e["instrument"]["@id"]] = software_name(defn.get("entry", ""))   # its program
    state = r["state"]
    failed = [s["info"] for s in statuses if s["state"] in ("FAILED", "CANCELLED") and s["info"]]
    e.update({
        "error": failed[-1] if failed and state in ("FAILED", "CANCELLED") else None,
        "object": [{"@id": i} for i in sorted(io[0])],
        "result": [{"@id": i} for i in sorted(io[1])],
        "lwfm:instance": {"@id": urn(r["instance_id"])},
        "lwfm:record": dumps({"job": r, "statuses": statuses}),
    })
    return e
