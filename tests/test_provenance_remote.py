"""The documented path past one machine, against a real SPARQL 1.1 server: publish the
graph to `oxigraph serve` with rdflib's SPARQLUpdateStore, query it with SPARQLStore."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from rdflib import Graph
from rdflib.plugins.stores.sparqlstore import SPARQLStore

from lwfm.config import load
from lwfm.errors import LwfmError
from lwfm.provenance import ProvenanceGraph
from lwfm.provenance.vocab import node_iri
from lwfm.store import Store
from tests.test_provenance_helpers import part_one, part_two



def _beside_python(name: str) -> str | None:
    """A console script of this interpreter's environment: pip puts it in the scripts
    dir, which is on PATH only while that venv is activated (``PYTHON=<venv> .ci/run``
    does not activate it); then the base interpreter's (a --system-site-packages venv);
    PATH last."""
    for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable),
              sysconfig.get_path("scripts", vars={"base": sys.base_prefix})):
        exe = os.path.join(d, name)
        if os.access(exe, os.X_OK):
            return exe
    return shutil.which(name)


OXIGRAPH = _beside_python("oxigraph")   # PyPI `oxigraph` (test extra): the server binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def endpoint(tmp_path: Path):
    if OXIGRAPH is None:
        pytest.fail("the `oxigraph` server binary is missing: pip install 'lwfm[test]'")
    port = _free_port()
    proc = subprocess.Popen([OXIGRAPH, "serve", "--location", str(tmp_path / "server"),
                             "--bind", f"127.0.0.1:{port}", "--union-default-graph"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"oxigraph serve did not start: {proc.stderr.read()!r}")
            time.sleep(0.1)
    base = f"http://127.0.0.1:{port}"
    yield f"{base}/query", f"{base}/update"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.slow
def test_publish_to_sparql_server_and_query_there(home: Path, endpoint) -> None:
    query_url, update_url = endpoint
    cfg = load(home)
    st = Store(cfg.store_url)
    t = part_two(st, part_one(st))
    with ProvenanceGraph(cfg, st) as g:
        g.sync()
        local = {str(q) for q in g.ox}
        sent = g.publish(query_url, update_url)
        assert sent == len(local)
        sent_again = g.publish(query_url, update_url)    # replaces, never duplicates
        assert sent_again == sent
    remote = Graph(store=SPARQLStore(query_url))
    n = remote.query("SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }")
    assert int(next(iter(n))[0]) == len(local)
    rows = list(remote.query("""PREFIX schema: <http://schema.org/>
        SELECT ?result WHERE { ?a a schema:CreateAction ; schema:result ?result ;
                                  schema:actionStatus schema:CompletedActionStatus }"""))
    assert {str(r[0]) for r in rows} == {node_iri(t.data["a_out"].id), node_iri(t.data["e_out"].id)}
    lineage = list(remote.query(f"""PREFIX prov: <http://www.w3.org/ns/prov#>
        SELECT ?x WHERE {{ <{node_iri(t.data['e_out'].id)}> prov:wasInfluencedBy+ ?x }}"""))
    assert node_iri(t.jobs["root"].id) in {str(r[0]) for r in lineage}


def test_publish_to_a_dead_endpoint_is_a_clear_error(home: Path) -> None:
    cfg = load(home)
    st = Store(cfg.store_url)
    part_one(st)
    port = _free_port()
    with ProvenanceGraph(cfg, st) as g:
        g.sync()
        with pytest.raises(LwfmError, match="publishing the provenance graph"):
            g.publish(f"http://127.0.0.1:{port}/query", f"http://127.0.0.1:{port}/update")
