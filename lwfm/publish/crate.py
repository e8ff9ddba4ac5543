"""The published RO-Crate: the exporter's mapping of the thread, plus what publishing adds.

Jobs and data become JSON-LD through the bundle exporter's own functions
(``render_jobs``/``render_data``), so there is one rows -> linked data mapping. This
layer adds the FAIR facts (license, creators by ORCID, datePublished, identifier,
sha512 next to sha256) and the Provenance Run Crate structure: the thread as a
ComputationalWorkflow (``workflow.json``, every job's definition) with one HowToStep
and ControlAction per job, an OrganizeAction for lwfm, and the publish action itself.
Entities are streamed to disk one per line; the document is hashed as it is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import orjson

from lwfm import __version__
from lwfm.bundles._common import (LWFM_CONTEXT, METADATA, PROCESS_RUN_CRATE, RO_CRATE_1_1,
                                  WORKFLOW_RUN_TERMS)
from lwfm.bundles._crate import _Writer, dumps, render_data, render_jobs
from lwfm.provenance.vocab import node_iri as urn
from lwfm.provenance.vocab import site_iri
from lwfm.store import Store

from .checks import CrateChecker
from .hashing import Digests, hash_bytes
from .licenses import License
from .people import Creator
from .provjson import ProvDoc
from .selection import DataRow, PublishSelection
from .sink import HashingFile

WORKFLOW_RUN_CRATE = "https://w3id.org/ro/wfrun/workflow/0.5"
PROVENANCE_RUN_CRATE = "https://w3id.org/ro/wfrun/provenance/0.5"
WORKFLOW_RO_CRATE = "https://w3id.org/workflowhub/workflow-ro-crate/1.0"
PROFILES = {PROCESS_RUN_CRATE: ("Process Run Crate", "0.5"),
            WORKFLOW_RUN_CRATE: ("Workflow Run Crate", "0.5"),
            PROVENANCE_RUN_CRATE: ("Provenance Run Crate", "0.5"),
            WORKFLOW_RO_CRATE: ("Workflow RO-Crate", "1.0")}
WORKFLOW_FILE = "workflow.json"
PROV_FILE = "provenance.json"
ENGINE = "#lwfm"
LANGUAGE = "#lwfm-job-definitions"
# RO-Crate 1.1's context plus the Workflow Run terms (sha256 and friends, which 1.1
# lacks). ComputationalWorkflow stays pinned to the IRI RO-Crate 1.1 gives it (RO-Crate
# 1.3 moved it under bioschemas.org/terms/, which the Workflow RO-Crate profile rejects).
CONTEXT = [RO_CRATE_1_1, WORKFLOW_RUN_TERMS, {**LWFM_CONTEXT, "wfrun": "https://w3id.org/ro/terms/workflow-run#",
                          "ComputationalWorkflow": "https://bioschemas.org/ComputationalWorkflow"}]


@dataclass
class IncludedFile:
    rel: str            # path inside the crate (data/ of the bag)
    row: DataRow
    digests: Digests


@dataclass
class Facts:
    """What publish knows beyond the thread: the FAIR metadata of the dataset."""

    title: str
    description: str
    license: License
    creators: list[Creator]
    keywords: list[str]
    identifier: str           # the DOI URL once reserved, else the dataset's urn:uuid
    date_published: str
    version: int
    previous: str | None      # identifier of the version this one replaces
    instance_id: str
    publish_job_id: str
    files: list[IncludedFile] = field(default_factory=list)


@dataclass
class CrateResult:
    metadata: Digests
    workflow: Digests
    prov: Digests
    jobs: list[tuple[str, str, list[str], list[str]]]  # (job iri, name, used, generated) for the picture
    entities: int
    sites: int
    names: dict[str, str]  # data object iri -> file name, for the picture


def _one(refs: list[dict[str, str]]) -> dict[str, str] | list[dict[str, str]]:
    """A single value rather than a singleton array (RO-Crate 1.1's JSON-LD advice)."""
    return refs[0] if len(refs) == 1 else refs


def _person(c: Creator) -> dict[str, Any]:
    return {"@id": c.iri, "@type": "Person", "name": c.name, "identifier": c.iri}


def write_crate(store: Store, sel: PublishSelection, facts: Facts, root: Path,
                planned: list[tuple[str, DataRow]],
                wait_files: Callable[[], list[IncludedFile]],
                elsewhere: bool = False) -> CrateResult:
    """Write ``ro-crate-metadata.json``, ``workflow.json`` and ``provenance.json`` into
    ``root``; checks them as they stream (``CrateChecker``) and raises PublishError
    before returning if not. ``planned`` names the included files (their copies may
    still be running); ``wait_files`` gives their digests, asked for last, and fills
    ``facts.files``. ``elsewhere``: the files went straight into the zipped bag, not
    under ``root``."""
    chk = CrateChecker(root)
    wf_sink = HashingFile(root / WORKFLOW_FILE)
    md_sink = HashingFile(root / METADATA)
    try:
        cw = _CrateWriter(sel, facts, _Writer(md_sink), chk, planned, elsewhere)
        cw.head()
        with store.read() as conn:
            cw.thread(conn, wf_sink)
        prov = cw.tail(wait_files)
    finally:
        wf_sink.close()
        md_sink.close()
    chk.finish()
    jobs = [cw.jobs[i] for _, i in sorted(cw.timed)]  # the picture reads in time order
    return CrateResult(md_sink.digests(), wf_sink.digests(), prov, jobs, cw.n, len(cw.sites),
                       cw.names)


class _CrateWriter:
    """The crate's entities in three parts: the root and its context, the thread (one
    pass over the exporter's job and data entities), and what is known only after it."""

    def __init__(self, sel: PublishSelection, f: Facts, w: _Writer, chk: CrateChecker,
                 planned: list[tuple[str, DataRow]], elsewhere: bool = False):
        self.sel, self.f, self.w, self.chk, self.planned = sel, f, w, chk, planned
        self.elsewhere = elsewhere
        self.n = 0
        self.prov = ProvDoc()
        self.creators = [{"@id": c.iri} for c in f.creators]
        self.publish_iri = urn(f.publish_job_id)
        self.file_iris = [urn(r.id) for _, r in planned]
        self.apps: dict[str, str] = {}
        self.sites: set[tuple[str, str]] = set()
        self.jobs: list[tuple[str, str, list[str], list[str]]] = []
        self.timed: list[tuple[str, int]] = []
        self.names: dict[str, str] = {}
        self.steps: list[str] = []
        self.starts: list[str] = []
        self.ends: list[str] = []

    def emit(self, e: dict[str, Any], mapped: bool = False) -> None:
        (self.chk.register if mapped else self.chk.see)(e)
        self.w.entity(e)
        self.n += 1

    def head(self) -> None:
        f, emit = self.f, self.emit
        self.w.raw('{"@context":' + dumps(CONTEXT) + ',"@graph":[\n')
        emit({"@id": METADATA, "@type": "CreativeWork", "about": {"@id": "./"},
              "conformsTo": [{"@id": "https://w3id.org/ro/crate/1.1"},
                             {"@id": WORKFLOW_RO_CRATE}]})
        emit({"@id": "./", "@type": "Dataset", "name": f.title, "description": f.description,
              "datePublished": f.date_published, "identifier": f.identifier,
              "license": {"@id": f.license.url}, "creator": _one(self.creators),
              "author": _one(self.creators), "keywords": ", ".join(f.keywords) or None,
              "version": str(f.version),
              "conformsTo": [{"@id": p} for p in PROFILES],
              "mainEntity": {"@id": WORKFLOW_FILE},
              "hasPart": [{"@id": i} for i in [WORKFLOW_FILE, PROV_FILE,
                                               *(rel for rel, _ in self.planned)]]
              + [{"@id": urn(d)} for d in self.sel.closure.data],
              "mentions": [{"@id": "#run"}, {"@id": self.publish_iri}],
              "isBasedOn": {"@id": f.previous} if f.previous else None,
              "publisher": {"@id": urn(f.instance_id)},
              "lwfm:selection": dumps(self.sel.spec), "lwfm:lwfmVersion": __version__})
        for c in f.creators:
            emit(_person(c))
        emit({"@id": f.license.url, "@type": "CreativeWork", "name": f.license.name,
              "identifier": f.license.id})
        for p, (name, version) in PROFILES.items():
            emit({"@id": p, "@type": "CreativeWork", "name": name, "version": version})
        emit({"@id": urn(f.instance_id), "@type": ["Organization", "lwfm:Instance"],
              "name": f"lwfm instance {f.instance_id}"})
        emit({"@id": ENGINE, "@type": "SoftwareApplication", "name": "lwfm",
              "version": __version__, "url": "https://w3id.org/lwfm"})
        emit({"@id": LANGUAGE, "@type": "ComputerLanguage", "name": "lwfm job definitions",
              "version": __version__})

    def thread(self, conn: Any, wf: HashingFile) -> None:
        """Every job (with its HowToStep, ControlAction and definition) and data object."""
        closure, emit = self.sel.closure, self.emit
        refs = {r.id: rel for rel, r in self.planned}
        wf.write(b'{"lwfm":"' + __version__.encode() + b'","selection":'
                 + orjson.dumps(self.sel.spec) + b',"steps":[\n')
        for pos, e in enumerate(render_jobs(conn, closure.jobs, self.apps, self.sites)):
            jid = e["@id"]
            step = f"#step-{jid[9:]}"
            emit(e, mapped=True)
            self.prov.job(e)
            emit({"@id": step, "@type": "HowToStep", "name": e["name"], "position": str(pos),
                  "workExample": e["instrument"]})
            emit({"@id": f"#control-{jid[9:]}", "@type": "ControlAction",
                  "name": f"orchestrate {e['name']}", "instrument": {"@id": step},
                  "object": {"@id": jid}, "startTime": e.get("startTime"),
                  "endTime": e.get("endTime")})
            self.steps.append(step)
            job = orjson.loads(e["lwfm:record"])["job"]
            wf.write((b",\n" if pos else b"") + orjson.dumps(
                {"step": pos, "job": job["id"], "name": job["name"], "site": job["site"],
                 "parent": job["parent_id"], "definition": job["defn"]},
                option=orjson.OPT_SORT_KEYS))
            if e.get("startTime"):
                self.starts.append(e["startTime"])
            if e.get("endTime"):
                self.ends.append(e["endTime"])
            self.timed.append((e.get("startTime") or "", pos))
            self.jobs.append((jid, e["name"], [o["@id"] for o in e.get("object", [])],
                              [o["@id"] for o in e.get("result", [])]))
        wf.write(b"\n]}\n")
        for e in render_data(conn, closure.data, refs, self.sites):
            emit(e, mapped=True)
            self.names[e["@id"]] = e["name"]
            self.prov.data(e)

    def tail(self, wait_files: Callable[[], list[IncludedFile]]) -> Digests:
        """The workflow, its run, lwfm's orchestration, the publish action, the tools,
        sites and included files; writes provenance.json and returns its digests."""
        f, emit = self.f, self.emit
        produced = {r for _, _, _, out in self.jobs for r in out}
        consumed = sorted({i for _, _, used, _ in self.jobs for i in used} - produced)
        emit({"@id": WORKFLOW_FILE, "@type": ["File", "SoftwareSourceCode",
                                              "ComputationalWorkflow", "HowTo"],
              "name": f"lwfm thread: {f.title}", "encodingFormat": "application/json",
              "version": __version__,
              "programmingLanguage": {"@id": LANGUAGE},
              "hasPart": [{"@id": a} for a in sorted(self.apps)],
              "step": [{"@id": s} for s in self.steps]})
        emit({"@id": "#run", "@type": "CreateAction", "name": f"run of {f.title}",
              "instrument": {"@id": WORKFLOW_FILE}, "object": [{"@id": i} for i in consumed],
              "result": [{"@id": i} for i in self.file_iris],
              "startTime": min(self.starts, default=None),
              "endTime": max(self.ends, default=None), "agent": _one(self.creators)})
        emit({"@id": "#organize", "@type": "OrganizeAction", "name": "lwfm orchestration",
              "instrument": {"@id": ENGINE}, "result": {"@id": "#run"},
              "object": [{"@id": s.replace("#step-", "#control-")} for s in self.steps]})
        emit({"@id": self.publish_iri, "@type": ["CreateAction", "lwfm:Job"], "name": "publish",
              "instrument": {"@id": ENGINE}, "agent": _one(self.creators),
              "object": [{"@id": i} for i in self.file_iris], "result": {"@id": "./"},
              "endTime": f.date_published,
              "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"}})
        self.prov.publish(self.publish_iri, self.file_iris, f.identifier,
                          [c.iri for c in f.creators], f.date_published)
        body = self.prov.dump()
        (self.chk.root / PROV_FILE).write_bytes(body)
        emit({"@id": PROV_FILE, "@type": "File", "name": "the provenance as W3C PROV-JSON",
              "encodingFormat": "application/json", "contentSize": str(len(body)),
              "conformsTo": {"@id": "https://www.w3.org/submissions/prov-json/"},
              "about": {"@id": "./"}})
        for app_id, name in sorted(self.apps.items()):
            emit({"@id": app_id, "@type": "SoftwareApplication", "name": name})
        for inst_id, site in sorted(self.sites):
            emit({"@id": site_iri(inst_id, site), "@type": ["Organization", "lwfm:Site"],
                  "name": site, "lwfm:instance": {"@id": urn(inst_id)}})
        f.files = wait_files()
        if self.elsewhere:
            self.chk.elsewhere.update({x.rel: x.digests.size for x in f.files})
        for x in f.files:
            emit({"@id": x.rel, "@type": "File", "name": Path(x.rel).name,
                  "sha256": x.digests.sha256, "lwfm:sha512": x.digests.sha512,
                  "contentSize": str(x.digests.size), "encodingFormat": x.row.media_type,
                  "lwfm:payloadOf": {"@id": urn(x.row.id)}})
        self.w.raw("\n]}\n")
        self.w.flush()
        return hash_bytes(body)
