"""`lwfm query|lineage|thread|reindex`, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lwfm.config import load
from lwfm.store import Store
from tests.test_provenance_helpers import part_one, part_two


def lwfm(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lwfm.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "LWFM_HOME": str(home)})


@pytest.fixture
def thread(home: Path):
    st = Store(load(home).store_url)
    t = part_two(st, part_one(st))
    st.close()
    return t


@pytest.mark.parametrize("cmd", ["query", "lineage", "thread", "reindex"])
def test_help(home: Path, cmd: str) -> None:
    r = lwfm(home, cmd, "--help")
    assert r.returncode == 0 and "Usage:" in r.stdout


def test_query_formats_and_errors(home: Path, thread, tmp_path: Path) -> None:
    q = "SELECT ?name WHERE { ?j a lwfm:Job ; schema:name ?name } ORDER BY ?name"
    r = lwfm(home, "query", q, "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["name", "a", "b", "c", "e", "f", "root"]
    rq = tmp_path / "q.rq"
    rq.write_text(q)
    r = lwfm(home, "query", "-f", str(rq), "--format", "json")
    assert len(json.loads(r.stdout)["results"]["bindings"]) == 6
    r = lwfm(home, "query", q)
    assert r.returncode == 0 and "root" in r.stdout
    r = lwfm(home, "query", "CONSTRUCT { ?j a prov:Activity } WHERE { ?j a lwfm:Job }",
             "--format", "jsonld")
    assert r.returncode == 0 and "@context" in r.stdout
    r = lwfm(home, "query", "DROP ALL")
    assert r.returncode == 1 and "read-only" in r.stderr
    r = lwfm(home, "query", "SELECT WHERE {")
    assert r.returncode == 1 and "malformed SPARQL" in r.stderr
    r = lwfm(home, "query")
    assert r.returncode != 0 and "exactly one" in r.stderr


def test_lineage_thread_reindex(home: Path, thread, tmp_path: Path) -> None:
    out = thread.data["e_out"].id
    r = lwfm(home, "lineage", out, "--json")
    assert r.returncode == 0, r.stderr
    ids = {n["id"] for n in json.loads(r.stdout)["nodes"]}
    assert thread.jobs["a"].id in ids and thread.jobs["b"].id not in ids
    r = lwfm(home, "lineage", thread.jobs["a"].id, "--down", "--depth", "1")
    assert r.returncode == 0 and thread.data["a_out"].id in r.stdout
    r = lwfm(home, "lineage", "00000000-0000-4000-8000-000000000000")
    assert r.returncode == 1 and "no job or data item" in r.stderr
    r = lwfm(home, "thread", thread.wf.id)
    assert r.returncode == 0 and "b FAILED" in r.stdout
    for fmt in ("dot", "svg", "html"):
        f = tmp_path / f"t.{fmt}"
        r = lwfm(home, "thread", thread.wf.id, "--format", fmt, "-o", str(f))
        assert r.returncode == 0, r.stderr
        assert f.stat().st_size > 100
    r = lwfm(home, "thread", "nope")
    assert r.returncode == 1 and "no workflow" in r.stderr
    r = lwfm(home, "reindex", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["quads"] > 100


def test_lineage_takes_the_short_ids_jobs_and_find_show(home: Path, thread) -> None:
    """A unique prefix of a job's or a data item's id, in any case, as status takes one; an
    unknown or ambiguous prefix is a clear error."""
    out = thread.data["e_out"]
    for ref in (out.id[:8], out.id[:8].upper()):
        r = lwfm(home, "lineage", ref, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["root"] == out.id
    r = lwfm(home, "lineage", thread.jobs["a"].id[:8].upper(), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["root"] == thread.jobs["a"].id
    r = lwfm(home, "lineage", "zzzz")
    assert r.returncode == 1 and "no job or data item with id 'zzzz'" in r.stderr
    from lwfm import DataObject
    st = Store(load(home).store_url)   # a second item whose id shares out's first 8 characters
    st.add_data(DataObject(id=out.id[:8] + "-0000-4000-8000-000000000000", url="/work/twin"))
    st.close()
    r = lwfm(home, "lineage", out.id[:8])
    assert r.returncode == 1 and "is ambiguous" in r.stderr and "Traceback" not in r.stderr
