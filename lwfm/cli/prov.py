"""Provenance commands: query, lineage, thread, reindex (thin layer over lwfm.provenance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..provenance.query import FORMATS
from ._common import (command_list, console, echo_json, json_option, print_table,
                      resolve_workflow, with_manager)

COMMANDS, command = command_list()


def _write(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text)
    else:
        click.echo(text, nl=not text.endswith("\n"))


@command("query")
@click.argument("sparql", required=False)
@click.option("-f", "--file", "file", type=click.Path(exists=True, dir_okay=False),
              help="Read the query from a .rq file.")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              default="table", show_default=True, help="Output format.")
@with_manager
def query_cmd(m: Any, sparql: str | None, file: str | None, fmt: str) -> None:
    """Run a read-only SPARQL query (SELECT/ASK/CONSTRUCT/DESCRIBE) over the thread.

    Updates, LOAD and SERVICE (a federated query: a network call) are refused.

    Prefixes lwfm:, schema: (http://schema.org/), prov:, rdf:, rdfs:, xsd: are predeclared.
    """
    if bool(sparql) == bool(file):
        raise click.UsageError("give the query inline or with -f FILE.rq (exactly one)")
    text = Path(file).read_text() if file else sparql
    m.reconcile()  # no finished job is shown as running
    out = m.graph.query(text, fmt=fmt)
    if fmt != "table":
        _write(out, None)
        return
    names, rows = out
    print_table(names, rows)


@command("lineage")
@click.argument("ident", metavar="ID")
@click.option("--up", "direction", flag_value="up", default=True,
              help="What produced it (default).")
@click.option("--down", "direction", flag_value="down", help="What it fed.")
@click.option("--depth", type=click.IntRange(min=0), default=None, help="Stop after N steps.")
@json_option
@with_manager
def lineage_cmd(m: Any, ident: str, direction: str, depth: int | None, as_json: bool) -> None:
    """Lineage of a job or data item, across jobs and data (and instances)."""
    m.reconcile()
    lin = m.graph.lineage(ident, direction=direction, depth=depth)
    if as_json:
        echo_json(lin.to_dict())
        return
    print_table(("depth", "kind", "id", "state", "label"),
                ((n.depth, n.kind, n.id, n.state or "", n.label) for n in lin.nodes))


@command("thread")
@click.argument("workflow", metavar="WORKFLOW")
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "svg", "html", "json"]),
              default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
@with_manager
def thread_cmd(m: Any, workflow: str, fmt: str, output: str | None) -> None:
    """The digital thread of a workflow (id, unique id prefix or name), as a tree or a picture."""
    from ..provenance import render
    m.reconcile()
    root = m.graph.thread(resolve_workflow(m, workflow))
    if fmt == "text":
        if output:
            with open(output, "w") as fh:
                console(file=fh).print(render.to_rich(root))
        else:
            console().print(render.to_rich(root))
        return
    if fmt == "json":
        import json
        _write(json.dumps(root.to_dict(), indent=2) + "\n", output)
        return
    text = {"dot": render.to_dot, "svg": render.to_svg, "html": render.to_html}[fmt](root)
    _write(text, output)


@command("reindex")
@json_option
@with_manager
def reindex_cmd(m: Any, as_json: bool) -> None:
    """Rebuild the provenance graph from the SQL store (the source of truth)."""
    import time
    g = m.open_graph(sync=False)   # reindex rebuilds it: no sync first
    t0 = time.perf_counter()
    try:
        lines = g.reindex()
    except KeyboardInterrupt:   # the rebuild was beside the graph: nothing is lost
        click.echo("reindex interrupted: the graph is as it was before", err=True)
        raise
    secs = time.perf_counter() - t0
    info = {"quads": len(g), "lines": lines, "seconds": round(secs, 3)}
    if as_json:
        echo_json(info)
    else:
        click.echo(f"reindexed: {info['quads']} quads in {secs:.2f}s")


__all__ = ["COMMANDS"]
