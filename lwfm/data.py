"""The Repo verbs of the Manager: put, get, notate and find data, linked to jobs.

Kept apart from the Manager's run verbs (one concept per module); the Manager inherits
them, so users call ``m.put``/``m.find`` as before.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .errors import NotFound
from .files import local_path, sha256_file
from .model import DataObject, Direction, JobContext

if TYPE_CHECKING:
    from .site import Site
    from .store import Store
    from .triggers import TriggerEngine


class DataVerbs:
    """Data, recorded with the job that put or got it and linked across sites."""

    if TYPE_CHECKING:  # the Manager's public members these verbs use
        store: Store
        triggers: TriggerEngine
        context: JobContext | None

        def site(self, name: str) -> Site: ...
        def flush(self) -> None: ...
        def ensure_open(self) -> None: ...

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
        d = self.site(site).repo.put(Path(local_file), dest, ctx)
        self._link_copy(d, "local", wf)
        return self._notate(d, metadata, ctx, wf)

    def get(self, source: str, local_file: str | os.PathLike[str], *, site: str = "local",
            metadata: Mapping[str, Any] | None = None, job_id: str | None = None) -> DataObject:
        """Fetch a file from a site and record it as used by the job (default: ours)."""
        self._check_metadata(metadata)  # before anything is copied
        ctx, wf = self._data_context(job_id)
        d = self.site(site).repo.get(source, Path(local_file), ctx)
        self._link_copy(d, site, wf)
        return self._notate(d, metadata, ctx, wf)

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
