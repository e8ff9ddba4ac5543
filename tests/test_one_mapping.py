"""The provenance graph and an export say the same of every record (issue 11, "one mapping").

The graph (``lwfm.provenance.project``) and a bundle's crate (``lwfm.bundles._crate``)
each map rows to linked data. Wherever both state a property of the same node, they must
state the same values, or a query gives one answer on the graph and another on the
bundle. Checked on a real two-instance thread, with a bundle from the other instance and
a foreign engine's crate imported into it: the crate is read with rdflib (its contexts
resolved locally), the graph is the home's own. The graph may say more (PROV-O classes
beside schema.org's, the status reports); the crate may say more (its payload, the row).
"""

from __future__ import annotations

import json
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from rdflib import RDF, Graph, Literal, URIRef

from lwfm.bundles import export_bundle, import_bundle
from lwfm.provenance.graph import ProvenanceGraph
from tests._bundle_threads import Home, build
from tests.test_bundles_foreign import zipped
from tests.test_bundles_lossless import arcp, reference  # noqa: F401  (arcp: fixture)

LWFM = "https://w3id.org/lwfm/ns#"


def _value(o):
    """A term as both sides mean it: a date whatever its lexical form, a number whatever
    its datatype (RO-Crate writes contentSize as text), an IRI as itself."""
    if isinstance(o, Literal):
        v = o.toPython()
        if isinstance(v, str):  # RO-Crate writes dates as plain text
            try:
                v = datetime.fromisoformat(v)
            except ValueError:
                pass
        if isinstance(v, datetime):
            return ("time", v.isoformat())
        return ("lit", str(v))
    return ("iri", str(o))


@pytest.mark.parametrize("foreign", ["cwl_provenance", "nextflow_wrroc"])
def test_graph_and_export_state_the_same_values(tmp_path: Path, arcp, foreign: str) -> None:
    local, remote = Home.open(tmp_path / "local"), Home.open(tmp_path / "remote")
    build(local, remote, tmp_path)
    export_bundle(remote.store, remote.config, tmp_path / "remote.zip", all=True)
    import_bundle(local.store, local.config, tmp_path / "remote.zip")
    import_bundle(local.store, local.config, zipped(foreign, tmp_path))
    out = tmp_path / "all.zip"
    export_bundle(local.store, local.config, out, all=True)
    doc = json.loads(zipfile.ZipFile(out).read("ro-crate-metadata.json"))
    crate = reference(doc, "arcp://uuid,00000000-0000-0000-0000-000000000000/")
    g = ProvenanceGraph(local.config, local.store)
    try:
        g.reindex()
        graph = Graph().parse(format="nt", data="".join(  # every named graph, as one
            f"{q.subject} {q.predicate} {q.object} .\n"
            for q in g.ox.quads_for_pattern(None, None, None, None)))
    finally:
        g.close()
    compared = 0
    for s in {s for s in crate.subjects() if isinstance(s, URIRef) and str(s).startswith("urn:")}:
        for p in set(crate.predicates(s)):
            mine = {_value(o) for o in graph.objects(s, p)}
            if not mine:
                continue  # a property only the export states
            theirs = {_value(o) for o in crate.objects(s, p)}
            if p == RDF.type:
                assert theirs <= mine, (s, theirs - mine)
            else:
                assert theirs == mine, (str(s), str(p), theirs, mine)
            compared += 1
    # jobs, data, workflows, sites, software, the foreign crate's mapped runs: all compared
    assert compared > 200, compared
    sites = {str(o) for o in crate.objects(None, URIRef(LWFM + "site"))}
    assert sites and all(s.startswith("urn:lwfm:site:") for s in sites)  # an IRI, as the ontology says
