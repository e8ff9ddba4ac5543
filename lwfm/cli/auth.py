"""Site login: ``lwfm login SITE`` runs the site's Auth pillar (a Globus native-app login)."""

from __future__ import annotations

import inspect

import click

from ..errors import NotSupported
from ._common import with_manager


@click.command("login")
@click.argument("site")
@click.option("--force", is_flag=True, help="Log in again even if the credentials are current.")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE",
              help="A scope to consent to beyond the configured ones (what an error named).")
@with_manager
def login_cmd(m, site: str, force: bool, scopes: tuple[str, ...]) -> None:
    """Log in to SITE (its credentials stay in the site's own storage, never in lwfm's
    store); without --force, nothing happens while the login is current."""
    auth = m.site(site).auth
    if scopes:
        if "scopes" not in inspect.signature(auth.login).parameters:
            raise NotSupported(f"site {site!r} takes no --scope at login")
        auth.login(force=True, scopes=list(scopes))
    else:
        auth.login(force=force)
    click.echo(f"{site}: logged in" if auth.is_current() else f"{site}: login is not current")


COMMANDS: list[click.Command] = [login_cmd]
