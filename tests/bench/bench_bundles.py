"""Benchmark: export / import / no-op re-import of a 100k-job thread, and the import of a
foreign RO-Crate of 100k entities.

Prints ONE JSON object on its last line: export_s, import_s (into an empty
store), reimport_s (the same file again: recognised by its sha256, adds nothing),
reimport_full_s (the same thread re-exported, i.e. another file: full merge, adds
nothing), foreign_import_s (a Workflow Run Crate as another engine writes it, every triple
kept and its actions and files mapped to rows, into an empty store), peak_rss_mb (this
process) and peak_rss_child_mb (the largest child: export workers, import reader),
per-phase CPU seconds and the machine's load average (the wall times on a shared 2-core
machine depend on it).
Goals: export_s <= 10, import_s <= 15, reimport_s <= 5, foreign_import_s <= 10,
peak_rss_mb <= 1000. ``--only foreign`` runs the foreign import alone (the other figures
are then null); ``--foreign-entities N`` sizes its crate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

from lwfm.bundles import export_bundle, import_bundle
from sqlalchemy import func, insert, select

from lwfm.config import load
from lwfm.model import JobDefn
from lwfm.store import Store, t


def build_thread(store: Store, n_jobs: int, batch: int = 10_000) -> str:
    """A workflow of n_jobs (a 10-ary tree under one root), 3 statuses and 1 output each.

    Rows go in by bulk inserts in batches, so building costs little time or memory.
    """
    inst = store.instance_id
    wf = str(uuid.uuid4())
    t0, t1, t2 = ("2026-11-21T10:00:00+00:00", "2026-11-21T10:00:01+00:00",
                  "2026-11-21T10:00:02+00:00")
    ids = [str(uuid.uuid4()) for _ in range(n_jobs)]
    with store.write() as c:
        c.execute(insert(t.workflows).values(id=wf, name="big", description="100k jobs", props={},
                                              created=t0, instance_id=inst))
    for lo in range(0, n_jobs, batch):
        jobs, sts, data, meta = [], [], [], []
        for i in range(lo, min(lo + batch, n_jobs)):
            jid = ids[i]
            defn = JobDefn(entry=["sim", f"--step={i}"], site="local").to_dict()
            jobs.append(dict(id=jid, name=defn["name"], defn=defn,
                             parent_id=None if i == 0 else ids[(i - 1) // 10], originator_id=ids[0],
                             workflow_id=wf, site="local", native_id=str(10_000 + i),
                             state="COMPLETE", exit_code=0, created=t0, started=t1, ended=t2,
                             triggered_by=None, instance_id=inst))
            sts += [dict(job_id=jid, state="READY", native_state=None, info=None, time=t0, exit_code=None),
                    dict(job_id=jid, state="RUNNING", native_state="R", info=None, time=t1, exit_code=None),
                    dict(job_id=jid, state="COMPLETE", native_state="done", info=None, time=t2, exit_code=0)]
            did = str(uuid.uuid4())
            data.append(dict(id=did, url=f"/scratch/run/out-{i}.h5", site="local", direction="put",
                             metadata={"step": i, "kind": "field"}, size=1024 + i, sha256=f"{i:064x}",
                             media_type="application/x-hdf5", job_id=jid, workflow_id=wf,
                             derived_from=None, time=t2, instance_id=inst))
            meta += [dict(data_id=did, key="step", value=str(i)), dict(data_id=did, key="kind", value="field")]
        with store.write() as c:
            for table, rows in ((t.jobs, jobs), (t.statuses, sts), (t.data, data), (t.data_meta, meta)):
                c.execute(insert(table), rows)
    return wf


def foreign_crate(path: Path, n_entities: int) -> Path:
    """A Workflow Run Crate (RO-Crate 1.3 + Workflow Run terms) of ``n_entities``: a chain
    of tool runs, each using the file the previous one made, as another engine writes it."""
    head = [{"@id": "ro-crate-metadata.json", "@type": "CreativeWork", "about": {"@id": "./"},
             "conformsTo": {"@id": "https://w3id.org/ro/crate/1.3"}},
            {"@id": "./", "@type": "Dataset", "name": "a big foreign run",
             "datePublished": "2026-11-21T10:00:00+01:00", "mainEntity": {"@id": "main.nf"},
             "conformsTo": {"@id": "https://w3id.org/ro/wfrun/workflow/0.5"}},
            {"@id": "main.nf", "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow"],
             "name": "pipeline", "programmingLanguage": {"@id": "#nextflow"}},
            {"@id": "#nextflow", "@type": "ComputerLanguage", "name": "Nextflow", "version": "24.04"}]
    graph = list(head)
    i = 0
    graph.append({"@id": "data/in-0.txt", "@type": "File", "name": "in-0.txt", "contentSize": 10})
    while len(graph) + 2 <= n_entities:
        graph.append({"@id": f"#task-{i}", "@type": "CreateAction", "name": f"STEP ({i})",
                      "instrument": {"@id": "main.nf"},
                      "startTime": f"2026-11-21T10:{i // 60 % 60:02d}:{i % 60:02d}+01:00",
                      "endTime": f"2026-11-21T11:{i // 60 % 60:02d}:{i % 60:02d}+01:00",
                      "actionStatus": {"@id": "http://schema.org/CompletedActionStatus"},
                      "object": {"@id": f"data/in-{i}.txt"}, "result": {"@id": f"data/in-{i + 1}.txt"},
                      "containerImage": "docker.io/library/alpine:3.20"})
        graph.append({"@id": f"data/in-{i + 1}.txt", "@type": "File", "name": f"in-{i + 1}.txt",
                      "contentSize": 1000 + i, "encodingFormat": "text/plain",
                      "sha256": f"{i:064x}"})
        i += 1
    doc = {"@context": ["https://w3id.org/ro/crate/1.3/context",
                        "https://w3id.org/ro/terms/workflow-run"], "@graph": graph}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ro-crate-metadata.json", json.dumps(doc))
    return path


def count(store: Store) -> dict[str, int]:
    with store.read() as c:
        return {n: c.execute(select(func.count()).select_from(tb)).scalar_one()
                for n, tb in (("jobs", t.jobs), ("statuses", t.statuses), ("data", t.data),
                              ("events", t.events))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--foreign-entities", type=int, default=100_000)
    ap.add_argument("--only", choices=("foreign",), default=None,
                    help="run only the foreign-crate import (the other figures are then null)")
    args = ap.parse_args()
    if args.only == "foreign":
        return foreign_only(args.foreign_entities)
    with tempfile.TemporaryDirectory() as tmp:
        remote_cfg, local_cfg = load(Path(tmp) / "remote"), load(Path(tmp) / "local")
        remote, local = Store(remote_cfg.store_url), Store(local_cfg.store_url)
        t0 = time.perf_counter()
        wf = build_thread(remote, args.jobs)
        build_s = time.perf_counter() - t0
        out = Path(tmp) / "thread.zip"
        timed: dict[str, float] = {}

        def run(name, fn):
            t0, c0 = time.perf_counter(), time.process_time()
            out_ = fn()
            timed[name + "_s"] = round(time.perf_counter() - t0, 2)
            timed[name + "_cpu_s"] = round(time.process_time() - c0, 2)
            return out_
        res = run("export", lambda: export_bundle(remote, remote_cfg, out, workflow_id=wf))
        rep = run("import", lambda: import_bundle(local, local_cfg, out))
        before = count(local)
        rep2 = run("reimport", lambda: import_bundle(local, local_cfg, out))
        assert count(local) == before and not rep2.changed, "re-import added rows"
        assert rep.added["job"] == args.jobs, rep.added
        # The same thread exported again is another file: this re-import runs the full merge.
        out2 = Path(tmp) / "thread-again.zip"
        export_bundle(remote, remote_cfg, out2, workflow_id=wf)
        rep3 = run("reimport_full", lambda: import_bundle(local, local_cfg, out2))
        assert count(local) == before and not rep3.changed and rep3.already_imported is None
        crate = foreign_crate(Path(tmp) / "foreign.zip", args.foreign_entities)
        fresh_cfg = load(Path(tmp) / "fresh")
        fresh = Store(fresh_cfg.store_url)
        rep4 = run("foreign_import", lambda: import_bundle(fresh, fresh_cfg, crate))
        assert rep4.foreign and rep4.added["job"] == (args.foreign_entities - 5) // 2, rep4.added
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        # Export workers and the import's reader run as child processes: the largest of them.
        peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"built {args.jobs} jobs in {build_s:.1f}s; bundle {res.bytes / 1e6:.1f} MB; "
              f"local store now {before}", file=sys.stderr)
        print(json.dumps({"jobs": args.jobs, **{k: timed[k] for k in (
            "export_s", "import_s", "reimport_s", "reimport_full_s")},
            "foreign_entities": args.foreign_entities, "foreign_import_s": timed["foreign_import_s"],
            "foreign_triples": rep4.added["triples"],
            "peak_rss_mb": round(peak, 1), "peak_rss_child_mb": round(peak_child, 1), "bundle_mb": round(res.bytes / 1e6, 1),
            "cpu_s": {k: v for k, v in timed.items() if k.endswith("_cpu_s")},
            "load_avg_1m": round(os.getloadavg()[0], 1),
            "goals": {"export_s": 10, "import_s": 15, "reimport_s": 5, "foreign_import_s": 10,
                      "peak_rss_mb": 1000}}))


def foreign_only(n_entities: int) -> None:
    """Only the foreign-crate phase: the same crate, store and report keys as a full run."""
    with tempfile.TemporaryDirectory() as tmp:
        crate = foreign_crate(Path(tmp) / "foreign.zip", n_entities)
        fresh_cfg = load(Path(tmp) / "fresh")
        fresh = Store(fresh_cfg.store_url)
        t0, c0 = time.perf_counter(), time.process_time()
        rep = import_bundle(fresh, fresh_cfg, crate)
        wall, cpu = round(time.perf_counter() - t0, 2), round(time.process_time() - c0, 2)
        assert rep.foreign and rep.added["job"] == (n_entities - 5) // 2, rep.added
        print(json.dumps({
            "jobs": None, "export_s": None, "import_s": None, "reimport_s": None,
            "reimport_full_s": None, "foreign_entities": n_entities, "foreign_import_s": wall,
            "foreign_triples": rep.added["triples"],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_rss_child_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "bundle_mb": None, "cpu_s": {"foreign_import_cpu_s": cpu},
            "load_avg_1m": round(os.getloadavg()[0], 1),
            "goals": {"foreign_import_s": 10, "peak_rss_mb": 1000}}))


if __name__ == "__main__":
    main()
