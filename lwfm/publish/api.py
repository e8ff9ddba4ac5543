"""``publish``: a selection of the thread as a FAIR dataset, validated, optionally deposited.

Order matters for "refuse with nothing written": every input is checked first, the
bag is built in a hidden temporary folder beside OUT (files copied and hashed once,
checked against the store as they stream; with ``zip`` they stream into a hidden zip
beside it instead), the crate is checked, and only then is
OUT renamed into place and the publish recorded in the store. With ``to``, the DOI
is reserved on a draft before the metadata is written (so it carries the DOI), and
the draft is discarded if the bag is refused.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lwfm.errors import PublishError
from lwfm.model import iso, new_id, utcnow
from lwfm.provenance.vocab import node_iri as urn
from lwfm.starter import claim_alive, hold_claim, release_claim
from lwfm.store import Store

from . import bag as bagmod
from . import datacite, landing, record
from .crate import Facts, write_crate
from .hashing import Digests, hash_bytes
from .licenses import check_license
from .payload import PayloadCopier
from .people import parse_creator
from .selection import PublishSelection, by_data, by_workflow


@dataclass
class PublishResult:
    path: Path
    identifier: str
    dataset_id: str
    job_id: str
    version: int
    previous: str | None
    files: int
    payload_bytes: int
    record_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


_OWNER = ".owner"   # beside a publication's hidden work folder: the claim of its writer


def publish(store: Store, out: Path | str, *, title: str, license: str, creators: list[str],
            workflow_id: str | None = None, data_ids: list[str] | None = None,
            keywords: list[str] | tuple[str, ...] = (), description: str | None = None,
            zip: bool = False, to: str | None = None, home: Path | None = None,
            publisher: str = "lwfm", env: Mapping[str, str] | None = None) -> PublishResult:
    """Publish the selection (exactly one of ``workflow_id``, ``data_ids``) to ``out``.

    ``to`` names a ``[repositories.NAME]`` section of ``home``'s lwfm.toml; the deposit
    uploads the zipped bag (``to`` implies ``zip``). Rerunning after a failed deposit
    resumes it.
    """
    out = Path(out)
    lic = check_license(license)
    people = [parse_creator(c) for c in creators]
    if not people:
        raise PublishError("give at least one --creator \"Name <https://orcid.org/…>\"")
    if (workflow_id is None) == (not data_ids):
        raise PublishError("choose exactly one of --workflow ID, --data ID..., --query FILE.rq")
    zip = zip or to is not None
    depositor = None
    if to is not None:
        from .invenio import open_repository
        depositor = open_repository(home, to, out, os.environ if env is None else env)
        if depositor.resumable():
            return depositor.resume(store)
    if out.exists():
        raise PublishError(f"{out} exists; choose a new -o path (a publication is never "
                           "overwritten)")
    sel = by_workflow(store, workflow_id) if workflow_id else by_data(store, list(data_ids or []))
    prev, version = record.previous_version(store, sel.key)
    job_id, dataset_id, started = new_id(), new_id(), utcnow()
    stamp = str(iso(started))
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(out.parent)
    claim = hold_claim()
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.publishing-", dir=out.parent))
    owner = tmp.with_name(tmp.name + _OWNER)
    owner.write_text(claim)
    copier: PayloadCopier | None = None
    zipped: bagmod.ZipPayload | None = None
    preload = threading.Thread(target=importlib.import_module, args=("datacite.schema45",),
                               name="lwfm-publish-import")
    try:
        if zip:  # the payload streams into the zip, which is not written twice
            zipped = bagmod.ZipPayload(tmp.with_name(tmp.name + ".zip"),
                                       out.name.removesuffix(".zip") or "bag")
        copier = PayloadCopier(sel, tmp / "data", into=zipped)
        if depositor is not None:
            copier.wait()  # a changed file is refused before a draft exists
        preload.start()  # datacite's import costs ~1 s: overlap it with the copies
        identifier = urn(dataset_id)
        facts = Facts(title=title, description=description or _describe(title, sel),
                      license=lic, creators=people, keywords=list(keywords),
                      identifier=identifier, date_published=stamp, version=version,
                      previous=prev.metadata.get("identifier") if prev else None,
                      instance_id=store.instance_id, publish_job_id=job_id)
        if depositor is not None:
            facts.files = copier.wait()
            doi_meta = datacite.datacite_record(facts, publisher,
                                                sum(f.digests.size for f in facts.files))
            datacite.render(doi_meta)  # refuse bad metadata before a draft exists
            earlier = (prev.metadata.get("invenio_record")
                       if prev is not None and prev.metadata.get("repository") == to else None)
            facts.identifier = depositor.reserve(doi_meta, earlier)
        try:
            tags = _write_documents(store, sel, facts, tmp, publisher, copier)
        except BaseException:
            if depositor is not None:
                depositor.discard()
            raise
        files = facts.files
        payload_bytes = sum(f.digests.size for f in files)
        payload = {f"data/{f.rel}": f.digests for f in files}
        payload.update(tags.pop("payload"))
        bagmod.write_bag(tmp, payload, {
            "Bagging-Date": started.date().isoformat(), "lwfm-Instance": store.instance_id,
            "lwfm-Publish-Time": stamp, "External-Identifier": facts.identifier,
            "External-Description": title.strip()[:200], "Bag-Count": "1 of 1",
        }, tags["tag"])
        final = tmp
        if zipped is not None:
            final = zipped.path
            bagmod.zip_bag(tmp, zipped)
        pending = _pending_record(sel, facts, out, dataset_id, job_id, started, title, lic.id,
                                  version, prev, zip, final)
        os.replace(final, out)
    except BaseException:
        if copier is not None:
            copier.close()  # before the folder goes: no copy may still be writing in it
        if zipped is not None:
            with contextlib.suppress(OSError, ValueError):  # it is removed below anyway
                zipped.zf.close()
        if preload.is_alive():
            preload.join()
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.with_name(tmp.name + ".zip").unlink(missing_ok=True)
        _release(owner, claim)
        raise
    copier.close()  # all copies are done: wait() returned
    preload.join()
    if zip:
        shutil.rmtree(tmp, ignore_errors=True)
    _release(owner, claim)
    result = PublishResult(out, facts.identifier, dataset_id, job_id, version,
                           facts.previous, len(files), payload_bytes)
    if depositor is not None:
        depositor.save_pending(pending, result.to_dict())
        return depositor.resume(store)
    finish_record(store, pending)
    return result


def sweep_abandoned(folder: Path) -> list[Path]:
    """Remove what publications killed mid-way (kill -9, power loss) left in ``folder``:
    each hidden work folder (and zip) sits beside an owner file naming the process that
    writes it; once that process is gone, nobody will finish it. Returns what went."""
    gone = []
    for owner in folder.glob(f".*.publishing-*{_OWNER}"):
        try:
            claim = owner.read_text().strip()
        except OSError:
            continue
        if not claim or claim_alive(claim):
            continue
        work = owner.with_name(owner.name.removesuffix(_OWNER))
        shutil.rmtree(work, ignore_errors=True)
        work.with_name(work.name + ".zip").unlink(missing_ok=True)
        owner.unlink(missing_ok=True)
        gone.append(work)
    return gone


def _release(owner: Path, claim: str) -> None:
    owner.unlink(missing_ok=True)
    release_claim(claim)


def _describe(title: str, sel: PublishSelection) -> str:
    what = ", ".join(f"{k} {v if isinstance(v, str) else len(v)}" for k, v in sel.spec.items())
    return (f"{title.strip()}: {len(sel.included)} files with the provenance of the "
            f"{len(sel.closure.jobs)} jobs that made them (lwfm selection: {what}).")


def _write_documents(store: Store, sel: PublishSelection, facts: Facts, tmp: Path,
                     publisher: str, copier: PayloadCopier) -> dict[str, dict[str, Digests]]:
    data = tmp / "data"
    res = write_crate(store, sel, facts, data, copier.planned, copier.wait, copier.elsewhere)
    rec = datacite.datacite_record(facts, publisher, sum(f.digests.size for f in facts.files))
    js, xml = datacite.render(rec)
    (tmp / "metadata").mkdir()
    (tmp / "metadata" / "datacite.json").write_bytes(js)
    (tmp / "metadata" / "datacite.xml").write_bytes(xml)
    summary = {"jobs": len(sel.closure.jobs), "data": len(sel.closure.data), "sites": res.sites}
    html = landing.page(facts, res.jobs, res.names, summary)
    ls = landing.linkset(facts)
    (data / "ro-crate-preview.html").write_bytes(html)
    (data / landing.LINKSET).write_bytes(ls)
    return {"payload": {"data/ro-crate-metadata.json": res.metadata,
                        "data/workflow.json": res.workflow,
                        "data/provenance.json": res.prov,
                        "data/ro-crate-preview.html": hash_bytes(html),
                        f"data/{landing.LINKSET}": hash_bytes(ls)},
            "tag": {"metadata/datacite.json": hash_bytes(js),
                    "metadata/datacite.xml": hash_bytes(xml)}}


def _pending_record(sel: PublishSelection, f: Facts, out: Path, dataset_id: str, job_id: str,
                    started: Any, title: str, license_id: str, version: int, prev: Any,
                    zipped: bool, final: Path) -> dict[str, Any]:
    """What :func:`finish_record` writes, as JSON (a deposit keeps it until it is done)."""
    # No sha256 for the bag itself: its manifests hold every file's, and hashing the zip
    # would read the whole payload a second time.
    return {"job_id": job_id, "dataset_id": dataset_id, "started": iso(started),
            "title": title, "license": license_id, "version": version, "key": sel.key,
            "previous_id": prev.id if prev else None, "identifier": f.identifier,
            "url": out.resolve().as_uri(),
            "size": final.stat().st_size if zipped else None, "sha256": None,
            "media_type": "application/zip" if zipped else "application/x-bagit",
            # Not in the selected workflow: a later publish of it must not take this
            # dataset (or its reads) for one of the workflow's own files.
            "workflow_id": None, "spec": sel.spec,
            "uses": [[x.row.id, x.row.url, x.digests.sha256, x.digests.size, x.row.media_type]
                     for x in f.files]}


def finish_record(store: Store, p: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    """Record the publish job, the files it used and the dataset it generated."""
    from lwfm.model import parse_time
    started, ended = parse_time(p["started"]), utcnow()
    assert started is not None  # written by _pending_record
    prev = store.get_data(p["previous_id"]) if p["previous_id"] else None
    uses = [record.used_object(i, url, sha, size, mt, started) for i, url, sha, size, mt in p["uses"]]
    ds = record.dataset_object(p["dataset_id"], p["url"], identifier=p["identifier"],
                               title=p["title"], license_id=p["license"], version=p["version"],
                               key=p["key"], previous=prev, size=p["size"], sha256=p["sha256"],
                               media_type=p["media_type"], time=ended, extra=extra)
    args = [f"--{k}={v if isinstance(v, str) else ','.join(v)}" for k, v in sorted(p["spec"].items())]
    record.record_publish(store, job_id=p["job_id"], dataset_id=p["dataset_id"], started=started,
                          ended=ended, name=f"publish {p['title'].strip()[:80]}", args=args,
                          workflow_id=p["workflow_id"], uses=uses, dataset=ds)


__all__ = ["PublishResult", "finish_record", "publish"]
