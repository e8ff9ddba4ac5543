"""The provenance graph over a real store (SQLite, and PostgreSQL when marked):
projection, consistency with SQL, shapes, reindex, queries, lineage, thread."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from rdflib import Graph

from lwfm.config import load
from lwfm.errors import NotFound, QueryError
from lwfm.ontology import path as ontology_path
from lwfm.provenance import GraphBusy, ProvenanceGraph, check_consistency
from lwfm.provenance.vocab import node_iri
from lwfm.store import Store
from tests.test_provenance_helpers import part_one, part_two


@pytest.fixture
def env(home: Path, store_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LWFM_STORE_URL", store_url)
    cfg = load(home)
    st = Store(cfg.store_url)
    g = ProvenanceGraph(cfg, st)
    yield cfg, st, g
    g.close()
    st.close()


def quads(g: ProvenanceGraph) -> set[str]:
    return {str(q) for q in g.ox}


def union_graph(g: ProvenanceGraph) -> Graph:
    return g.query("CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }").graph


def test_incremental_sync_matches_sql_and_reindex(env) -> None:
    cfg, st, g = env
    t = part_one(st)
    assert g.sync() > 0
    assert check_consistency(g) == []
    # running jobs are Active in the graph, the failure is Failed
    rows = g.query(f"SELECT ?s WHERE {{ <{node_iri(t.jobs['c'].id)}> schema:actionStatus ?s }}",
                   fmt="table")[1]
    assert rows == [["http://schema.org/ActiveActionStatus"]]
    part_two(st, t)
    g.sync()
    assert g.sync() == 0      # nothing new: the watermark moved
    problems = check_consistency(g)
    assert problems == [], problems
    # current state was replaced, not accumulated
    rows = g.query(f"SELECT ?s ?st WHERE {{ <{node_iri(t.jobs['c'].id)}> schema:actionStatus ?s ;"
                   f" lwfm:state ?st }}", fmt="table")[1]
    assert rows == [["http://schema.org/FailedActionStatus", "CANCELLED"]]
    incremental = quads(g)
    g.reindex()
    assert quads(g) == incremental
    assert check_consistency(g) == []


def test_consistency_check_catches_divergence(env) -> None:
    cfg, st, g = env
    t = part_one(st)
    g.sync()
    import pyoxigraph as ox
    job = ox.NamedNode(node_iri(t.jobs["b"].id))
    for q in list(g.ox.quads_for_pattern(job, ox.NamedNode("https://w3id.org/lwfm/ns#state"),
                                         None, None)):
        g.ox.remove(q)
    assert any("state" in p for p in check_consistency(g))
    g.reindex()
    assert check_consistency(g) == []


def test_shapes_validate(env) -> None:
    import pyshacl
    cfg, st, g = env
    t = part_two(st, part_one(st))
    g.sync()
    shapes = Graph().parse(ontology_path("shapes.ttl"))
    ok, _, text = pyshacl.validate(union_graph(g), shacl_graph=shapes)
    assert ok, text
    # and the shapes do bite: a job with two states is invalid
    bad = union_graph(g)
    from rdflib import Literal, URIRef
    bad.add((URIRef(node_iri(t.jobs["a"].id)), URIRef("https://w3id.org/lwfm/ns#state"),
             Literal("RUNNING")))
    assert not pyshacl.validate(bad, shacl_graph=shapes)[0]


def test_ontology_and_context_parse_locally() -> None:
    onto = Graph().parse(ontology_path("lwfm.ttl"))
    from rdflib.namespace import OWL, RDFS
    from lwfm.provenance.vocab import LWFM, PROV, SCHEMA
    assert (LWFM.Job, RDFS.subClassOf, PROV.Activity) in onto
    assert (LWFM.Job, RDFS.subClassOf, SCHEMA.CreateAction) in onto
    assert (LWFM.Site, RDFS.subClassOf, PROV.Agent) in onto
    assert (None, OWL.versionInfo, None) in onto
    ctx = json.loads(ontology_path("lwfm-context.jsonld").read_text())["@context"]
    assert ctx[0] == "https://w3id.org/ro/crate/1.1/context"
    assert ctx[1]["lwfm"] == str(LWFM)


def test_named_graph_per_instance_and_union(env) -> None:
    cfg, st, g = env
    part_one(st)
    g.sync()
    graphs = {n.value for n in g.ox.named_graphs()}
    assert graphs == {f"urn:lwfm:graph:{st.instance_id}"}
    # facts of a job recorded by another instance (as a bundle import would) go to its graph
    from lwfm.model import Job, JobContext, JobDefn, JobStatus, State
    other = "00000000-0000-4000-8000-000000000001"
    j = Job(defn=JobDefn(entry=["remote"]), context=JobContext(site="hpc"), instance_id=other)
    st.add_job(j, JobStatus(j.id, State.COMPLETE))
    g.sync()
    assert {n.value for n in g.ox.named_graphs()} == graphs | {f"urn:lwfm:graph:{other}"}
    n = g.query("SELECT (COUNT(DISTINCT ?j) AS ?n) WHERE { ?j a lwfm:Job }", fmt="table")[1]
    assert n == [["5"]]     # 4 local + 1 from the other instance, in one union
    site = g.query(f"SELECT ?s WHERE {{ <{node_iri(j.id)}> schema:agent ?s }}", fmt="table")[1]
    assert site == [[f"urn:lwfm:site:{other}:hpc"]]
    assert check_consistency(g) == []


def test_late_events_in_holes_are_applied(env) -> None:
    """PostgreSQL makes seqs visible in commit order: a hole below the watermark fills later."""
    from sqlalchemy import insert
    from lwfm.model import Job, JobContext, JobDefn
    from lwfm.store import schema as t
    cfg, st, g = env
    part_one(st)
    g.sync()
    last = st.last_event()
    late, early = (Job(defn=JobDefn(entry=[n]), context=JobContext(), instance_id=st.instance_id)
                   for n in ("late", "early"))
    with st.write() as c:   # seq last+2 becomes visible first ...
        c.execute(insert(t.jobs).values(**st.job_row(early)))
        c.execute(insert(t.events).values(seq=last + 2, kind="job", ref=early.id))
    g.sync()
    assert g.state.watermark == last + 2 and g.state.gaps[0][:2] == [last + 1, last + 1]
    with st.write() as c:   # ... then the transaction holding last+1 commits
        c.execute(insert(t.jobs).values(**st.job_row(late)))
        c.execute(insert(t.events).values(seq=last + 1, kind="job", ref=late.id))
    g.sync()
    assert g.state.gaps == []
    assert check_consistency(g) == []


def test_state_survives_reopen_and_foreign_graph_is_rebuilt(env, tmp_path: Path) -> None:
    cfg, st, g = env
    part_one(st)
    g.sync()
    before = quads(g)
    g.close()
    g2 = ProvenanceGraph(cfg, st)
    try:
        assert g2.state.watermark == st.last_event() and g2.sync() == 0
        assert quads(g2) == before
        g2.state_path.write_text("{not json")   # state lost: the graph is rebuilt, not trusted
    finally:
        g2.close()
    g3 = ProvenanceGraph(cfg, st)
    try:
        g3.sync()
        assert quads(g3) == before and check_consistency(g3) == []
    finally:
        g3.close()
    env[2].__init__(cfg, st)   # reopen for the fixture's close()


def test_second_process_waits_then_fails_clearly(env) -> None:
    cfg, st, g = env
    code = ("import sys; from lwfm.config import load; from lwfm.store import Store; "
            "from lwfm.provenance import ProvenanceGraph, GraphBusy\n"
            "c = load(sys.argv[1]); s = Store(c.store_url)\n"
            "try:\n    ProvenanceGraph(c, s, lock_timeout=0.5)\n"
            "except GraphBusy as e:\n    print('BUSY', e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code, str(cfg.home)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "open in another lwfm process" in r.stdout
    assert isinstance(GraphBusy("x"), Exception)


def test_query_is_read_only_and_errors_are_clear(env) -> None:
    cfg, st, g = env
    part_one(st)
    g.sync()
    n = len(g)
    for upd in ("INSERT DATA { <urn:a> <urn:b> <urn:c> }", "DELETE WHERE { ?s ?p ?o }",
                "DROP ALL", "CLEAR DEFAULT", "LOAD <http://example.org/x.ttl>",
                "CREATE GRAPH <urn:g>", "ADD DEFAULT TO <urn:g>", "MOVE DEFAULT TO <urn:g>",
                "COPY DEFAULT TO <urn:g>"):
        with pytest.raises(QueryError, match="read-only"):
            g.query(upd)
    assert len(g) == n
    with pytest.raises(QueryError, match="malformed SPARQL"):
        g.query("SELECT ?x WHERE { ?x ")
    with pytest.raises(QueryError, match="malformed SPARQL"):
        g.query("SELECT ?x WHERE { ?x nope:p ?y }")
    with pytest.raises(QueryError, match="CONSTRUCT"):
        g.query("SELECT ?s WHERE { ?s a lwfm:Job }", fmt="turtle")


def test_query_formats(env) -> None:
    cfg, st, g = env
    t = part_one(st)
    g.sync()
    sel = "SELECT ?j ?name WHERE { ?j a lwfm:Job ; schema:name ?name } ORDER BY ?name"
    names, rows = g.query(sel, fmt="table")
    assert names == ["j", "name"] and [r[1] for r in rows] == ["a", "b", "c", "root"]
    assert g.query(sel, fmt="csv").splitlines()[0] == "j,name"
    js = json.loads(g.query(sel, fmt="json"))
    assert js["head"]["vars"] == ["j", "name"] and len(js["results"]["bindings"]) == 4
    assert json.loads(g.query("ASK { ?j lwfm:state \"FAILED\" }", fmt="json"))["boolean"] is True
    con = f"CONSTRUCT {{ ?j ?p ?o }} WHERE {{ BIND(<{node_iri(t.jobs['a'].id)}> AS ?j) ?j ?p ?o }}"
    ttl = g.query(con, fmt="turtle")
    assert Graph().parse(data=ttl, format="turtle") and "CreateAction" in ttl
    jl = g.query(con, fmt="jsonld")
    assert "w3id.org/ro/crate" not in jl        # local context only, never a remote one
    back = Graph().parse(data=jl, format="json-ld")
    assert len(back) == len(Graph().parse(data=ttl, format="turtle"))
    desc = g.query(f"DESCRIBE <{node_iri(t.data['a_out'].id)}>", fmt="turtle")
    assert "a.csv" in desc
    with pytest.raises(QueryError, match="unknown output format"):
        g.query(sel, fmt="xml")


def test_lineage_up_and_down(env) -> None:
    cfg, st, g = env
    t = part_two(st, part_one(st))
    g.sync()
    up = g.lineage(t.data["e_out"].id)
    ids = {n.id: n.depth for n in up.nodes}
    # e_out <- e <- (e_in <- a_out <- a <- root) and e <- a (trigger) and e <- root (parent)
    assert ids[t.data["e_out"].id] == 0 and ids[t.jobs["e"].id] == 1
    assert ids[t.data["e_in"].id] == 2 and ids[t.jobs["a"].id] == 2
    assert ids[t.data["a_out"].id] == 3 and t.jobs["root"].id in ids
    assert t.jobs["b"].id not in ids and t.jobs["f"].id not in ids
    rels = {(e, r, c) for e, r, c in up.edges}
    assert (t.data["e_out"].id, "wasGeneratedBy", t.jobs["e"].id) in rels
    assert (t.jobs["e"].id, "used", t.data["e_in"].id) in rels
    assert (t.data["e_in"].id, "wasDerivedFrom", t.data["a_out"].id) in rels
    down = g.lineage(t.data["a_out"].id, "down")
    dids = {n.id for n in down.nodes}
    assert {t.data["e_in"].id, t.jobs["e"].id, t.data["e_out"].id, t.jobs["f"].id} <= dids
    assert t.jobs["b"].id not in dids
    one = g.lineage(t.data["e_out"].id, depth=1)
    assert {n.id for n in one.nodes} == {t.data["e_out"].id, t.jobs["e"].id}
    assert g.lineage(t.jobs["root"].id[:8], "down").root == t.jobs["root"].id   # id prefix
    with pytest.raises(NotFound):
        g.lineage("00000000-0000-4000-8000-00000000dead")
    with pytest.raises(NotFound):
        g.lineage("> bad <")


def test_thread_tree_and_renderings(env, tmp_path: Path) -> None:
    from lwfm.provenance import render
    cfg, st, g = env
    t = part_two(st, part_one(st))
    g.sync()
    root = g.thread(t.wf.id)
    assert root.kind == "workflow" and root.label == "thread-test"
    top = {c.label for c in root.children}
    assert "root" in top and "f" in top       # f: triggered by data, no parent
    r = next(c for c in root.children if c.label == "root")
    assert {c.label for c in r.children} >= {"a", "b", "c", "e"}
    e = next(c for c in r.children if c.label == "e")
    assert {(c.kind, c.relation) for c in e.children} == {("data", "get"), ("data", "put")}
    dot = render.to_dot(root)
    assert dot.startswith("digraph") and t.jobs["b"].id in dot
    svg = render.to_svg(root)
    import html
    assert "<svg" in svg and "thread-test" in html.unescape(svg)
    assert render.to_html(root).startswith("<!DOCTYPE html>")
    from rich.console import Console
    con = Console(record=True, width=200)
    con.print(render.to_rich(root))
    text = con.export_text()
    assert "b FAILED @venv" in text and "c CANCELLED" in text and "⬆ put /work/out/e.json" in text
    with pytest.raises(NotFound):
        g.thread("00000000-0000-4000-8000-00000000beef")


def test_prov_library_reads_the_prov_view(env) -> None:
    from prov.model import ProvDocument
    cfg, st, g = env
    t = part_two(st, part_one(st))
    g.sync()
    view = g.query("""CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o .
        FILTER(STRSTARTS(STR(?p), STR(prov:)) && ?p != prov:atTime
               || ?p = rdf:type && STRSTARTS(STR(?o), STR(prov:))) }""", fmt="turtle")
    doc = ProvDocument.deserialize(content=view, format="rdf", rdf_format="turtle")
    acts = {r.identifier.uri for r in doc.get_records() if r.get_type().localpart == "Activity"}
    assert {node_iri(j.id) for j in t.jobs.values()} <= acts
    kinds = {r.get_type().localpart for r in doc.get_records()}
    assert {"Activity", "Entity", "Agent", "Generation", "Usage", "Derivation"} <= kinds


def test_workflow_run_crate_query_works_unchanged(env) -> None:
    cfg, st, g = env
    t = part_two(st, part_one(st))
    g.sync()
    # as written for RO-Crate Workflow Run Crates (schema.org with http://, explicit prefix)
    q = """PREFIX schema: <http://schema.org/>
    SELECT ?action ?instrument ?object ?result ?agent ?start ?end ?status WHERE {
      ?action a schema:CreateAction ;
              schema:instrument ?instrument ;
              schema:agent ?agent ;
              schema:actionStatus ?status .
      OPTIONAL { ?action schema:object ?object }
      OPTIONAL { ?action schema:result ?result }
      OPTIONAL { ?action schema:startTime ?start }
      OPTIONAL { ?action schema:endTime ?end }
    }"""
    res = list(g.query(q))
    e = [r for r in res if str(r.action) == node_iri(t.jobs["e"].id)]
    assert len(e) == 1
    row = e[0]
    assert str(row.object) == node_iri(t.data["e_in"].id)
    assert str(row.result) == node_iri(t.data["e_out"].id)
    assert str(row.status) == "http://schema.org/CompletedActionStatus"
    assert row.start is not None and row.end is not None and row.instrument is not None
    assert len({str(r.action) for r in res}) == len(t.jobs)


@pytest.mark.slow
def test_lineage_2000_steps_deep(home: Path) -> None:
    """rdflib's own evaluator recurses out of stack on this path; Oxigraph walks it."""
    from sqlalchemy import insert
    from lwfm.model import DataObject, Job, JobContext, JobDefn, State
    from lwfm.store import schema as t
    cfg = load(home)
    st = Store(cfg.store_url)
    jobs, data = [], [DataObject(url="/chain/0", instance_id=st.instance_id)]
    for i in range(2000):
        j = Job(defn=JobDefn(entry=["step"]), context=JobContext(), state=State.COMPLETE,
                instance_id=st.instance_id)
        got = DataObject(url=data[-1].url, direction="get", job_id=j.id,
                         derived_from=data[-1].id, instance_id=st.instance_id)
        out = DataObject(url=f"/chain/{i + 1}", job_id=j.id, instance_id=st.instance_id)
        jobs.append(j)
        data += [got, out]
    with st.write() as c:
        c.execute(insert(t.jobs), [st.job_row(j) for j in jobs])
        c.execute(insert(t.data), [d.to_dict() for d in data])
        st.journal(c, "job", [j.id for j in jobs])
        st.journal(c, "data", [d.id for d in data])
    with ProvenanceGraph(cfg, st) as g:
        g.sync()
        lin = g.lineage(data[-1].id)
        assert len(lin.nodes) == 6001
        assert max(n.depth for n in lin.nodes) == 6000
        assert lin.nodes[-1].id == data[0].id
        down = g.lineage(data[0].id, "down")
        assert len(down.nodes) == 6001


@pytest.mark.slow
def test_imported_bundle_lands_in_origin_graph_with_its_record(home: Path, tmp_path: Path) -> None:
    """A thread exported by another instance and imported here: its facts go into the
    origin's named graph, the bundle node says what it brought, and SQL == graph."""
    from lwfm.bundles import export_bundle, import_bundle
    remote_cfg = load(tmp_path / "remote-home")
    remote = Store(remote_cfg.store_url)
    t = part_two(remote, part_one(remote))
    zip_path = tmp_path / "thread.zip"
    export_bundle(remote, remote_cfg, zip_path, workflow_id=t.wf.id)
    cfg = load(home)
    st = Store(cfg.store_url)
    with ProvenanceGraph(cfg, st) as g:
        g.sync()
        rep = import_bundle(st, cfg, zip_path)
        g.sync()
        assert check_consistency(g) == []
        graphs = {n.value for n in g.ox.named_graphs()}
        assert f"urn:lwfm:graph:{remote.instance_id}" in graphs
        rows = g.query("""SELECT ?origin (COUNT(?x) AS ?n) WHERE {
              ?b a lwfm:Bundle ; lwfm:originInstance ?origin ; lwfm:brought ?x }
              GROUP BY ?origin""", fmt="table")[1]
        assert rows[0][0] == node_iri(remote.instance_id) and int(rows[0][1]) >= len(t.jobs)
        where = g.query(f"""SELECT ?g WHERE {{ GRAPH ?g {{ <{node_iri(t.jobs['e'].id)}>
                            lwfm:state "COMPLETE" }} }}""", fmt="table")[1]
        assert where == [[f"urn:lwfm:graph:{remote.instance_id}"]]
        assert t.jobs["a"].id in {n.id for n in g.lineage(t.data["e_out"].id).nodes}
        before = quads(g)
        g.reindex()
        assert quads(g) == before
        assert rep is not None


def test_every_lwfm_term_written_is_declared_in_ontology_and_context() -> None:
    import re
    import lwfm.provenance.facts as facts
    import lwfm.provenance.project as project
    src = Path(project.__file__).read_text()
    used = set(re.findall(r"'lwfm_(\w+)'", src)) | set(re.findall(r'_p\(LWFM, "(\w+)"\)', src))
    used |= set(re.findall(r'"lwfm:(\w+)"', Path(facts.__file__).read_text()))  # shared facts
    onto = Graph().parse(ontology_path("lwfm.ttl"))
    ns = "https://w3id.org/lwfm/ns#"
    declared = {str(s)[len(ns):] for s in onto.subjects() if str(s).startswith(ns)}
    assert used and used == declared
    ctx = json.loads(ontology_path("lwfm-context.jsonld").read_text())["@context"][1]
    ids = {(v if isinstance(v, str) else v["@id"]) for v in ctx.values()}
    assert {f"lwfm:{u}" for u in used} <= ids


def test_reindex_in_many_segments_loads_every_quad(env, monkeypatch) -> None:
    """reindex bulk-loads its stream segment by segment (bounded memory): tiny segments
    of a few lines each must still yield exactly the graph the incremental sync built."""
    from lwfm.provenance.bulk import LineStream
    cfg, st, g = env
    t = part_one(st)
    part_two(st, t)
    g.sync()
    incremental = quads(g)
    monkeypatch.setattr(LineStream, "CHUNK_LINES", 7)
    monkeypatch.setattr(LineStream, "SEGMENT_BYTES", 1)   # one chunk per bulk load
    assert g.reindex() == len(incremental)
    assert quads(g) == incremental
    assert check_consistency(g) == []
