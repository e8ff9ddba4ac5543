"""A read-only query makes no network call: SERVICE is refused before Oxigraph sees it.

A real HTTP listener on loopback records every request; the queries that name it must
be refused with a clear error and leave it untouched.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest

from lwfm.config import load
from lwfm.errors import QueryError
from lwfm.provenance import ProvenanceGraph
from lwfm.store import Store
from tests.test_provenance_cli import lwfm
from tests.test_provenance_helpers import part_one


class Listener:
    """An HTTP server on 127.0.0.1 (port 0) that answers 200 and records every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                seen.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "application/sparql-results+json")
                body = b'{"head":{"vars":[]},"results":{"bindings":[{}]}}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

            def log_message(self, *a: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sparql"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def listener() -> Iterator[Listener]:
    ls = Listener()
    yield ls
    ls.close()


@pytest.fixture
def graph(home: Path) -> Iterator[ProvenanceGraph]:
    cfg = load(home)
    st = Store(cfg.store_url)
    part_one(st)
    g = ProvenanceGraph(cfg, st)
    g.sync()
    yield g
    g.close()
    st.close()


def refused(url: str) -> list[str]:
    return [
        f"SELECT * WHERE {{ SERVICE <{url}> {{ ?s ?p ?o }} }}",
        f"select * where {{ service silent <{url}> {{ ?s ?p ?o }} }}",
        f"SELECT ?j WHERE {{ ?j a lwfm:Job OPTIONAL {{ SERVICE <{url}> {{ ?j ?p ?o }} }} }}",
        f"SELECT * WHERE {{ {{ SELECT ?s WHERE {{ SeRvIcE <{url}> {{ ?s ?p ?o }} }} }} }}",
        f"ASK {{ ?s ?p ?o FILTER EXISTS {{ SERVICE <{url}> {{ ?s ?p ?o }} }} }}",
        f"CONSTRUCT {{ ?s ?p ?o }} WHERE {{ SERVICE <{url}> {{ ?s ?p ?o }} }}",
        f"SELECT * WHERE {{ VALUES ?e {{ <{url}> }} SERVICE ?e {{ ?s ?p ?o }} }}",
        f"SELECT * WHERE {{ \\u0053ERVICE <{url}> {{ ?s ?p ?o }} }}",
    ]


def test_service_is_refused_and_the_listener_hears_nothing(graph, listener) -> None:
    # sanity: Oxigraph really would call the listener (so the refusal is what stops it)
    list(graph.ox.query(f"SELECT * WHERE {{ SERVICE <{listener.url}> {{ ?s ?p ?o }} }}"))
    assert listener.requests, "the listener must be reachable for this test to mean anything"
    listener.requests.clear()
    for q in refused(listener.url):
        with pytest.raises(QueryError, match="SERVICE .*refused.*network"):
            graph.query(q)
    assert listener.requests == []


def test_the_word_service_in_a_literal_or_comment_is_fine(graph, listener) -> None:
    q = (f'SELECT ?n ("SERVICE <{listener.url}> {{ ?s ?p ?o }}" AS ?x) WHERE {{\n'
         f"  ?j a lwfm:Job ; schema:name ?n  # SERVICE <{listener.url}> {{ ?s ?p ?o }}\n"
         f"}} ORDER BY ?n")
    names, rows = graph.query(q, fmt="table")
    assert [r[0] for r in rows] == ["a", "b", "c", "root"]
    assert rows[0][1].startswith("SERVICE <http")
    # FROM / FROM NAMED pick graphs of the local store: Oxigraph fetches nothing
    graph.query(f"SELECT * FROM <{listener.url}> FROM NAMED <{listener.url}> WHERE {{ ?s ?p ?o }}")
    assert listener.requests == []


def test_cli_query_with_service_exits_1_without_a_request(home: Path, listener) -> None:
    st = Store(load(home).store_url)
    part_one(st)
    st.close()
    for q in refused(listener.url)[:4]:
        r = lwfm(home, "query", q)
        assert r.returncode == 1, (q, r.stdout, r.stderr)
        assert "SERVICE" in r.stderr and "refused" in r.stderr and "Traceback" not in r.stderr
    for upd in (f"LOAD <{listener.url}>", f"LOAD SILENT <{listener.url}> INTO GRAPH <urn:g>"):
        r = lwfm(home, "query", upd)
        assert r.returncode == 1 and "read-only" in r.stderr
    assert listener.requests == []
    r = lwfm(home, "query", "SELECT ?n WHERE { ?j a lwfm:Job ; schema:name ?n } # SERVICE",
             "--format", "csv")
    assert r.returncode == 0 and sorted(r.stdout.split()) == ["a", "b", "c", "n", "root"]
