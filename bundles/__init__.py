"""Bundles: a thread exported as a zipped RO-Crate, and its import and merge.

``export_bundle`` writes the closure of a selection (a job, a workflow, a time,
everything) from the SQL store; ``import_bundle`` vets a bundle, merges it into
another instance's store in one transaction and records which bundle brought
what; ``list_bundles`` shows those imports. Store and Config are passed in, so
these work with or without a Manager.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import DataError, IntegrityError, StatementError

from lwfm.errors import BundleError
from lwfm.model import iso, utcnow
from lwfm.store import Store, t

from . import _merge
from ._common import (METADATA, Conflict, ExportResult, ImportReport, Limits, ProgressFn,
                      derived_id, sha256_file)
from ._crate import export_bundle
from ._foreign import read_foreign
from ._reader import Incoming, entities, read_lwfm
from ._safety import SafeZip, check_jsonld, open_zip, parse_metadata

__all__ = ["BundleError", "Conflict", "ExportResult", "ImportReport", "Limits", "export_bundle",
           "import_bundle", "list_bundles"]

MODES = ("fail", "keep", "theirs")


def import_bundle(store: Store, config: Any, path: Path, *, dry_run: bool = False,
                  on_conflict: str = "fail", progress: ProgressFn | None = None,
                  limits: Limits | None = None) -> ImportReport:
    """Vet, map and merge a bundle (lwfm's or a foreign RO-Crate); all or nothing."""
    if on_conflict not in MODES:
        raise BundleError(f"on_conflict must be one of {', '.join(MODES)}, not {on_conflict!r}")
    limits = limits or Limits()
    path = Path(path)
    sz = open_zip(path, limits)
    try:
        sha, _ = sha256_file(path)
        earlier = _same_file_imported(store, sha, on_conflict)
        if earlier is not None:
            return ImportReport(file=path.name, sha256=sha, origin_instance=earlier["origin_instance"],
                                foreign=bool(earlier["summary"].get("foreign")), dry_run=dry_run,
                                already_imported=earlier["id"])
        inc = _read(sz, str(path), sha, limits)
        if inc.origin == store.instance_id:
            raise BundleError(f"{path}: this bundle was exported by this very instance "
                              f"({store.instance_id}); importing it into itself is refused")
        rep = ImportReport(file=path.name, sha256=sha, origin_instance=inc.origin,
                           foreign=inc.foreign, dry_run=dry_run, unmapped=list(inc.unmapped))
        if progress:
            progress("import", 0, 3)
        staged, tmpdir = _stage_payload(store, config, sz, inc, dry_run)
        try:
            return _merge_all(store, path, inc, rep, staged, on_conflict, dry_run, progress)
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
    finally:
        sz.close()


def _same_file_imported(store: Store, sha: str, mode: str) -> dict[str, Any] | None:
    """An earlier import of this exact file that makes importing it again a no-op.

    Merging only ever adds facts, so a bundle merged once (without conflicts, or with
    the same conflict choice) adds nothing the second time: skip re-reading it.
    """
    for b in list_bundles(store, sha256=sha):
        s = b["summary"]
        if s.get("conflicts", 0) == 0 or s.get("on_conflict") == mode:
            return b
    return None


def _read(sz: SafeZip, where: str, sha: str, limits: Limits) -> Incoming:
    raw = sz.read(METADATA, limits.max_metadata_bytes)
    doc = parse_metadata(raw, where, limits)
    del raw
    check_jsonld(doc, where)
    by_id, root = entities(doc, where)
    if "lwfm:bundleFormat" in root:
        inc = read_lwfm(by_id, root, where, set(sz.entries))
    else:
        inc = read_foreign(by_id, root, where, sha)
    for kind, rows in (("workflow", inc.workflows), ("job", inc.jobs), ("data", inc.data),
                       ("trigger", inc.triggers)):
        if len({r["id"] for r in rows}) != len(rows):
            raise BundleError(f"{where}: two {kind} records share one id")
    return inc


def _stage_payload(store: Store, config: Any, sz: SafeZip, inc: Incoming,
                   dry_run: bool) -> tuple[list[tuple[Path, Path]], Path | None]:
    """Extract and verify payload files into a temp dir; add their local-copy data rows."""
    if not inc.payload:
        return [], None
    copy_ids = {p.data_id: derived_id("payload-copy", p.data_id) for p in inc.payload}
    with store.read() as c:
        have = set(c.execute(select(t.data.c.id).where(t.data.c.id.in_(list(copy_ids.values()))))
                   .scalars())
    data_dir = Path(config.data_dir)
    tmpdir = None if dry_run else data_dir / f".incoming-{uuid.uuid4()}"
    if tmpdir is not None:
        tmpdir.mkdir(parents=True)
    staged: list[tuple[Path, Path]] = []
    rows = {d["id"]: d for d in inc.data}
    now = iso(utcnow())
    try:
        for i, p in enumerate(inc.payload):
            known = copy_ids[p.data_id] in have
            tmp = None if tmpdir is None or known else tmpdir / str(i)
            _extract(sz, p.member, p.sha256, p.size, tmp)  # verified even when known
            if known:
                continue
            dest = data_dir / inc.origin / p.data_id / p.member.rsplit("/", 1)[-1]
            if tmp is not None:
                staged.append((tmp, dest))
            orig = rows[p.data_id]
            inc.data.append({"id": copy_ids[p.data_id], "url": str(dest), "site": "local",
                             "direction": "get", "metadata": {}, "size": p.size, "sha256": p.sha256,
                             "media_type": orig["media_type"], "job_id": None,
                             "workflow_id": orig["workflow_id"], "derived_from": p.data_id,
                             "time": now, "instance_id": store.instance_id})
    except BaseException:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return staged, tmpdir


def _extract(sz: SafeZip, member: str, sha: str, size: int, dest: Path | None) -> None:
    import hashlib
    h, n = hashlib.sha256(), 0
    out = open(dest, "wb") if dest is not None else None
    try:
        with sz.open(member) as f:
            while chunk := f.read(1 << 20):
                n += len(chunk)
                if n > size:
                    break
                h.update(chunk)
                if out is not None:
                    out.write(chunk)
    except BundleError:
        raise
    except Exception as e:  # zipfile raises BadZipFile on a CRC error, zlib.error on garbage
        raise BundleError(f"{sz.path}: payload {member} is corrupt ({e})") from None
    finally:
        if out is not None:
            out.close()
    if n != size or h.hexdigest() != sha:
        raise BundleError(f"{sz.path}: checksum mismatch for payload {member}: the bundle lists "
                          f"sha256 {sha} ({size} bytes), the file has {h.hexdigest()} ({n} bytes)")


def _merge_all(store: Store, path: Path, inc: Incoming, rep: ImportReport,
               staged: list[tuple[Path, Path]], mode: str, dry_run: bool,
               progress: ProgressFn | None) -> ImportReport:
    moved: list[Path] = []
    try:
        with (store.read() if dry_run else store.write()) as c:
            plan = _merge.plan_merge(c, inc, mode)
            rep.conflicts = plan.conflicts
            rep.added, rep.updated = plan.added(), plan.updated()
            rep.unchanged = dict(plan.unchanged)
            rep.payload_files = len(staged) if not dry_run else len(inc.payload)
            if progress:
                progress("import", 1, 3)
            if plan.conflicts and mode == "fail":
                for cf in plan.conflicts:
                    cf.resolution = "refused"
                if dry_run:
                    return rep
                listing = "\n  ".join(str(cf) for cf in plan.conflicts[:50])
                more = len(plan.conflicts) - 50
                raise BundleError(f"{path}: {len(plan.conflicts)} conflict(s) with the local store; "
                                  f"nothing imported. Re-run with --on-conflict keep|theirs to choose:"
                                  f"\n  {listing}" + (f"\n  ... and {more} more" if more > 0 else ""))
            if dry_run or plan.empty:
                return rep
            try:
                items = _merge.apply_plan(c, store, plan)
            except (IntegrityError, DataError, StatementError, UnicodeError) as e:
                raise BundleError(f"{path}: the store refused the bundle's rows "
                                  f"({str(e.orig if hasattr(e, 'orig') else e)[:300]})") from None
            rep.bundle_id = str(uuid.uuid4())
            summary = {"added": rep.added, "updated": rep.updated, "foreign": inc.foreign,
                       "conflicts": len(rep.conflicts), "on_conflict": mode, **inc.info}
            c.execute(insert(t.bundles).values(
                id=rep.bundle_id, origin_instance=inc.origin, file_name=path.name[:1000],
                sha256=rep.sha256, imported_at=iso(utcnow()), summary=summary))
            _merge.bulk_insert(c, store, t.bundle_items,
                               [{"bundle_id": rep.bundle_id, **it} for it in items])
            store.journal(c, "bundle", [rep.bundle_id])
            if progress:
                progress("import", 2, 3)
            for tmp, dest in staged:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, dest)
                moved.append(dest)
    except BaseException:
        for d in moved:
            d.unlink(missing_ok=True)
        raise
    if progress:
        progress("import", 3, 3)
    return rep


def list_bundles(store: Store, *, sha256: str | None = None) -> list[dict[str, Any]]:
    """Imported bundles, oldest first: id, origin instance, file, sha256, when, summary."""
    q = select(t.bundles).order_by(t.bundles.c.imported_at)
    if sha256:
        q = q.where(t.bundles.c.sha256 == sha256)
    with store.read() as c:
        rows = c.execute(q).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        if isinstance(d.get("summary"), str):
            d["summary"] = json.loads(d["summary"])
        out.append(d)
    return out
