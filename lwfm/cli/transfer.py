"""``lwfm transfer``: a copy between two collections that never passes through this machine."""

from __future__ import annotations

from typing import Any

import click

from ._common import with_manager
from .core import _meta_options, _transfer


@click.command("transfer")
@click.argument("source")
@click.argument("dest")
@_meta_options
@with_manager
def transfer_cmd(m, source: str, dest: str, **kw: Any) -> None:
    """Copy SOURCE (another collection's globus://COLLECTION/path) to DEST on --site, as a
    transfer job of that site (a third-party Globus transfer), and record both copies."""
    _transfer(m, "transfer", source, dest, **kw)


COMMANDS: list[click.Command] = [transfer_cmd]
