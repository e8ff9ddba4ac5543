"""``lwfm pull``: bring the thread of a site's own lwfm instance home, in one step.

The site does its part through the public driver interface, ``Site.fetch_thread``
(the ssh driver runs ``lwfm export`` at the lab and fetches the bundle, sha256 checked
on both ends); the core imports the bundle. Each pull exports the whole selection again
and relies on import being idempotent: a job that was RUNNING at the last pull and has
ended since is an *update* of an old record, which a time-based selection could miss.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lwfm.bundles import ImportReport
    from lwfm.manager import Manager


@dataclass
class PullResult:
    site: str
    remote_bundle: str
    sha256: str
    bytes: int
    report: ImportReport | None = None
    selection: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "remote_bundle": self.remote_bundle, "sha256": self.sha256,
                "bytes": self.bytes, "selection": self.selection,
                "import": self.report.to_dict() if self.report is not None else None}


def pull(manager: "Manager", site_name: str, *, workflow_id: str | None = None,
         with_data: bool = False, dry_run: bool = False, on_conflict: str = "fail",
         keep: Path | None = None) -> PullResult:
    """Fetch the thread site ``site_name`` recorded (one workflow, or all of it) and
    import it here. Safe to repeat: only what this store does not have yet is added.
    A failure before the import leaves the store untouched; the import is atomic."""
    from lwfm.bundles import import_bundle

    site = manager.site(site_name)
    with tempfile.TemporaryDirectory(prefix=".pull-", dir=manager.home) as tmp:
        got = site.fetch_thread(Path(tmp) / "bundle.zip", workflow_id=workflow_id,
                                with_data=with_data)
        result = PullResult(site=site_name, remote_bundle=got.source, sha256=got.sha256,
                            bytes=got.size,
                            selection={"workflow": workflow_id} if workflow_id else {"all": True})
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(got.path, keep)
        manager.flush()   # our own pending writes first, so joins see the local job rows
        result.report = import_bundle(manager.store, manager.config, got.path, dry_run=dry_run,
                                      on_conflict=on_conflict)
    return result
