"""``lwfm export``, ``lwfm import``, ``lwfm bundles``: ship a thread between instances."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ._common import command_list, echo_json, json_option

COMMANDS, command = command_list()

_PLURAL = {"status": "statuses", "data": "data objects"}


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{n} {_PLURAL.get(k, k + 's')}" for k, n in d.items() if n)


def _open(ctx: click.Context) -> tuple[Any, Any]:
    """(store, config) of this invocation's home; bundles need no Manager or sites."""
    from ..config import load
    from ..store import Store
    root = ctx.find_root()
    if "bundle_store" not in root.obj:
        cfg = load(root.obj.get("home"))
        store = Store(cfg.store_url)
        root.call_on_close(store.close)
        root.obj["bundle_store"] = (store, cfg)
    return root.obj["bundle_store"]


@contextmanager
def _progress(quiet: bool, label: str) -> Iterator[Any]:
    """A rich progress bar on a terminal; nothing when piped or --quiet."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    with Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
        yield report


@command("export")
@click.option("--workflow", "workflow_id", metavar="ID", help="Export one workflow's thread.")
@click.option("--job", "job_id", metavar="ID", help="Export a job, its descendants and ancestors.")
@click.option("--since", metavar="TIME", help="Export what was recorded since an ISO 8601 time.")
@click.option("--all", "all_", is_flag=True, help="Export the whole store.")
@click.option("--with-data", is_flag=True, help="Include local data files (checksummed).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Bundle file to write (.zip).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
@click.pass_context
def export_cmd(ctx: click.Context, workflow_id: str | None, job_id: str | None, since: str | None,
               all_: bool, with_data: bool, output: str, quiet: bool, as_json: bool) -> None:
    """Write a thread as a zipped RO-Crate another lwfm instance can import."""
    from lwfm.bundles import export_bundle
    store, cfg = _open(ctx)
    with _progress(quiet, "export") as prog:
        res = export_bundle(store, cfg, Path(output), workflow_id=workflow_id, job_id=job_id,
                            since=since, all=all_, with_data=with_data, progress=prog)
    if as_json:
        echo_json(res.to_dict())
    elif not quiet:
        c = res.counts
        click.echo(f"exported {c['jobs']} jobs, {c['data']} data, {c['workflows']} workflows, "
                   f"{c['triggers']} triggers, {res.payload_files} payload files -> {res.path} "
                   f"({res.bytes} bytes, sha256 {res.sha256[:16]})")


@command("import")
@click.argument("bundle", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--on-conflict", type=click.Choice(["fail", "keep", "theirs"]), default="fail",
              show_default=True, help="Refuse conflicting facts, keep local ones, or take the bundle's.")
@click.option("--quiet", is_flag=True, help="No progress bar or summary.")
@json_option
@click.pass_context
def import_cmd(ctx: click.Context, bundle: str, dry_run: bool, on_conflict: str, quiet: bool,
               as_json: bool) -> None:
    """Merge a bundle (lwfm's, or another system's RO-Crate) into this instance."""
    from lwfm.bundles import import_bundle
    store, cfg = _open(ctx)
    with _progress(quiet, "import") as prog:
        rep = import_bundle(store, cfg, Path(bundle), dry_run=dry_run, on_conflict=on_conflict,
                            progress=prog)
    if as_json:
        echo_json(rep.to_dict())
    elif not quiet:
        what = "would add" if dry_run else "added"
        added = _counts(rep.added) or "nothing new"
        updated = _counts(rep.updated)
        src = "foreign RO-Crate" if rep.foreign else "lwfm instance"
        click.echo(f"{rep.file}: from {src} {rep.origin_instance}: {what} {added}"
                   + (f"; merged {updated}" if updated else "")
                   + (f"; {rep.payload_files} payload files" if rep.payload_files else ""))
        for cf in rep.conflicts:
            click.echo(f"  conflict: {cf}")
        for u in rep.unmapped:
            click.echo(f"  not mapped: {u}")
    if dry_run and rep.conflicts and on_conflict == "fail":
        ctx.exit(1)


@command("bundles")
@json_option
@click.pass_context
def bundles_cmd(ctx: click.Context, as_json: bool) -> None:
    """List imported bundles: from which instance, when, what they brought."""
    from lwfm.bundles import list_bundles
    store, _ = _open(ctx)
    rows = list_bundles(store)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no bundles imported yet (lwfm import FILE.zip)")
        return
    for r in rows:
        added = r["summary"].get("added", {})
        what = _counts(added) or "-"
        click.echo(f"{r['imported_at'][:19]}  {r['id'][:8]}  from {r['origin_instance']}  "
                   f"{r['file_name']}  {what}")

