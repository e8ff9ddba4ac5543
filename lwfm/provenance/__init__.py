"""The provenance graph: every fact lwfm records, as PROV-O / RO-Crate linked data.

Design
------
* **SQL is the source of truth; the graph is a projection.** Jobs, statuses, data,
  workflows and triggers are written as SQL rows (by the Manager and by job processes,
  many at once). Every write also appends ``(seq, kind, ref)`` to the ``events``
  journal in the same transaction. :meth:`ProvenanceGraph.sync` applies the journal
  past its watermark to an rdflib ``Dataset`` backed by Oxigraph (oxrdflib) under
  ``<home>/graph``; ``lwfm reindex`` (:meth:`ProvenanceGraph.reindex`) rebuilds it from
  the rows alone with Oxigraph's bulk loader, beside the old graph, and swaps it in when
  complete (an interrupted reindex leaves the old graph). The watermark is in
  ``<home>/graph.state.json``, next to the graph it describes.
* **Idempotent.** Applying an event re-projects the current row it names: a job's
  current-state facts (actionStatus, endTime, lwfm:state, exit code, ...) are replaced,
  status reports and data are add-only. Re-applying is harmless, which is what makes the
  PostgreSQL case safe: sequence values become visible in commit order, not seq order,
  so the projector re-reads the holes below its watermark on every sync
  (:mod:`lwfm.provenance.journal`).
* **One writer.** Oxigraph (RocksDB) allows one read-write process; opening takes a
  ``fcntl`` lock on ``<home>/graph.lock`` and a second opener waits, then fails with a
  clear :class:`GraphBusy`. Job processes never open the graph.
* **Named graphs.** Facts go into ``urn:lwfm:graph:<instance_id>`` of the instance that
  recorded the row (imported rows keep their origin); queries see the union.
* **Vocabulary.** A job is a ``prov:Activity`` and ``schema:CreateAction``; a data object
  a ``prov:Entity`` and ``schema:MediaObject``; a site a ``prov:Agent``. The IRI scheme is
  in :mod:`lwfm.provenance.vocab`; terms beyond schema.org / PROV-O in ``ontology/lwfm.ttl``
  with a JSON-LD context (``ontology/lwfm-context.jsonld``) and SHACL shapes
  (``ontology/shapes.ttl``). Lineage is the SPARQL property path ``vocab.UP_PATH``.

Outgrowing one machine
----------------------
The local graph is single-writer and lives in one home. For a shared, always-on graph
run a SPARQL 1.1 server (``oxigraph serve``, Fuseki, GraphDB, ...) and publish each
instance's named graphs there with :meth:`ProvenanceGraph.publish` (rdflib's standard
``SPARQLUpdateStore`` client: ``DROP SILENT GRAPH`` then ``INSERT DATA`` batches, so
instances publish side by side); query it with any SPARQL client, e.g. rdflib's
``SPARQLStore`` — every query in this package is plain SPARQL 1.1. Pointing the live
projection itself at ``SPARQLUpdateStore`` would also work (the N-Quads lines of
:mod:`lwfm.provenance.project` become ``INSERT DATA``), at HTTP round-trip cost per
sync. The tests publish to a real ``oxigraph serve`` (PyPI ``oxigraph``) and query it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .check import check_consistency
    from .graph import GraphBusy, ProvenanceGraph

__all__ = ["GraphBusy", "ProvenanceGraph", "check_consistency"]


def __getattr__(name: str) -> Any:
    """Import rdflib/pyoxigraph on first use, not when the CLI imports a submodule."""
    if name == "check_consistency":
        from .check import check_consistency
        return check_consistency
    if name in ("GraphBusy", "ProvenanceGraph"):
        from . import graph
        return getattr(graph, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
