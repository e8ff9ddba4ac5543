"""The ``lwfm`` command line: a thin layer over :class:`lwfm.Manager`."""

from __future__ import annotations

import click

from . import auth, bundle, core, deploy, prov, quantum, remote, transfer
from . import publish as _publish
from ._common import run_main


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="LWFM_HOME", type=click.Path(file_okay=False),
              help="lwfm home (default $LWFM_HOME or ~/.lwfm).")
@click.version_option(package_name="lwfm")
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """lwfm: run and track jobs across sites as a queryable digital thread."""
    ctx.obj = {"home": home}


for _mod in (core, prov, bundle, remote, auth, transfer, deploy, quantum):
    for _cmd in _mod.COMMANDS:
        cli.add_command(_cmd)
cli.add_command(_publish.publish_cmd)


def main() -> None:
    run_main(cli)
