"""The Repo verbs of the Manager: put, get, notate and find data, linked to jobs.

Kept apart from the Manager's run verbs (one concept per module); the Manager inherits
them, so users call ``m.put``/``m.find`` as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import InvalidInput, NotFound, NotSupported
from .files import local_path, sha256_file
from .model import DataObject, Direction, Job, JobContext, JobDefn, JobStatus, State

if TYPE_CHECKING:
    from .runner import JobRunner
    from .site import Site, Transfers
    from .store import Store
    from .triggers import TriggerEngine


class DataVerbs:
    """Data, recorded with the job that put or got it and linked across sites."""

    if TYPE_CHECKING:  # the Manager's public members these verbs use
        store: Store
        triggers: TriggerEngine
        context: JobContext | None
        runner: JobRunner

        def site(self, name: str) -> Site: ...
        def flush(self) -> None: ...
        def ensure_open(self) -> None: ...
        def _new_job(self, defn: JobDefn, parent_id: str | None, workflow_id: str | None,
                     job_id: str | None, triggered_by: str | None) -> Job: ...

    def _check_metadata(self, metadata: Mapping[str, Any] | None) -> None:
        """Refuse bad metadata (long keys, NUL, values JSON cannot hold) before anything
        is copied, by the rules the store applies when it writes it."""
        self.store.meta_rows_for("", dict(metadata or {}))

    def _data_context(self, job_id: str | None) -> tuple[JobContext | None, str | None]:
        jid = job_id or (self.context.job_id if self.context else None)
        if jid is None:
            return None, None
        self.flush()
        ctx = self.store.get_job(jid).context
        return ctx, ctx.workflow_id

    def put(self, local_file: str | os.PathLike[str], dest: str, *, site: str = "local",
            metadata: Mapping[str, Any] | None = None, job_id: str | None = None) -> DataObject:
        """Copy a file to a site and record it as produced by the job (default: ours)."""
        self._check_metadata(metadata)  # before anything is copied
        ctx, wf = self._data_context(job_id)
        repo = self.site(site).repo
        if repo.transfers is not None:
            return self._transfer(site, repo.transfers, "put", os.fspath(local_file), dest,
                                  metadata, ctx, wf)
        d = repo.put(Path(local_file), dest, ctx)
        self._link_copy(d, "local", wf)
        return self._notate(d, metadata, ctx, wf)

    def get(self, source: str, local_file: str | os.PathLike[str], *, site: str = "local",
            metadata: Mapping[str, Any] | None = None, job_id: str | None = None) -> DataObject:
        """Fetch a file from a site and record it as used by the job (default: ours)."""
        self._check_metadata(metadata)  # before anything is copied
        ctx, wf = self._data_context(job_id)
        repo = self.site(site).repo
        if repo.transfers is not None:
            return self._transfer(site, repo.transfers, "get", source, os.fspath(local_file),
                                  metadata, ctx, wf)
        d = repo.get(source, Path(local_file), ctx)
        self._link_copy(d, site, wf)
        return self._notate(d, metadata, ctx, wf)

    def transfer(self, source: str, dest: str, *, site: str,
                 metadata: Mapping[str, Any] | None = None,
                 job_id: str | None = None) -> DataObject:
        """Copy ``source`` (another collection's URL) to ``dest`` on ``site`` without
        passing through this machine (a third-party Globus transfer), as a job."""
        self._check_metadata(metadata)
        ctx, wf = self._data_context(job_id)
        tr = self.site(site).repo.transfers
        if tr is None:
            raise NotSupported(f"site {site!r} cannot copy between collections "
                               "(only a site whose copies are transfers can, e.g. globus)")
        return self._transfer(site, tr, "transfer", source, dest, metadata, ctx, wf)

    def _transfer(self, site: str, tr: Transfers, op: str, source: str, dest: str,
                  metadata: Mapping[str, Any] | None, ctx: JobContext | None,
                  wf: str | None) -> DataObject:
        """A copy that is a job of its own (child of ``ctx``'s job): recorded, started,
        then followed to its end (:meth:`_follow_transfer`)."""
        defn = tr.plan(op, source, dest)
        entry = defn.entry
        assert isinstance(entry, dict), "Transfers.plan gives a payload job"
        entry["metadata"] = dict(metadata or {})   # so finish_transfer can record it too
        known = [o for o in self.store.find_data(url=entry["source"]) if o.sha256]
        if known and not entry.get("sha256"):   # a put hashes its local file itself
            entry["sha256"] = known[-1].sha256
        job = self._new_job(defn, ctx.job_id if ctx else None, wf, None, None)
        self.runner.insert(job, JobStatus(job.id, State.PENDING))
        self.runner.launch(job, self.site(site))
        return self._follow_transfer(tr, job)

    def finish_transfer(self, job_id: str) -> DataObject:
        """Follow to its end a transfer job whose starter is gone (killed mid-transfer), check
        its checksums and record its copies, as the starter would have; the copy."""
        self.flush()
        job = self.store.get_job(job_id)
        tr = self.site(job.context.site).repo.transfers
        if tr is None or not isinstance(job.defn.entry, dict):
            raise InvalidInput(f"job {job_id} is not a transfer job")
        if job.state is not None and job.state.terminal:
            raise InvalidInput(f"transfer job {job_id} already ended {job.state.value}"
                               + ("; its copies are recorded" if job.state is State.COMPLETE
                                  else ""))
        if not job.context.native_id:
            raise InvalidInput(f"transfer job {job_id} never started (no task id)")
        tr.adopt(job.defn, job.context)
        return self._follow_transfer(tr, job)

    def _follow_transfer(self, tr: Transfers, job: Job) -> DataObject:
        """Follow a started transfer job to its end; record the original as used by it and
        the copy as generated by it and derived from the original, which links to what lwfm
        knew of the same bytes (the job that wrote the file)."""
        tr.follow(job.context)
        self.flush()
        original, copy = tr.ends(job.context)
        same = [o for o in self.store.find_data(url=original.url)
                if o.sha256 == original.sha256 and o.job_id != job.id]
        if same and original.derived_from is None:
            original.derived_from = same[-1].id
            original.site = same[-1].site   # a third-party source is another site's
        entry = job.defn.entry
        metadata = entry.get("metadata") if isinstance(entry, dict) else None
        wf = job.context.workflow_id
        self._notate(original, None, job.context, wf)
        copy.derived_from = original.id
        return self._notate(copy, metadata, job.context, wf)

    def _link_copy(self, d: DataObject, original_site: str, wf: str | None) -> None:
        """A Repo names the other end of a copy in ``metadata["copied_from"]``: link the copy
        to the record of its original (recording the original first if it is new here),
        so lineage crosses sites."""
        original = d.metadata.get("copied_from")
        if not original or d.derived_from is not None:
            return
        known = [o for o in self.store.find_data(url=original) if o.sha256 in (None, d.sha256)]
        if not known:
            known = [self._notate(DataObject(url=original, site=original_site, size=d.size,
                                             sha256=d.sha256), None, None, wf)]
        d.derived_from = known[-1].id

    def notate(self, path_or_url: str | os.PathLike[str], *, direction: Direction | str = "put",
               site: str = "local", metadata: Mapping[str, Any] | None = None,
               job_id: str | None = None, derived_from: str | None = None) -> DataObject:
        """Record a put or get done by other means (a job wrote a file itself)."""
        self._check_metadata(metadata)
        ctx, wf = self._data_context(job_id)
        url, size, digest = str(path_or_url), None, None
        if site == "local":
            p = local_path(url)
            if not p.is_file():
                raise NotFound(f"no such file: {p}")
            url, size, digest = p.as_uri(), p.stat().st_size, sha256_file(p)
        d = DataObject(url=url, site=site, direction=Direction(direction), size=size,
                       sha256=digest, derived_from=derived_from)
        return self._notate(d, metadata, ctx, wf)

    def _notate(self, d: DataObject, metadata: Mapping[str, Any] | None, ctx: JobContext | None,
                wf: str | None) -> DataObject:
        self.ensure_open()
        d.metadata = {**d.metadata, **dict(metadata or {})}
        d.job_id = ctx.job_id if ctx else d.job_id
        d.workflow_id = wf or d.workflow_id
        self.store.add_data(d)
        self.triggers.on_data(d)
        return d

    def find(self, pattern: Mapping[str, Any] | None = None, **filters: Any) -> list[DataObject]:
        """Data by metadata: exact or glob per field, AND across fields."""
        return self.store.find_data(pattern, **filters)
