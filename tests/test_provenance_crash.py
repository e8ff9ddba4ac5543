"""An interrupted reindex or sync never leaves a graph that is wrong and says it is current.

Real `lwfm reindex` / `lwfm query` processes on a home big enough that a reindex takes
seconds, stopped by a real kill -9 (or SIGINT) in the middle; afterwards `lwfm query`
gives the full answer, the graph matches SQL, and the next reindex works.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lwfm.config import load
from lwfm.model import Job, JobContext, JobDefn, JobStatus, State, Workflow
from lwfm.provenance import ProvenanceGraph, check_consistency
from lwfm.store import Store
from tests.test_provenance_helpers import part_one

pytestmark = pytest.mark.slow

N_JOBS = 6000   # ~180k quads: a reindex of several seconds here
COUNT = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
JOBS = "SELECT (COUNT(?j) AS ?n) WHERE { ?j a lwfm:Job }"


def lwfm_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lwfm.cli", *args]


def run(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(lwfm_cmd(*args), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LWFM_HOME": str(home)})


def count(home: Path, q: str = COUNT) -> int:
    r = run(home, "query", q, "--format", "csv")
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[1])


def add_jobs(st: Store, n: int, wf: str) -> None:
    """``n`` finished jobs through the Store API (so every one is in the journal)."""
    for b in range(0, n, 2000):
        jobs = [Job(defn=JobDefn(entry=["sim", f"--i={i}"], args=["--n", str(i)]),
                    context=JobContext(workflow_id=wf)) for i in range(b, min(n, b + 2000))]
        st.write_batch([("job", (j, JobStatus(j.id, State.READY))) for j in jobs])
        st.write_batch([("status", (JobStatus(j.id, State.COMPLETE, exit_code=0), None))
                        for j in jobs])


@pytest.fixture
def big(home: Path) -> tuple[Path, int, int]:
    """A home with a current graph; returns (home, quads, jobs) as `lwfm query` sees them."""
    cfg = load(home)
    st = Store(cfg.store_url)
    part_one(st)
    add_jobs(st, N_JOBS, st.add_workflow(Workflow(name="big")).id)
    with ProvenanceGraph(cfg, st) as g:
        g.reindex()
    st.close()
    return home, count(home), count(home, JOBS)


def state(home: Path) -> dict:
    return json.loads((home / "graph.state.json").read_text())


def assert_whole(home: Path, quads: int, jobs: int) -> None:
    """`lwfm query` gives the full answer, the graph is SQL's, no rebuild is left over."""
    assert count(home) == quads
    assert count(home, JOBS) == jobs
    cfg = load(home)
    st = Store(cfg.store_url)
    with ProvenanceGraph(cfg, st) as g:
        assert check_consistency(g) == []
        assert state(home)["watermark"] == st.last_event()
    st.close()
    assert sorted(p.name for p in home.iterdir() if p.name.startswith("graph")) == \
        ["graph", "graph.lock", "graph.state.json"]


def start_reindex(home: Path) -> subprocess.Popen:
    """A real `lwfm reindex`, returned once it is confirmed mid-rebuild."""
    p = subprocess.Popen(lwfm_cmd("reindex"), env={**os.environ, "LWFM_HOME": str(home)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rebuild = home / "graph.rebuild"
    deadline = time.monotonic() + 120
    while not (rebuild.is_dir() and any(rebuild.iterdir())):
        assert p.poll() is None, f"reindex ended before it was interrupted: {p.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)   # well into the bulk load
    assert p.poll() is None, "reindex ended before it was interrupted: make the home bigger"
    return p


def test_kill_9_mid_reindex_keeps_the_old_graph(big) -> None:
    home, quads, jobs = big
    before = state(home)
    p = start_reindex(home)
    p.kill()
    assert p.wait(30) == -signal.SIGKILL
    assert state(home) == before   # the old graph's own watermark, and the old graph
    assert_whole(home, quads, jobs)
    r = run(home, "reindex", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["quads"] == quads
    assert_whole(home, quads, jobs)


def test_ctrl_c_mid_reindex_keeps_the_old_graph(big) -> None:
    home, quads, jobs = big
    p = start_reindex(home)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, (out, err)
    assert "Traceback" not in err and "graph is as it was before" in err
    assert not (home / "graph.rebuild").exists()   # it cleaned up after itself
    assert_whole(home, quads, jobs)
    assert run(home, "reindex").returncode == 0
    assert_whole(home, quads, jobs)


# A real kill -9 at each step of the swap: the child kills itself right after the k-th
# rename/replace of the reindex (1: the new state written, 2: graph -> graph.old,
# 3: graph.rebuild -> graph, 4: the state in place).
_KILL_AT = """
import os, signal, sys
from lwfm.config import load
from lwfm.provenance import ProvenanceGraph
from lwfm.store import Store
k, n = int(sys.argv[1]), [0]
def step(real):
    def wrapped(*a, **kw):
        real(*a, **kw)
        n[0] += 1
        if n[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)
    return wrapped
cfg = load()
st = Store(cfg.store_url)
g = ProvenanceGraph(cfg, st)
os.rename, os.replace = step(os.rename), step(os.replace)
g.reindex()
"""


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_kill_9_at_each_step_of_the_swap(home: Path, k: int) -> None:
    cfg = load(home)
    st = Store(cfg.store_url)
    part_one(st)
    add_jobs(st, 200, st.add_workflow(Workflow(name="w")).id)
    st.close()
    quads, jobs = count(home), count(home, JOBS)
    p = subprocess.run([sys.executable, "-c", _KILL_AT, str(k)], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "LWFM_HOME": str(home)})
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert_whole(home, quads, jobs)
    assert run(home, "reindex").returncode == 0
    assert_whole(home, quads, jobs)


def test_kill_9_mid_incremental_sync(big) -> None:
    """A sync applies journal batches and saves its watermark after each: kill -9
    between or inside batches, and the next opener re-applies what was not saved."""
    home, quads, jobs = big
    cfg = load(home)
    st = Store(cfg.store_url)
    add_jobs(st, 4000, st.add_workflow(Workflow(name="more")).id)
    st.close()
    mark = state(home)["watermark"]
    p = subprocess.Popen(lwfm_cmd("query", JOBS), env={**os.environ, "LWFM_HOME": str(home)},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while state(home)["watermark"] == mark:   # the first batch is applied and saved
        assert p.poll() is None, f"sync ended before it was interrupted: {p.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert p.poll() is None, "sync ended before it was interrupted"
    p.kill()
    assert p.wait(30) == -signal.SIGKILL
    assert_whole(home, count(home), jobs + 4000)
    assert count(home, JOBS) == jobs + 4000


def test_a_graph_whose_reopen_failed_after_a_swap_closes_cleanly_and_says_why(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A swap closes the graph and reopens it; when the reopen fails (the files locked by
    another program, say), the error says so, and closing the graph afterwards releases
    its lock instead of failing on a store that never opened."""
    import lwfm.provenance.graph as graph_mod
    from lwfm.errors import LwfmError
    cfg = load(home)
    st = Store(cfg.store_url)
    g = ProvenanceGraph(cfg, st)
    try:
        class Refused(graph_mod.Dataset):  # type: ignore[misc,valid-type]
            def open(self, *a, **k):  # noqa: ANN002, ANN003, ANN201
                raise OSError("the graph's files are locked by another program")
        monkeypatch.setattr(graph_mod, "Dataset", Refused)
        with pytest.raises(LwfmError, match="cannot open the provenance graph.*locked"):
            g._swap()
    finally:
        g.close()   # no AttributeError: the lock is released
        st.close()
    monkeypatch.undo()
    with ProvenanceGraph(load(home), Store(cfg.store_url)) as g2:  # the lock was let go
        assert check_consistency(g2) == []
