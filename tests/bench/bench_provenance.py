"""Benchmark the provenance graph: ingest a synthetic 200k-job thread, then query it.

    python tests/bench/bench_provenance.py [--jobs 200000]

Prints progress, then ONE JSON object on the last line:
  ingest_triples_per_s      SQL rows -> Oxigraph (``reindex``), quads / s
  vs_oxigraph_bulk          pyoxigraph ``bulk_load`` of the same quads as an N-Quads file,
                            time ratio (ours / theirs as speed; 1.0 = as fast)
  lineage_2000_ms           ``lineage`` of a data item 2000 steps (edges) deep, median
  failed_by_site_window_ms  FAILED jobs of one site in a time window grouped by workflow
  peak_rss_mb               peak resident memory of this process
  record_ms_per_job         incremental ``sync`` cost per job for jobs written through
                            the Store API (a status history and one output each)
  foreign_entities          a foreign Workflow Run Crate of this many entities imported
                            first (``--foreign-entities``, default 100,000; 0: none), so
                            the goals are measured with another engine's triples in the
                            store and the graph, as issue 11 asks
Goals: lineage_2000_ms <= 50, failed_by_site_window_ms <= 300.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyoxigraph as ox
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lwfm.config import load  # noqa: E402
from lwfm.model import (DataObject, Job, JobContext, JobDefn, JobStatus, State,  # noqa: E402
                        iso)
from lwfm.provenance import ProvenanceGraph  # noqa: E402
from lwfm.store import Store  # noqa: E402
from lwfm.store import schema as t  # noqa: E402
from lwfm.bundles import import_bundle  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bundles import foreign_crate  # noqa: E402

SITES = ["local", "venv", "hpc", "cloud"]
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def synthesize(st: Store, n_jobs: int, per_wf: int = 1000) -> dict[str, int]:
    """Bulk-insert a thread: workflows of ``per_wf`` jobs under a root, 7% FAILED,
    3% CANCELLED, one terminal status each, an output for every 10th job, and a
    2000-step lineage chain (667 jobs: put -> get (derived) -> used -> put ...)."""
    inst = st.instance_id
    tmpl = Store.job_row(Job(defn=JobDefn(entry=["python", "sim.py"], name="sim"),
                             context=JobContext(), instance_id=inst))
    jobs, stats, data, wfs = [], [], [], []
    counts = {"jobs": 0, "statuses": 0, "data": 0}
    wf = root = None

    def flush() -> None:   # insert in slices: keeps this process's peak memory small
        with st.write() as c:
            for table, rows, key in ((t.workflows, wfs, None), (t.jobs, jobs, "jobs"),
                                     (t.statuses, stats, "statuses"), (t.data, data, "data")):
                if rows:
                    c.execute(insert(table), rows)
                    if key:
                        counts[key] += len(rows)
                    rows.clear()

    for i in range(n_jobs):
        if i and i % 20_000 == 0:
            flush()
        if i % per_wf == 0:
            wf = str(uuid.uuid4())
            wfs.append({"id": wf, "name": f"wf-{i // per_wf}", "description": "", "props": {},
                        "created": iso(BASE + timedelta(seconds=i)), "instance_id": inst})
        jid = str(uuid.uuid4())
        r = i % 100
        state, code = ("FAILED", 1) if r < 7 else ("CANCELLED", -15) if r < 10 else ("COMPLETE", 0)
        t0 = BASE + timedelta(seconds=i)
        ended = iso(t0 + timedelta(seconds=2))
        parent = None if i % per_wf == 0 else root
        jobs.append(dict(tmpl, id=jid, name=f"step-{i % per_wf}", parent_id=parent,
                         originator_id=root if parent else jid, workflow_id=wf,
                         site=SITES[i % len(SITES)], native_id=str(100000 + i), state=state,
                         exit_code=code, created=iso(t0), started=iso(t0 + timedelta(seconds=1)),
                         ended=ended))
        if parent is None:
            root = jid
        stats.append({"job_id": jid, "state": state, "native_state": None, "info": None,
                      "time": ended, "exit_code": code})
        if i % 10 == 0:
            data.append(DataObject(url=f"/data/{wf}/{i}.h5", job_id=jid, workflow_id=wf,
                                   size=i, sha256=f"{i:064x}", instance_id=inst,
                                   time=t0 + timedelta(seconds=2)).to_dict())
    prev = DataObject(url="/chain/0", instance_id=inst)
    chain = [prev.to_dict()]
    for k in range(667):   # 3 lineage edges per job: 667 * 3 = 2001 >= 2000 steps
        j = dict(tmpl, id=str(uuid.uuid4()), name=f"chain-{k}", parent_id=None,
                 originator_id=None, workflow_id=None, site="local", state="COMPLETE")
        j["originator_id"] = j["id"]
        jobs.append(j)
        got = DataObject(url=prev.url, direction="get", job_id=j["id"], derived_from=prev.id,
                         instance_id=inst)
        prev = DataObject(url=f"/chain/{k + 1}", job_id=j["id"], instance_id=inst)
        chain += [got.to_dict(), prev.to_dict()]
    data += chain
    flush()
    return {**counts, "chain_end": prev.id}


BULK = """
import sys, time, pyoxigraph as ox
s = ox.Store(sys.argv[2])
t0 = time.perf_counter()
s.bulk_load(path=sys.argv[1], format=ox.RdfFormat.N_QUADS)
dt = time.perf_counter() - t0
assert len(s) == int(sys.argv[3])
hwm = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM")][0]
print(dt, int(hwm) / 1024)
"""


def oxigraph_bulk(nq: Path, dest: Path, n_quads: int) -> tuple[float, float]:
    """pyoxigraph's own bulk_load of the N-Quads file, timed inside a child process
    (so its memory is not charged to this process's peak_rss_mb); (seconds, peak MB)."""
    r = subprocess.run([sys.executable, "-c", BULK, str(nq), str(dest), str(n_quads)],
                       capture_output=True, text=True, check=True)
    secs, mb = r.stdout.split()
    return float(secs), float(mb)


def median_ms(fn, runs: int = 5) -> float:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(out), 2)


def record_cost(st: Store, g: ProvenanceGraph, n: int) -> float:
    """Jobs written the way the Manager writes them, then one sync; ms per job."""
    for _ in range(n):
        j = Job(defn=JobDefn(entry=["true"]), context=JobContext(site="local"))
        st.add_job(j, JobStatus(j.id, State.PENDING))
        st.record_status(JobStatus(j.id, State.RUNNING))
        st.add_data(DataObject(url=f"/out/{j.id}.txt", job_id=j.id, size=1, sha256="0" * 64))
        st.record_status(JobStatus(j.id, State.COMPLETE, exit_code=0))
    t0 = time.perf_counter()
    g.sync()
    return round((time.perf_counter() - t0) * 1000 / n, 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--record-jobs", type=int, default=2000)
    ap.add_argument("--foreign-entities", type=int, default=100_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lwfm-bench-prov-"))
    try:
        cfg = load(tmp / "home")
        st = Store(cfg.store_url)
        t0 = time.perf_counter()
        info = synthesize(st, args.jobs)
        log(f"synthesized {info['jobs']} jobs, {info['data']} data in {time.perf_counter() - t0:.1f}s")
        foreign_quads = 0
        if args.foreign_entities:
            t0 = time.perf_counter()
            crate = foreign_crate(tmp / "foreign.zip", args.foreign_entities)
            rep = import_bundle(st, cfg, crate)
            assert rep.foreign, rep
            log(f"imported a foreign crate of {args.foreign_entities} entities in "
                f"{time.perf_counter() - t0:.1f}s")
        g = ProvenanceGraph(cfg, st)
        t0, c0 = time.perf_counter(), time.process_time()
        g.reindex(optimize=False)
        ingest_s, ingest_cpu = time.perf_counter() - t0, time.process_time() - c0
        n_quads = len(g.ox)
        if args.foreign_entities:
            foreign_quads = int(next(iter(g.query(
                "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } "
                "FILTER(STRSTARTS(STR(?g), 'urn:lwfm:graph:crate:')) }")))[0])
            assert foreign_quads > args.foreign_entities, foreign_quads
        log(f"ingest: {n_quads} quads ({foreign_quads} of the foreign crate) in {ingest_s:.1f}s")
        nq = tmp / "same.nq"
        g.ox.dump(output=str(nq), format=ox.RdfFormat.N_QUADS)
        bulk_s, bulk_mb = oxigraph_bulk(nq, tmp / "bulk", n_quads)
        log(f"pyoxigraph bulk_load of the same quads: {bulk_s:.1f}s")
        t0 = time.perf_counter()
        g.ox.optimize()
        optimize_s = time.perf_counter() - t0

        lin = g.lineage(info["chain_end"])
        depth = max(n.depth for n in lin.nodes)
        assert depth >= 2000, depth
        lineage_ms = median_ms(lambda: g.lineage(info["chain_end"]))
        lo = iso(BASE + timedelta(seconds=args.jobs // 10))    # a window over half the thread
        hi = iso(BASE + timedelta(seconds=args.jobs * 6 // 10))
        q = f"""SELECT ?wf (COUNT(?j) AS ?failed) WHERE {{
              ?j lwfm:state "FAILED" ; schema:agent ?site ; schema:endTime ?end ;
                 lwfm:workflow ?wf .
              ?site schema:name "hpc" .
              FILTER(?end >= "{lo}"^^xsd:dateTime && ?end < "{hi}"^^xsd:dateTime)
            }} GROUP BY ?wf ORDER BY ?wf"""
        groups = list(g.query(q))
        assert groups and all(int(r[1]) > 0 for r in groups)
        failed_ms = median_ms(lambda: list(g.query(q)))
        record_ms = record_cost(st, g, args.record_jobs)
        assert g.check() == [] if args.jobs <= 20_000 else True
        g.close()
        out = {
            "jobs": info["jobs"], "quads": n_quads,
            "foreign_entities": args.foreign_entities, "foreign_quads": foreign_quads,
            "ingest_s": round(ingest_s, 2), "ingest_cpu_s": round(ingest_cpu, 2),
            "ingest_triples_per_s": round(n_quads / ingest_s),
            "oxigraph_bulk_s": round(bulk_s, 2),
            "oxigraph_bulk_triples_per_s": round(n_quads / bulk_s),
            "vs_oxigraph_bulk": round(bulk_s / ingest_s, 3),
            "oxigraph_bulk_peak_rss_mb": round(bulk_mb, 1),
            "optimize_s": round(optimize_s, 2),
            "lineage_2000_ms": lineage_ms, "lineage_depth": depth,
            "lineage_nodes": len(lin.nodes),
            "failed_by_site_window_ms": failed_ms, "failed_groups": len(groups),
            "record_ms_per_job": record_ms,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
