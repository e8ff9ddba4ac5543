"""The ssh site's part of ``lwfm pull``: export the lab's thread there, fetch it here.

The lab runs its own lwfm instance (``remote_home`` of the ssh site). We run its
``lwfm export`` over SSH and fetch the bundle over SFTP with sha256 checked on both
ends; ``lwfm.pull`` imports it. The remote bundle is removed whatever happens.
"""

from __future__ import annotations

import logging
import shlex
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from lwfm.errors import ConfigError, LwfmError, SiteError
from lwfm.site import FetchedThread

if TYPE_CHECKING:
    from lwfm.sites.ssh import SSHSite

q = shlex.quote
log = logging.getLogger("lwfm.sites.ssh")


def export_command(site: "SSHSite", remote_out: str, workflow_id: str | None,
                   with_data: bool) -> str:
    """The remote shell command running the lab's ``lwfm export`` into ``remote_out``."""
    sel = ["--workflow", workflow_id] if workflow_id else ["--all"]
    argv = [*site.lwfm_argv(), "export", *sel, *(["--with-data"] if with_data else []),
            "--quiet", "-o", remote_out]
    return (f"mkdir -p {q(str(Path(remote_out).parent))} && "
            f"LWFM_HOME={q(site.remote_home or '')} {' '.join(q(a) for a in argv)} < /dev/null")


def fetch_thread(site: "SSHSite", dest: Path, workflow_id: str | None,
                 with_data: bool) -> FetchedThread:
    if not site.remote_home:
        raise ConfigError(f"[sites.{site.name}] needs remote_home (the lab's lwfm home) to pull")
    remote_out = f"{site.remote_home}/exports/pull-{uuid.uuid4().hex}.zip"
    try:
        rc, out, err = site.conn.execute(export_command(site, remote_out, workflow_id, with_data),
                                         timeout=3600)
        if rc != 0:
            raise SiteError(f"site {site.name!r}: the lab's `lwfm export` failed (exit {rc}): "
                            f"{(err or out).strip()[-1500:]}")
        got = site.repo.get(remote_out, dest, None)   # sha256 verified on both ends
        return FetchedThread(path=dest, source=remote_out, sha256=got.sha256 or "",
                             size=got.size or 0)
    finally:
        try:
            site.conn.execute(f"rm -f -- {q(remote_out)}", timeout=30)
        except LwfmError as e:   # cleanup only: the fetch's own outcome stands
            log.warning("could not remove %s on %s: %s", remote_out, site.name, e)
