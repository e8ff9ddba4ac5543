"""``lwfm publish``: a selection of the thread as a FAIR dataset (thin layer over
:func:`lwfm.publish.publish`)."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import command_list, echo_json, json_option, resolve_workflow

COMMANDS, command = command_list()


@command("publish")
@click.option("--workflow", "workflow_id", metavar="ID", help="Publish a workflow's files.")
@click.option("--data", "data_ids", metavar="ID", multiple=True, help="Publish these data objects.")
@click.option("--query", "query_file", metavar="FILE.rq", type=click.Path(dir_okay=False, exists=True),
              help="Publish the data objects a SPARQL SELECT names in its first column.")
@click.option("--title", required=True, help="The dataset's title.")
@click.option("--license", "license_id", required=True, metavar="SPDX-ID",
              help="An SPDX license id (e.g. CC-BY-4.0).")
@click.option("--creator", "creators", required=True, multiple=True,
              metavar='"NAME <https://orcid.org/…>"', help="A creator with their ORCID (repeat).")
@click.option("--keyword", "keywords", multiple=True, help="A keyword (repeat).")
@click.option("--description", help="An abstract (default: one made from the selection).")
@click.option("--publisher", default="lwfm", show_default=True, help="DataCite publisher name.")
@click.option("-o", "--output", required=True, type=click.Path(), help="The bag to write.")
@click.option("--zip", "as_zip", is_flag=True, help="Write the bag as one .zip file.")
@click.option("--to", "to", metavar="NAME",
              help="Deposit to the [repositories.NAME] InvenioRDM server of lwfm.toml.")
@json_option
@click.pass_context
def publish_cmd(ctx: click.Context, workflow_id: str | None, data_ids: tuple[str, ...],
                query_file: str | None, title: str, license_id: str, creators: tuple[str, ...],
                keywords: tuple[str, ...], description: str | None, publisher: str, output: str,
                as_zip: bool, to: str | None, as_json: bool) -> None:
    """Publish data with its provenance: a BagIt bag holding an RO-Crate, DataCite
    metadata and a landing page; with --to, deposited and given a DOI."""
    from lwfm.manager import Manager
    from lwfm.publish import data_ids_from_query, publish
    if sum(map(bool, (workflow_id, data_ids, query_file))) != 1:
        raise click.UsageError("choose exactly one of --workflow ID, --data ID..., --query FILE.rq")
    m = Manager(ctx.find_root().obj.get("home"))
    try:
        # the short ids and names that `lwfm workflows` and `lwfm find` show, as elsewhere
        workflow_id = resolve_workflow(m, workflow_id) if workflow_id else None
        ids = [m.store.resolve_id(d, ("data",)) for d in data_ids]
        if query_file:
            ids = data_ids_from_query(m.graph, Path(query_file).read_text())
        res = publish(m.store, Path(output), title=title, license=license_id,
                      creators=list(creators), workflow_id=workflow_id, data_ids=ids or None,
                      keywords=list(keywords), description=description, zip=as_zip, to=to,
                      home=m.config.home, publisher=publisher)
    finally:
        m.close()
    if as_json:
        echo_json(res.to_dict())
    else:
        where = f", deposited at {res.record_url}" if res.record_url else ""
        click.echo(f"published {res.files} files ({res.payload_bytes} bytes) as version "
                   f"{res.version} -> {res.path}; identifier {res.identifier}{where}")
