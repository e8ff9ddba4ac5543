"""Import orchestration: vet, read (streamed when large), stage payload, merge, record.

Everything is written inside ONE store transaction; payload files are extracted and
verified in a temp dir first and moved into ``data_dir/<origin>/...`` only at the end
of that transaction, and removed again if it fails.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import DataError, IntegrityError, StatementError

from lwfm.errors import BundleError
from lwfm.model import iso, new_id, utcnow
from lwfm.provenance.vocab import crate_graph_iri
from lwfm.store import Store, t

from ._common import (METADATA, ImportReport, Limits, ProgressFn, derived_id, no_cyclic_gc,
                      sha256_file)
from ._crate_child import CrateChild
from ._crate_child import wanted as crate_child_wanted
from ._foreign import crate_origin, foreign_batches
from ._merge import Merger
from ._reader import Incoming, Payload, entities, read_lwfm
from ._safety import SafeZip, check_jsonld, lwfm_layout, open_zip, parse_metadata
from ._stream import NotStreamable, child_batches
from ._triples import crate_rows

MODES = ("fail", "keep", "theirs")
# The tables a foreign crate's mapped rows fill: complete before its triples are stored.
_SETTLED = (t.workflows, t.jobs, t.statuses, t.data, t.data_meta)
STREAM_MIN_BYTES = 16 << 20   # metadata at least this large is read by a child process
BATCH = 5000                  # records merged per step of a streamed import


def import_bundle(store: Store, config: Any, path: Path, *, dry_run: bool = False,
                  on_conflict: str = "fail", progress: ProgressFn | None = None,
                  limits: Limits | None = None) -> ImportReport:
    if on_conflict not in MODES:
        raise BundleError(f"on_conflict must be one of {', '.join(MODES)}, not {on_conflict!r}")
    limits = limits or Limits()
    path = Path(path)
    sz = open_zip(path, limits)
    try:
        with no_cyclic_gc():
            return _import(store, config, path, sz, dry_run, on_conflict, progress, limits)
    finally:
        sz.close()


def _import(store: Store, config: Any, path: Path, sz: SafeZip, dry_run: bool, on_conflict: str,
            progress: ProgressFn | None, limits: Limits) -> ImportReport:
    sha, _ = sha256_file(path)
    earlier = _same_file_imported(store, sha, on_conflict)
    if earlier is not None:
        return ImportReport(file=path.name, sha256=sha, origin_instance=earlier["origin_instance"],
                            foreign=bool(earlier["summary"].get("foreign")), dry_run=dry_run,
                            already_imported=earlier["id"])
    job = _Import(store, config, path, sz, sha, on_conflict, dry_run, progress, limits)
    if sz.entries[METADATA].file_size >= STREAM_MIN_BYTES and lwfm_layout(sz):
        try:
            return job.run(job.streamed())
        except NotStreamable:   # raised before any batch was merged
            pass
    return job.run(job.whole())


def _same_file_imported(store: Store, sha: str, mode: str) -> dict[str, Any] | None:
    """An earlier import of this exact file that makes importing it again a no-op.

    Merging only ever adds facts, so a bundle merged once (without conflicts, or with
    the same conflict choice) adds nothing the second time: skip re-reading it.
    """
    from . import list_bundles
    for b in list_bundles(store, sha256=sha):
        s = b["summary"]
        if s.get("conflicts", 0) == 0 or s.get("on_conflict") == mode:
            return b
    return None


class _Import:
    def __init__(self, store: Store, config: Any, path: Path, sz: SafeZip, sha: str, mode: str,
                 dry_run: bool, progress: ProgressFn | None, limits: Limits):
        self.store, self.config, self.path, self.sz, self.sha = store, config, path, sz, sha
        self.mode, self.dry_run, self.progress, self.limits = mode, dry_run, progress, limits
        self.where = str(path)
        self.head: Incoming | None = None
        self.payload: list[Payload] = []
        self.data_rows: dict[str, dict[str, Any]] = {}   # payload data id -> its row
        self.merger: Merger | None = None

    # -- sources of batches -------------------------------------------------------------
    def whole(self) -> Iterator[Incoming]:
        raw = self.sz.read(METADATA, self.limits.max_metadata_bytes)
        doc = parse_metadata(raw, self.where, self.limits)
        check_jsonld(doc, self.where)
        by_id, root = entities(doc, self.where)
        foreign = "lwfm:bundleFormat" not in root
        child: CrateChild | None = None
        if foreign and crate_child_wanted(len(by_id)):
            # its triples are parsed on another core while this one maps and writes rows
            try:
                child = CrateChild(raw, crate_origin(root, self.sha), self.where, self.limits)
            except OSError:   # no room for its input, no process to be had: parse them here
                child = None
        del raw
        try:
            yield from self._whole(doc, by_id, root, child)
        finally:
            if child is not None:
                child.close()

    def _whole(self, doc: dict[str, Any], by_id: dict[str, dict[str, Any]], root: dict[str, Any],
               child: CrateChild | None) -> Iterator[Incoming]:
        foreign = "lwfm:bundleFormat" not in root
        if not foreign:
            incs: Iterator[Incoming] = iter([read_lwfm(by_id, root, self.where, set(self.sz.entries))])
        else:   # mapped in batches: the first is written while the next are mapped
            incs = foreign_batches(by_id, root, self.where, self.sha, BATCH)
        seen: dict[str, set[str]] = {}
        for inc in incs:
            for kind, rows in (("workflow", inc.workflows), ("job", inc.jobs),
                               ("data", inc.data), ("trigger", inc.triggers)):
                ids = seen.setdefault(kind, set())
                n = len(ids)
                ids.update(r["id"] for r in rows)
                if len(ids) != n + len(rows):
                    raise BundleError(f"{self.where}: two {kind} records share one id")
            if self.head is None:
                if foreign:
                    inc.info["crate_graph"] = crate_graph_iri(inc.origin)
                self._start(inc)
                self.payload = inc.payload
                self.data_rows = {d["id"]: d for d in inc.data}
            yield inc
        assert self.head is not None
        if foreign and self.merger is not None:
            self.merger.settle(_SETTLED)   # their indexes, built while the triples are read
        if foreign:   # the crate's own triples: parsed while the writer stores the rows
            nodes = child.rows() if child is not None else crate_rows(doc, self.head.origin,
                                                                       self.where)
            yield Incoming(origin=self.head.origin, foreign=True, crate_nodes=nodes)

    def streamed(self) -> Iterator[Incoming]:
        done = 0
        for inc in child_batches(self.path, self.limits, BATCH):
            if self.head is None:
                self._start(inc)
            self._keep_payload_rows(inc)
            self.payload += inc.payload
            done += len(inc.jobs) + len(inc.data)
            if self.progress:
                self.progress("import", done, done + BATCH)
            yield inc

    def _keep_payload_rows(self, inc: Incoming) -> None:
        # Payload entities come last; the rows they copy are few enough to keep (url, type).
        for d in inc.data:
            self.data_rows[d["id"]] = {"media_type": d["media_type"], "workflow_id": d["workflow_id"]}

    def _start(self, head: Incoming) -> None:
        if head.origin == self.store.instance_id:
            raise BundleError(f"{self.path}: this bundle was exported by this very instance "
                              f"({self.store.instance_id}); importing it into itself is refused")
        self.head = head

    # -- the transaction ----------------------------------------------------------------
    def run(self, batches: Iterator[Incoming]) -> ImportReport:
        bundle_id = new_id()
        moved: list[Path] = []
        tmpdir: Path | None = None
        try:
            with (self.store.read() if self.dry_run else self.store.write(bulk=True)) as c, \
                    (nullcontext(c) if self.dry_run else self.store.read()) as r:
                m = self.merger = Merger(c, r, self.store, self.mode, self.dry_run, bundle_id)
                try:
                    for inc in batches:
                        m.merge(inc)
                finally:
                    close = getattr(batches, "close", None)
                    if close is not None:
                        close()   # a child reader stops now, not when the traceback goes
                    m.wait()  # the writer is done with c (or its failure is raised here)
                assert self.head is not None
                staged, tmpdir, copies = self._stage(c)
                if copies:
                    m.merge(copies)
                    m.wait()
                m.finish()
                rep = self._report(m, staged)
                if m.conflicts and self.mode == "fail":
                    for cf in m.conflicts:
                        cf.resolution = "refused"
                    if self.dry_run:
                        return rep
                    listing = "\n  ".join(str(cf) for cf in m.conflicts[:50])
                    more = len(m.conflicts) - 50
                    raise BundleError(
                        f"{self.path}: {len(m.conflicts)} conflict(s) with the local store; nothing "
                        f"imported. Re-run with --on-conflict keep|theirs to choose:\n  {listing}"
                        + (f"\n  ... and {more} more" if more > 0 else ""))
                if self.dry_run or not m.changed:
                    return rep
                rep.bundle_id = bundle_id
                summary = {"added": rep.added, "updated": rep.updated, "foreign": self.head.foreign,
                           "conflicts": len(rep.conflicts), "on_conflict": self.mode, **self.head.info}
                c.execute(insert(t.bundles).values(
                    id=bundle_id, origin_instance=self.head.origin, file_name=self.path.name[:1000],
                    sha256=self.sha, imported_at=iso(utcnow()), summary=summary))
                self.store.journal(c, "bundle", [bundle_id])
                for tmp, dest in staged:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, dest)
                    moved.append(dest)
            if self.progress:
                self.progress("import", 1, 1)
            return rep
        except (IntegrityError, DataError, StatementError, UnicodeError) as e:
            for d in moved:
                d.unlink(missing_ok=True)
            raise BundleError(f"{self.path}: the store refused the bundle's rows "
                              f"({str(getattr(e, 'orig', None) or e)[:300]})") from None
        except BaseException:
            for d in moved:
                d.unlink(missing_ok=True)
            raise
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)

    def _report(self, m: Merger, staged: list) -> ImportReport:
        assert self.head is not None
        return ImportReport(
            file=self.path.name, sha256=self.sha, origin_instance=self.head.origin,
            foreign=self.head.foreign, dry_run=self.dry_run, unmapped=list(self.head.unmapped),
            added={k: m.added.get(k, 0) for k in ("workflow", "job", "status", "data", "trigger",
                                                   "triples")},
            updated={k: m.updated.get(k, 0) for k in ("workflow", "job", "data", "trigger")},
            unchanged=dict(m.unchanged), conflicts=m.conflicts,
            payload_files=len(self.payload) if self.dry_run else len(staged),
            crate_graph=self.head.info.get("crate_graph"))

    def _stage(self, c: Any) -> tuple[list[tuple[Path, Path]], Path | None, Incoming | None]:
        """Verify every payload file; extract the new ones to a temp dir; their copy rows."""
        if not self.payload:
            return [], None, None
        assert self.head is not None
        copy_ids = {p.data_id: derived_id("payload-copy", p.data_id) for p in self.payload}
        have = set(c.execute(select(t.data.c.id).where(
            t.data.c.id.in_(list(copy_ids.values())))).scalars())
        data_dir = Path(self.config.data_dir)
        tmpdir = None if self.dry_run else data_dir / f".incoming-{new_id()}"
        if tmpdir is not None:
            tmpdir.mkdir(parents=True)
        staged: list[tuple[Path, Path]] = []
        copies = Incoming(origin=self.head.origin, foreign=False)
        now = iso(utcnow())
        for i, p in enumerate(self.payload):
            known = copy_ids[p.data_id] in have
            tmp = None if tmpdir is None or known else tmpdir / str(i)
            try:
                _extract(self.sz, p.member, p.sha256, p.size, tmp)  # verified even when known
            except BaseException:
                if tmpdir is not None:
                    shutil.rmtree(tmpdir, ignore_errors=True)
                raise
            if known:
                continue
            dest = data_dir / self.head.origin / p.data_id / p.member.rsplit("/", 1)[-1]
            if tmp is not None:
                staged.append((tmp, dest))
            orig = self.data_rows[p.data_id]
            copies.data.append({
                "id": copy_ids[p.data_id], "url": str(dest), "site": "local", "direction": "get",
                "metadata": {}, "size": p.size, "sha256": p.sha256, "media_type": orig["media_type"],
                "job_id": None, "workflow_id": orig["workflow_id"], "derived_from": p.data_id,
                "time": now, "instance_id": self.store.instance_id})
        return staged, tmpdir, copies


def _extract(sz: SafeZip, member: str, sha: str, size: int, dest: Path | None) -> None:
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
