"""Foreign crates import losslessly: every triple in the crate's named graph, its IRIs and
literals as written, crate-written queries answered as rdflib answers them on the crate,
and a re-export still says all of it."""

from __future__ import annotations

import json
import urllib.parse
import zipfile
from pathlib import Path

import pytest
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import XSD

from lwfm.bundles import export_bundle, import_bundle
from lwfm.errors import BundleError
from lwfm.ontology import context_files, path
from lwfm.provenance.graph import ProvenanceGraph
from tests._bundle_threads import Home, snapshot
from tests.test_bundles_foreign import CRATES, home, zipped  # noqa: F401  (home: the fixture)

STYLES = ["cwl_provenance", "nextflow_wrroc", "galaxy_process", "snakemake_wrroc",
          "compss_wrroc", "streamflow_provenance"]
PREFIXES = """PREFIX schema: <http://schema.org/>
PREFIX wfrun: <https://w3id.org/ro/terms/workflow-run#>
PREFIX bioschemas: <https://bioschemas.org/>
PREFIX bst: <https://bioschemas.org/terms/>
PREFIX dct: <http://purl.org/dc/terms/>
"""
# Queries written against the crates ({from} is where lwfm is told which crate to ask);
# the second element says whether the union of all graphs must give the same answer too
# (queries that only the crate's own vocabulary can match).
QUERIES = [
    ("SELECT ?s ?p ?o {from} WHERE { ?s ?p ?o FILTER(!isBlank(?s) && !isBlank(?o)) }", False),
    ("SELECT ?a ?name ?start ?end {from} WHERE { ?a a schema:CreateAction ; schema:name ?name . "
     "OPTIONAL { ?a schema:startTime ?start } OPTIONAL { ?a schema:endTime ?end } }", False),
    ("SELECT ?a ?tool ?v {from} WHERE { ?a schema:instrument ?tool . "
     "?tool schema:softwareVersion ?v }", True),
    ("SELECT ?a ?img ?reg ?tag {from} WHERE { ?a wfrun:containerImage ?img . "
     "OPTIONAL { ?img wfrun:registry ?reg } OPTIONAL { ?img wfrun:tag ?tag } }", True),
    ("SELECT ?a ?name ?value {from} WHERE { ?a schema:object ?pv . ?pv a schema:PropertyValue ; "
     "schema:name ?name ; schema:value ?value }", True),
    ("SELECT ?a ?key ?value {from} WHERE { ?a wfrun:resourceUsage ?u . ?u schema:propertyID ?key ; "
     "schema:value ?value }", True),
    ("SELECT ?src ?dst {from} WHERE { ?c a wfrun:ParameterConnection ; wfrun:sourceParameter ?src ; "
     "wfrun:targetParameter ?dst }", True),
    ("SELECT ?step ?ctl ?org {from} WHERE { ?org a schema:OrganizeAction ; schema:object ?ctl . "
     "?ctl a schema:ControlAction ; schema:object ?step }", True),
    ("SELECT ?wf ?p {from} WHERE { { ?wf bioschemas:input ?p } UNION { ?wf bst:input ?p } UNION "
     "{ ?wf <https://bioschemas.org/ComputationalWorkflow#input> ?p } UNION "
     "{ ?wf <https://bioschemas.org/properties/input> ?p } }", True),
    ("SELECT ?f ?size ?sha {from} WHERE { ?f a schema:MediaObject . "
     "OPTIONAL { ?f schema:contentSize ?size } OPTIONAL { ?f wfrun:sha1 ?sha } }", False),
    ("SELECT (COUNT(*) AS ?n) {from} WHERE { ?s ?p ?o }", False),
]


@pytest.fixture
def arcp(monkeypatch):
    """rdflib resolves relative ids with urljoin, which knows only some schemes: teach it arcp."""
    monkeypatch.setattr(urllib.parse, "uses_relative", urllib.parse.uses_relative + ["arcp"])
    monkeypatch.setattr(urllib.parse, "uses_netloc", urllib.parse.uses_netloc + ["arcp"])


def reference(doc: dict, base: str) -> Graph:
    """rdflib's reading of the crate, each context URL replaced by the shipped document."""
    ctx = doc["@context"] if isinstance(doc["@context"], list) else [doc["@context"]]
    local = [json.loads(path(context_files()[c]).read_text())["@context"] if isinstance(c, str) else c
             for c in ctx]
    return Graph().parse(data=json.dumps({**doc, "@context": local}), format="json-ld", base=base)


def crate_doc(name: str) -> dict:
    return json.loads((CRATES / name / "ro-crate-metadata.json").read_text())


def stored(g: ProvenanceGraph, graph_iri: str) -> Graph:
    out = Graph()
    nt = "".join(f"{q.subject} {q.predicate} {q.object} .\n" for q in
                 g.ox.quads_for_pattern(None, None, None, __import__("pyoxigraph").NamedNode(graph_iri)))
    return out.parse(data=nt, format="nt")


def synced(home, graph_iri: str) -> Graph:
    """The named graph ``graph_iri`` of ``home``'s provenance graph, brought up to date."""
    g = ProvenanceGraph(home.config, home.store)
    try:
        g.sync()
        return stored(g, graph_iri)
    finally:
        g.close()


def _term(x):
    if isinstance(x, Literal):
        return ("lit", str(x), str(x.datatype or (None if x.language else XSD.string)), x.language)
    if isinstance(x, BNode):
        return ("bnode",)
    return ("iri" if isinstance(x, URIRef) else "none", None if x is None else str(x))


def answers(result) -> list:
    return sorted(tuple(_term(x) for x in row) for row in result)


@pytest.mark.parametrize("name", STYLES)
def test_every_triple_is_kept_and_queries_answer_as_on_the_crate(home, tmp_path, arcp, name):
    rep = import_bundle(home.store, home.config, zipped(name, tmp_path))
    origin = rep.origin_instance
    crate_graph = f"urn:lwfm:graph:crate:{origin}"
    assert rep.crate_graph == crate_graph
    ref = reference(crate_doc(name), f"arcp://uuid,{origin}/")
    assert len(ref) > 40 and rep.added["triples"] == len(ref)
    g = ProvenanceGraph(home.config, home.store)
    try:
        g.sync()
        assert isomorphic(stored(g, crate_graph), ref), "the crate's graph is not the crate"
        for q, union_too in QUERIES:
            want = answers(ref.query(PREFIXES + q.replace("{from}", "")))
            got = answers(g.query(PREFIXES + q.replace("{from}", f"FROM <{crate_graph}>")))
            assert got == want, q
            if union_too:
                assert answers(g.query(PREFIXES + q.replace("{from}", ""))) == want, q
        # every action of the crate is an lwfm job joined to its node
        acts = {str(r[0]) for r in ref.query(
            PREFIXES + "SELECT ?a WHERE { ?a a schema:CreateAction }")}
        joined = {r[0] for r in g.select_values("SELECT ?n WHERE { ?j a lwfm:Job ; lwfm:crateNode ?n }")}
        assert acts and acts <= joined
        # SQL is the source: a reindex rebuilds the same graph from the rows
        g.reindex(optimize=False)
        assert isomorphic(stored(g, crate_graph), ref)
    finally:
        g.close()


def test_crate_ids_and_literals_are_untouched(home, tmp_path):
    rep = import_bundle(home.store, home.config, zipped("snakemake_wrroc", tmp_path))
    base = f"arcp://uuid,{rep.origin_instance}/"
    g = ProvenanceGraph(home.config, home.store)
    try:
        g.sync()
        rows = g.select_values(f"""SELECT ?start ?lic WHERE {{ GRAPH <urn:lwfm:graph:crate:{rep.origin_instance}> {{
            <{base}#snakemake-run-2023-02-14> schema:startTime ?start .
            <{base}> schema:license ?lic }} }}""")
        assert rows == [("2023-02-14T08:02:11+01:00", "https://spdx.org/licenses/MIT")]
        # the job mapped from that action says which crate node it is
        assert g.select_values(f"SELECT ?j WHERE {{ ?j lwfm:crateNode <{base}#snakemake-run-2023-02-14> }}")
    finally:
        g.close()


def test_lwfm_query_cli_asks_one_crate(home, tmp_path, arcp):
    import os
    import subprocess
    import sys
    rep = import_bundle(home.store, home.config, zipped("streamflow_provenance", tmp_path))
    q = (PREFIXES + f"SELECT ?tool ?v FROM <urn:lwfm:graph:crate:{rep.origin_instance}> "
         "WHERE { ?a schema:instrument ?tool . ?tool schema:softwareVersion ?v } ORDER BY ?v")
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "query", q, "--format", "csv"],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "LWFM_HOME": str(home.config.home)})
    assert r.returncode == 0, r.stderr
    base = f"arcp://uuid,{rep.origin_instance}/"
    import csv
    assert list(csv.reader(r.stdout.splitlines())) == [
        ["tool", "v"], ["https://w3id.org/ro/terms/streamflow", "0.2.0.dev11"],
        [f"{base}merge.cwl", "0.9"], [f"{base}individuals.cwl", "1.4.2"]]


def _exported_graph(bundle: Path) -> Graph:
    doc = json.loads(zipfile.ZipFile(bundle).read("ro-crate-metadata.json"))
    return reference(doc, "arcp://uuid,00000000-0000-0000-0000-000000000000/")


def _says_all(exported: Graph, ref: Graph) -> None:
    ground = {t for t in ref if not any(isinstance(x, BNode) for x in t)}
    assert ground <= set(exported)
    with_bnodes = [t for t in ref if any(isinstance(x, BNode) for x in t)]
    assert len(with_bnodes) == sum(1 for t in exported if any(isinstance(x, BNode) for x in t)
                                   and not t[1].startswith("https://w3id.org/lwfm/"))


@pytest.mark.parametrize("name, read", [("streamflow_provenance", "whole"),
                                        ("cwl_provenance", "streamed")])
def test_reexport_says_everything_the_crate_said(home, tmp_path, arcp, monkeypatch, name, read):
    from lwfm.bundles import _importer
    if read == "streamed":   # the re-export is read by the child reader, batch by batch
        monkeypatch.setattr(_importer, "STREAM_MIN_BYTES", 0)
    rep = import_bundle(home.store, home.config, zipped(name, tmp_path))
    ref = reference(crate_doc(name), f"arcp://uuid,{rep.origin_instance}/")
    # alone (the crate's workflow), and joined with local work (everything)
    wf = home.store.find_jobs(site="imported")[0].context.workflow_id
    alone = export_bundle(home.store, home.config, tmp_path / "alone.zip", workflow_id=wf).path
    _says_all(_exported_graph(alone), ref)
    from tests._bundle_threads import build
    remote = Home.open(tmp_path / "remote")
    try:
        build(home, remote, tmp_path)
        joined = export_bundle(home.store, home.config, tmp_path / "all.zip", all=True).path
        _says_all(_exported_graph(joined), ref)
        # and another lwfm that imports the re-export has the crate, row for row
        third = Home.open(tmp_path / "third")
        try:
            import_bundle(third.store, third.config, joined)
            assert isomorphic(synced(third, rep.crate_graph), ref)
        finally:
            third.store.close()
    finally:
        remote.store.close()


def _lwfm_bundle_with(tmp_path: Path, home, change) -> Path:
    """A real re-export of a crate, one of whose carried nodes ``change`` edits."""
    import_bundle(home.store, home.config, zipped("galaxy_process", tmp_path))
    wf = home.store.find_jobs(site="imported")[0].context.workflow_id
    out = export_bundle(home.store, home.config, tmp_path / "re.zip", workflow_id=wf).path
    doc = json.loads(zipfile.ZipFile(out).read("ro-crate-metadata.json"))
    node = next(e for e in doc["@graph"] if "lwfm:crateTriples" in e and e["@id"].startswith("arcp:"))
    change(node)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("ro-crate-metadata.json", json.dumps(doc))
    return bad


@pytest.mark.parametrize("change, why", [
    (lambda e: e.update({"lwfm:crateTriples": json.dumps({k: "<urn:other> <urn:p> \"x\""
                                                         for k in json.loads(e["lwfm:crateTriples"])})}),
     "not about its entity"),
    (lambda e: e.update({"lwfm:crateTriples": json.dumps({k: f"<{e['@id']}> <urn:p> <urn:o> <urn:graph>"
                                                         for k in json.loads(e["lwfm:crateTriples"])})}),
     "invalid N-Triples"),
    (lambda e: e.update({"lwfm:crateTriples": json.dumps({"not-a-uuid": "x"})}), "crate uuid"),
])
def test_carried_crate_triples_are_checked(tmp_path, change, why):
    src = Home.open(tmp_path / "src")
    dst = Home.open(tmp_path / "dst")
    try:
        bad = _lwfm_bundle_with(tmp_path, src, change)
        before = snapshot(dst.store)
        with pytest.raises(BundleError, match=why):
            import_bundle(dst.store, dst.config, bad)
        assert snapshot(dst.store) == before
    finally:
        src.store.close()
        dst.store.close()


def test_ids_that_are_not_iris_are_percent_encoded_not_dropped(home, tmp_path, arcp):
    """A file name with a space as an @id (RO-Crate asks for percent-encoding; crates in
    the wild do not always): a JSON-LD parser would drop every triple naming it."""
    doc = crate_doc("nextflow_wrroc")
    text = json.dumps(doc).replace('"samplesheet.csv"', '"sample sheet.csv"')
    d = tmp_path / "spaced"
    d.mkdir()
    (d / "ro-crate-metadata.json").write_text(text)
    out = tmp_path / "spaced.zip"
    with zipfile.ZipFile(out, "w") as z:
        z.write(d / "ro-crate-metadata.json", "ro-crate-metadata.json")
    rep = import_bundle(home.store, home.config, out)
    base = f"arcp://uuid,{rep.origin_instance}/"
    # what rdflib reads from the crate written as RO-Crate asks (rdflib too drops the
    # triples of the unencoded one)
    ref = reference(json.loads(text.replace('"@id": "sample sheet.csv"',
                                            '"@id": "sample%20sheet.csv"')), base)
    assert rep.added["triples"] == len(ref) > len(reference(json.loads(text), base))
    g = ProvenanceGraph(home.config, home.store)
    try:
        g.sync()
        assert isomorphic(stored(g, rep.crate_graph), ref)
        assert g.select_values(f"SELECT ?d WHERE {{ ?d lwfm:crateNode <{base}sample%20sheet.csv> }}")
    finally:
        g.close()


def test_a_foreign_file_is_joined_to_its_crate_node_from_its_id(home, tmp_path, arcp):
    """A foreign file's row keeps the crate's @id (``rocrate_id``), not its IRI too (one
    fact, stored once): the graph derives ``lwfm:crateNode`` from it. A row an earlier
    import wrote with a ``rocrate_iri`` entry instead is joined from that."""
    from sqlalchemy import delete, insert, select

    from lwfm.store import t
    rep = import_bundle(home.store, home.config, zipped("nextflow_wrroc", tmp_path))
    base = f"arcp://uuid,{rep.origin_instance}/"
    with home.store.read() as c:
        keys = {k for (k,) in c.execute(select(t.data_meta.c.key).distinct())}
        rows = c.execute(select(t.data_meta.c.data_id, t.data_meta.c.value)
                         .where(t.data_meta.c.key == "rocrate_id")).all()
    assert "rocrate_id" in keys and "rocrate_iri" not in keys
    data_id, rid = rows[0]
    with home.store.write() as c:   # as an earlier import wrote that row's metadata
        c.execute(delete(t.data_meta).where(t.data_meta.c.data_id == data_id,
                                            t.data_meta.c.key == "rocrate_id"))
        c.execute(insert(t.data_meta).values(data_id=data_id, key="rocrate_iri",
                                             value=base + rid))
    g = ProvenanceGraph(home.config, home.store)
    try:
        g.reindex()
        linked = {(r[0], r[1]) for r in g.select_values(
            "SELECT ?d ?n WHERE { ?d a lwfm:DataObject ; lwfm:crateNode ?n }")}
        assert (f"urn:uuid:{data_id}", base + rid) in linked
        others = {d for d, _ in linked} - {f"urn:uuid:{data_id}"}
        assert len(others) == len(rows) - 1   # every other file, from its rocrate_id
        crate_nodes = {r[0] for r in g.select_values(
            f"SELECT ?s WHERE {{ GRAPH <{rep.crate_graph}> {{ ?s ?p ?o }} }}")}
        assert {n for _, n in linked} <= crate_nodes   # each a node the crate states
    finally:
        g.close()


@pytest.mark.postgres
def test_lossless_through_postgresql(tmp_path, pg_server, monkeypatch, arcp):
    """Kept triples in a PostgreSQL store: projected, re-exported (by export workers)."""
    from dataclasses import replace

    from lwfm.bundles import _crate
    from lwfm.store import Store
    monkeypatch.setattr(_crate, "PARALLEL_MIN", 0)
    url = pg_server.database("lossless")
    cfg = Home.open(tmp_path / "pg").config
    pg = Home(replace(cfg, store_url=url), Store(url))
    third = Home.open(tmp_path / "third")
    try:
        rep = import_bundle(pg.store, pg.config, zipped("streamflow_provenance", tmp_path))
        ref = reference(crate_doc("streamflow_provenance"), f"arcp://uuid,{rep.origin_instance}/")
        assert isomorphic(synced(pg, rep.crate_graph), ref)
        out = export_bundle(pg.store, pg.config, tmp_path / "pg.zip", all=True).path
        _says_all(_exported_graph(out), ref)
        import_bundle(third.store, third.config, out)
        assert isomorphic(synced(third, rep.crate_graph), ref)
    finally:
        pg.store.close()
        third.store.close()


def _rows_of(store, table: str, cols: str) -> list[tuple]:
    from sqlalchemy import text
    with store.read() as c:
        return sorted(tuple(r) for r in c.execute(text(f"SELECT {cols} FROM {table}")))


def _schema(store) -> list[tuple]:
    from sqlalchemy import text
    with store.read() as c:
        return sorted(tuple(r) for r in c.execute(text("SELECT type, name, tbl_name, sql FROM sqlite_master")))


def test_large_crate_paths_give_the_same_rows(tmp_path, monkeypatch):
    """What a large crate takes (its triples parsed in a child process, the indexes of the
    tables it fills built once at the end) gives the rows, report and schema the small
    path gives, for every style of crate (and an id that needs percent-encoding)."""
    from lwfm.bundles import _crate_child
    from lwfm.store import sql
    spaced = tmp_path / "spaced.zip"
    with zipfile.ZipFile(spaced, "w") as z:
        z.writestr("ro-crate-metadata.json", json.dumps(crate_doc("nextflow_wrroc")).replace(
            '"samplesheet.csv"', '"sample sheet.csv"'))
    crates = [zipped(name, tmp_path) for name in STYLES] + [spaced]
    homes = {}
    for path_, (child_min, min_rows) in {"small": (10 ** 9, 10 ** 9), "large": (0, 1)}.items():
        monkeypatch.setattr(_crate_child, "CHILD_MIN", child_min)
        monkeypatch.setattr(_crate_child, "workers", lambda: 2)
        monkeypatch.setattr(sql.DeferredIndexes, "MIN_ROWS", min_rows)
        h = homes[path_] = Home.open(tmp_path / path_)
        reps = [import_bundle(h.store, h.config, c) for c in crates]
        homes[path_] = (h, [(r.added, r.unmapped, r.crate_graph) for r in reps])
    (small, small_reps), (large, large_reps) = homes["small"], homes["large"]
    try:
        assert large_reps == small_reps
        for table, cols in (("crate_nodes", "crate_id, subject, triples"),
                            ("jobs", "id, name, defn, parent_id, state, created, started, ended, native_id"),
                            ("statuses", "job_id, state, native_state, info, time, exit_code"),
                            ("data", "id, url, direction, metadata, size, sha256, job_id, derived_from"),
                            ("data_meta", "data_id, key, value, typed, vhash")):
            assert _rows_of(large.store, table, cols) == _rows_of(small.store, table, cols), table
        assert _schema(large.store) == _schema(small.store)   # every index is back, as it was
        # the same crates again add nothing, whichever way they are read
        again = [import_bundle(large.store, large.config, c) for c in crates]
        assert all(r.already_imported for r in again)
    finally:
        small.store.close()
        large.store.close()


def test_refusal_of_a_large_crate_leaves_the_store_unchanged(home, tmp_path, monkeypatch):
    """The child's refusal is the in-process one (same message); nothing is imported."""
    from lwfm.bundles import _crate_child
    from lwfm.store import sql
    monkeypatch.setattr(_crate_child, "CHILD_MIN", 0)
    monkeypatch.setattr(_crate_child, "workers", lambda: 2)
    monkeypatch.setattr(sql.DeferredIndexes, "MIN_ROWS", 1)
    doc = crate_doc("galaxy_process")
    # large enough that only the RDF parse (no pyld expansion) looks at the JSON-LD
    doc["@graph"] += [{"@id": f"#t{i}", "@type": "Thing", "name": f"t{i}"} for i in range(5001)]
    doc["@graph"].append({"@id": "#bad", "@type": "Thing", "name": {"@value": "x", "@type": "@id"}})
    out = tmp_path / "bad.zip"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("ro-crate-metadata.json", json.dumps(doc))
    before = snapshot(home.store)
    schema = _schema(home.store)
    with pytest.raises(BundleError, match="does not parse as RDF"):
        import_bundle(home.store, home.config, out)
    assert snapshot(home.store) == before and _schema(home.store) == schema
