"""``lwfm deploy SITE``: install lwfm at an ssh site without a package index there."""

from __future__ import annotations

from pathlib import Path

import click

from lwfm.errors import NotSupported

from ._common import echo_json, json_option, with_manager


@click.command("deploy")
@click.argument("site")
@click.option("--wheelhouse", required=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help='Wheels of lwfm and its dependencies (pip wheel "lwfm[psij]" -w DIR).')
@click.option("--venv", metavar="PATH", help="The venv at the site (default "
              "<remote_home>/deploy/venv).")
@click.option("--extras", default="", metavar="NAMES", help="lwfm extras to install, e.g. psij.")
@click.option("--system-site-packages", is_flag=True,
              help="Let the site's venv see its system packages.")
@json_option
@with_manager
def deploy_cmd(m, site: str, wheelhouse: Path, venv: str | None, extras: str,
               system_site_packages: bool, as_json: bool) -> None:
    """Install this lwfm at ssh site SITE from a local wheelhouse: wheels go over SFTP
    (checksummed, only those that changed), a venv is built there, the site's lwfm home
    initialised and its version checked. Re-running it changes nothing.
    """
    target = m.site(site)
    if not callable(getattr(target, "deploy", None)):
        raise NotSupported(f"lwfm deploy installs over SSH: site {site!r} is not an ssh site")
    rep = target.deploy(wheelhouse, venv=venv, extras=extras,
                        system_site_packages=system_site_packages)
    if as_json:
        echo_json(rep.to_dict())
        return
    click.echo(f"lwfm {rep.version} at {site}: {rep.lwfm_command}"
               + ("" if rep.changed else " (already deployed; nothing changed)"))
    if rep.uploaded:
        click.echo(f"  uploaded {len(rep.uploaded)} wheel(s)")
    if rep.installed:
        click.echo(f"  installed into {rep.venv}")
    click.echo(f'  set lwfm_command = "{rep.lwfm_command}" in [sites.{site}]')


COMMANDS: list[click.Command] = [deploy_cmd]
