"""Bundles: a thread exported as a zipped RO-Crate, and its import and merge.

``export_bundle`` writes the closure of a selection (a job, a workflow, a time,
everything) from the SQL store; ``import_bundle`` vets a bundle, merges it into
another instance's store in one transaction and records which bundle brought
what; ``list_bundles`` shows those imports. Store and Config are passed in, so
these work with or without a Manager.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from lwfm.errors import BundleError
from lwfm.store import Store, t

from ._common import Conflict, ExportResult, ImportReport, Limits
from ._crate import export_bundle
from ._importer import MODES, import_bundle

__all__ = [
    "MODES",
    "BundleError",
    "Conflict",
    "ExportResult",
    "ImportReport",
    "Limits",
    "export_bundle",
    "import_bundle",
    "list_bundles",
]


def list_bundles(store: Store, *, sha256: str | None = None) -> list[dict[str, Any]]:
    """Imported bundles, oldest first: id, origin instance, file, sha256, when, summary."""
    q = select(t.bundles).order_by(t.bundles.c.imported_at)
    if sha256:
        q = q.where(t.bundles.c.sha256 == sha256)
    with store.read() as c:
        return [dict(r) for r in c.execute(q).mappings()]
