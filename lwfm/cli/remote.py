"""Remote-lab commands: ``lwfm pull`` hauls the thread of a site's own lwfm instance home."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import echo_json, json_option, with_manager


@click.command("pull")
@click.argument("site")
@click.option("--workflow", "workflow_id", metavar="ID",
              help="Only this workflow's thread (default: everything the lab recorded).")
@click.option("--with-data", is_flag=True, help="Bring the data files too (checksum-verified).")
@click.option("--dry-run", is_flag=True, help="Fetch and check, but change nothing here.")
@click.option("--on-conflict", type=click.Choice(["fail", "keep", "theirs"]), default="fail",
              show_default=True, help="What to do when the lab contradicts a local fact.")
@click.option("--keep-bundle", type=click.Path(dir_okay=False, path_type=Path),
              help="Also save the fetched bundle here.")
@json_option
@with_manager
def pull_cmd(m, site: str, workflow_id: str | None, with_data: bool, dry_run: bool,
             on_conflict: str, keep_bundle: Path | None, as_json: bool) -> None:
    """Fetch the thread SITE's own lwfm instance recorded and import it (an ssh site
    runs `lwfm export` at the lab and fetches the bundle).

    Safe to repeat: only what is new since the last pull is added.
    """
    from lwfm.pull import pull
    res = pull(m, site, workflow_id=workflow_id, with_data=with_data, dry_run=dry_run,
               on_conflict=on_conflict, keep=keep_bundle)
    if as_json:
        echo_json(res.to_dict())
        return
    rep = res.report
    assert rep is not None   # pull() always imports (or dry-runs) before it returns
    added, updated = sum(rep.added.values()), sum(rep.updated.values())
    what = "would add" if dry_run else "added"
    click.echo(f"pulled {res.bytes} bytes from {site} (sha256 {res.sha256[:12]}...): "
               f"{what} {added} record(s), updated {updated}"
               + ("" if rep.changed else " (nothing new)"))
    for kind, n in sorted(rep.added.items()):
        if n:
            click.echo(f"  {kind}: +{n}")


COMMANDS: list[click.Command] = [pull_cmd]
