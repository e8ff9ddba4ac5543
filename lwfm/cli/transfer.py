"""``lwfm transfer``: a copy between two collections that never passes through this machine,
and ``--finish`` for a transfer job whose starter is gone."""

from __future__ import annotations

from typing import Any

import click

from ._common import echo_json, with_manager
from .core import _meta_options, _transfer


@click.command("transfer")
@click.argument("source", required=False)
@click.argument("dest", required=False)
@click.option("--finish", "finish", metavar="JOB",
              help="Follow a transfer job whose starter is gone to its end and record its copies.")
@_meta_options
@with_manager
def transfer_cmd(m, source: str | None, dest: str | None, finish: str | None,
                 **kw: Any) -> None:
    """Copy SOURCE (another collection's globus://COLLECTION/path) to DEST on --site, as a
    transfer job of that site (a third-party Globus transfer), and record both copies."""
    if finish:
        if source or dest:
            raise click.UsageError("--finish JOB takes no SOURCE or DEST")
        d = m.finish_transfer(m.store.resolve_job_id(finish))
        echo_json(d.to_dict()) if kw["as_json"] else click.echo(f"{d.id} {d.url} sha256={d.sha256}")
        return
    if not (source and dest):
        raise click.UsageError("give SOURCE and DEST (or --finish JOB)")
    _transfer(m, "transfer", source, dest, **kw)


COMMANDS: list[click.Command] = [transfer_cmd]
