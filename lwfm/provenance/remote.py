"""Publish the graph to a SPARQL 1.1 endpoint: the path past one machine.

The local Oxigraph directory is single-writer and lives in one lwfm home. A team that
wants one shared, always-on graph runs a SPARQL server (``oxigraph serve``, Fuseki,
GraphDB, ...) and publishes each instance's named graph there with rdflib's standard
``SPARQLUpdateStore`` client; anyone then queries the union with any SPARQL client
(rdflib ``SPARQLStore``, ``curl``). Each instance replaces only its own named graphs, so
several instances publish side by side without coordination.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyoxigraph as ox

from ..errors import LwfmError

if TYPE_CHECKING:
    from .graph import ProvenanceGraph


def publish(g: "ProvenanceGraph", query_endpoint: str, update_endpoint: str,
            graphs: list[str] | None = None, batch: int = 5000) -> int:
    """Replace the given named graphs (default: all in the local graph) on the endpoint.

    Returns the number of triples sent. Data goes as ``INSERT DATA`` in N-Triples
    syntax, which every SPARQL 1.1 Update server accepts.
    """
    from rdflib.plugins.stores.sparqlstore import SPARQLUpdateStore
    remote = SPARQLUpdateStore(query_endpoint, update_endpoint, autocommit=True)
    names = graphs if graphs is not None else sorted(n.value for n in g.ox.named_graphs())
    sent = 0
    try:
        for name in names:
            remote.update(f"DROP SILENT GRAPH <{name}>")
            buf: list[str] = []
            for q in g.ox.quads_for_pattern(None, None, None, ox.NamedNode(name)):
                buf.append(f"{q.subject} {q.predicate} {q.object} .")
                if len(buf) >= batch:
                    sent += _insert(remote, name, buf)
                    buf = []
            if buf:
                sent += _insert(remote, name, buf)
    except Exception as e:   # network or server errors: say where, keep the cause
        raise LwfmError(f"publishing the provenance graph to {update_endpoint} failed: {e}") from e
    finally:
        remote.close()
    return sent


def _insert(remote, graph: str, lines: list[str]) -> int:
    body = "\n".join(lines)
    remote.update(f"INSERT DATA {{ GRAPH <{graph}> {{\n{body}\n}} }}")
    return len(lines)
