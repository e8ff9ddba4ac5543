"""``lwfm pull``: haul a remote lab's thread home over SSH in one step.

The lab runs its own lwfm instance (``remote_home`` of the ssh site). We run its
``lwfm export`` there, fetch the bundle over SFTP with sha256 checked on both ends,
and merge it with the bundles importer. Each pull exports the whole selection again
and relies on import being idempotent: a job that was RUNNING at the last pull and
has ended since is an *update* of an old record, which a time-based ``--since``
selection could miss. What is already here is left unchanged; only what is new lands.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lwfm.errors import ConfigError, LwfmError, SiteError

if TYPE_CHECKING:
    from lwfm.bundles import ImportReport
    from lwfm.manager import Manager

q = shlex.quote
log = logging.getLogger("lwfm.sites.ssh")


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


def export_command(site: Any, remote_out: str, workflow_id: str | None, with_data: bool) -> str:
    """The remote shell command running the lab's ``lwfm export`` into ``remote_out``."""
    sel = ["--workflow", workflow_id] if workflow_id else ["--all"]
    argv = [*site.lwfm_argv(), "export", *sel, *(["--with-data"] if with_data else []),
            "--quiet", "-o", remote_out]
    return (f"mkdir -p {q(str(Path(remote_out).parent))} && "
            f"LWFM_HOME={q(site.remote_home)} {' '.join(q(a) for a in argv)} < /dev/null")


def pull(manager: "Manager", site_name: str, *, workflow_id: str | None = None,
         with_data: bool = False, dry_run: bool = False, on_conflict: str = "fail",
         keep: Path | None = None) -> PullResult:
    """Export the lab's thread (one workflow, or all of it), fetch it, import it here.

    Safe to repeat: the import adds only what this store does not have yet. Any failure
    before the import leaves the local store untouched; the import itself is atomic.
    """
    from lwfm.bundles import import_bundle
    from lwfm.sites.ssh import SSHSite

    site = manager.site(site_name)
    if not isinstance(site, SSHSite):
        raise ConfigError(f"site {site_name!r} is not an ssh site; lwfm pull fetches from the "
                          f"lwfm instance of a remote lab reached over SSH")
    if not site.remote_home:
        raise ConfigError(f"[sites.{site_name}] needs remote_home (the lab's lwfm home) to pull")
    remote_out = f"{site.remote_home}/exports/pull-{uuid.uuid4().hex}.zip"
    try:
        rc, out, err = site.conn.execute(export_command(site, remote_out, workflow_id, with_data),
                                      timeout=3600)
        if rc != 0:
            raise SiteError(f"site {site_name!r}: the lab's `lwfm export` failed (exit {rc}): "
                            f"{(err or out).strip()[-1500:]}")
        with tempfile.TemporaryDirectory(prefix=".pull-", dir=manager.home) as tmp:
            local = Path(tmp) / "bundle.zip"
            got = site.repo.get(remote_out, local, None)   # sha256 verified on both ends
            result = PullResult(site=site_name, remote_bundle=remote_out, sha256=got.sha256 or "",
                                bytes=got.size or 0,
                                selection={"workflow": workflow_id} if workflow_id else {"all": True})
            if keep is not None:
                keep.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(local, keep)
            manager.flush()   # our own pending writes first, so joins see the local job rows
            result.report = import_bundle(manager.store, manager.config, local, dry_run=dry_run,
                                          on_conflict=on_conflict)
        return result
    finally:
        try:
            site.conn.execute(f"rm -f -- {q(remote_out)}", timeout=30)
        except LwfmError as e:   # cleanup only: the pull's own outcome stands
            log.warning("could not remove %s on %s: %s", remote_out, site_name, e)
