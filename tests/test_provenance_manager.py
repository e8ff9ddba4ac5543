"""Real jobs through the Manager (local site, real processes), then the graph: every
fact in SQL is in the graph, the shapes hold, lineage crosses jobs and data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from rdflib import Graph

from lwfm import JobDefn, Manager, State
from lwfm.model import EntryKind
from lwfm.ontology import path as ontology_path
from lwfm.provenance import check_consistency


@pytest.mark.slow
def test_real_workflow_is_projected_completely(home: Path, tmp_path: Path) -> None:
    import pyshacl
    out = tmp_path / "a.txt"
    with Manager(home) as m:
        wf = m.create_workflow("real", description="failures, cancels, triggers, data")
        a = m.submit(JobDefn(entry=f"echo a > {out}", kind=EntryKind.SHELL, name="a"),
                     workflow_id=wf.id)
        fail = m.submit(JobDefn(entry="exit 3", kind=EntryKind.SHELL, name="fails"),
                        workflow_id=wf.id)
        slow = m.submit(JobDefn(entry=["sleep", "60"], name="slow"), workflow_id=wf.id)
        b_trig = m.on(a.id, JobDefn(entry=["true"], name="b"))
        dead = m.on(fail.id, JobDefn(entry=["true"], name="never"))
        d_trig = m.on_data({"kind": "report"}, JobDefn(entry=["true"], name="on-data"),
                           workflow_id=wf.id)
        assert m.wait(a.id, timeout=60).state is State.COMPLETE
        d = m.notate(out, job_id=a.id, metadata={"kind": "report", "n": 1})
        m.cancel(slow.id)
        for j in (fail.id, slow.id, b_trig.job_id, d_trig.job_id):
            m.wait(j, timeout=60)
        m.flush()
        g = m.graph
        problems = check_consistency(g)
        assert problems == [], problems
        states = dict(g.query("""SELECT ?n ?s WHERE { ?j a lwfm:Job ; schema:name ?n ;
                                  lwfm:state ?s }""", fmt="table")[1])
        assert states == {"a": "COMPLETE", "fails": "FAILED", "slow": "CANCELLED",
                          "b": "COMPLETE", "on-data": "COMPLETE"}
        assert m.store.get_trigger(dead.trigger_id).status.value == "dead"
        shapes = Graph().parse(ontology_path("shapes.ttl"))
        data = g.query("CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }").graph
        ok, _, text = pyshacl.validate(data, shacl_graph=shapes)
        assert ok, text
        up = {n.id for n in g.lineage(d.id).nodes}
        assert a.id in up
        down = {n.id for n in g.lineage(a.id, "down").nodes}
        assert {d.id, b_trig.job_id, d_trig.job_id} <= down   # job trigger and data trigger
        root = g.thread(wf.id)
        assert {c.label for c in root.walk()} >= {"a", "fails", "slow", "b", "on-data"}
        before = {str(q) for q in g.ox}
        g.reindex()
        assert {str(q) for q in g.ox} == before


@pytest.mark.slow
def test_job_processes_never_open_the_graph(home: Path) -> None:
    """While this process holds the graph, jobs still record (SQL only) and it catches up."""
    with Manager(home) as m:
        g = m.graph   # holds the graph lock for the whole test
        code = ("from lwfm import Manager\n"
                "with Manager() as m:\n"
                "    m.report_status('INFO', info='hello from the job')\n")
        j = m.submit(JobDefn(entry=[sys.executable, "-c", code], name="inner"))
        assert m.wait(j.id, timeout=60).state is State.COMPLETE
        m.flush()
        g = m.graph
        infos = g.query("SELECT ?i WHERE { ?s lwfm:statusOf ?j ; lwfm:info ?i }", fmt="table")[1]
        assert ["hello from the job"] in infos
        assert check_consistency(g) == []


def test_the_user_who_submitted_is_an_agent_in_the_graph(home: Path) -> None:
    import getpass
    from lwfm import JobDefn, Manager
    with Manager(home) as m:
        j = m.wait(m.submit(JobDefn(entry=["true"])).id, timeout=30)
        assert j.submitter == getpass.getuser()
        rows = list(m.graph.query(
            "PREFIX prov: <http://www.w3.org/ns/prov#> PREFIX schema: <http://schema.org/> "
            "SELECT ?name WHERE { ?job prov:wasAssociatedWith ?p . "
            "?p a prov:Agent, schema:Person ; schema:name ?name }"))
        assert [str(r[0]) for r in rows] == [getpass.getuser()]
        assert m.graph.check() == []
