"""Benchmark: publish a workflow of 10,000 jobs with 1 GB of data files, against bagit.

In the same run, ``bagit.make_bag`` with sha256 and sha512 bags a copy of the same
files (the peer: what any BagIt tool must at least do). Checksumming dominates, so
publish must read each file once and never hold one in memory.

Prints ONE JSON object on its last line: publish_s, bagit_s, vs_bagit (goal <= 2),
peak_rss_mb (this process), CPU seconds of each (all threads and child processes), the sizes, and the machine's load average (wall times on a
shared 2-core machine depend on it).

Both timed parts start after ``os.sync()``: the setup writes 2 GB (the files and the
peer's copy) just before, and publish, the side that writes, would otherwise be
throttled by that write-back. ``copy_s`` is the untimed copy the peer bags (shown, not
counted: bagit bags files in place, publish must copy them into its bag).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import bagit
from sqlalchemy import insert

from lwfm.config import load
from lwfm.model import JobDefn
from lwfm.publish import publish
from lwfm.store import Store, t

CREATOR = "Josiah Carberry <https://orcid.org/0000-0002-1825-0097>"


def write_file(path: Path, size: int) -> str:
    """A file of pseudo-random bytes (incompressible, like real results); its sha256."""
    h = hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            b = block[: min(left, len(block))]
            f.write(b)
            h.update(b)
            left -= len(b)
            block = block[1:] + block[:1]  # files differ block to block
    return h.hexdigest()


def build(store: Store, n_jobs: int, n_files: int, total: int, files_dir: Path) -> str:
    """A 10-ary tree of n_jobs, 3 statuses and one output each; the first n_files
    outputs are real local files of total bytes together, the rest are referenced."""
    inst, wf = store.instance_id, str(uuid.uuid4())
    t0, t1, t2 = "2026-11-21T10:00:00+00:00", "2026-11-21T10:00:01+00:00", "2026-11-21T10:00:02+00:00"
    ids = [str(uuid.uuid4()) for _ in range(n_jobs)]
    with store.write() as c:
        c.execute(insert(t.workflows).values(id=wf, name="big", description="", props={},
                                              created=t0, instance_id=inst))
    jobs, sts, data = [], [], []
    for i, jid in enumerate(ids):
        defn = JobDefn(entry=["sim", f"--step={i}"]).to_dict()
        jobs.append(dict(id=jid, name=defn["name"], defn=defn,
                         parent_id=None if i == 0 else ids[(i - 1) // 10], originator_id=ids[0],
                         workflow_id=wf, site="local", native_id=str(i), state="COMPLETE",
                         exit_code=0, created=t0, started=t1, ended=t2, triggered_by=None,
                         instance_id=inst))
        sts += [dict(job_id=jid, state=s, native_state=None, info=None, time=tm, exit_code=code)
                for s, tm, code in (("READY", t0, None), ("RUNNING", t1, None),
                                    ("COMPLETE", t2, 0))]
        if i < n_files:
            p = files_dir / f"out-{i:05d}.bin"
            size = total // n_files
            sha, url = write_file(p, size), str(p)
        else:
            size, sha, url = 1024, f"{i:064x}", f"/scratch/run/out-{i}.h5"
        data.append(dict(id=str(uuid.uuid4()), url=url, site="local", direction="put",
                         metadata={}, size=size, sha256=sha, media_type="application/octet-stream",
                         job_id=jid, workflow_id=wf, derived_from=None, time=t2, instance_id=inst))
    with store.write() as c:
        for table, rows in ((t.jobs, jobs), (t.statuses, sts), (t.data, data)):
            for lo in range(0, len(rows), 10_000):
                c.execute(insert(table), rows[lo:lo + 10_000])
    return wf


def cpu() -> float:
    """CPU seconds of this process, all threads, and of its reaped children (publish
    copies in a child process); steadier than wall time on a busy machine."""
    r, k = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + k.ru_utime + k.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--mb", type=int, default=1024, help="total MB of data files")
    ap.add_argument("--files", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as d:
        root = Path(d)
        cfg = load(root / "home")
        store = Store(cfg.store_url)
        files = root / "files"
        files.mkdir()
        wf = build(store, args.jobs, args.files, args.mb * 1024 * 1024, files)
        peer = root / "peer"
        t0 = time.perf_counter()
        shutil.copytree(files, peer)
        copy_s = time.perf_counter() - t0
        os.sync()
        t0, c0 = time.perf_counter(), cpu()
        bagit.make_bag(str(peer), checksums=["sha256", "sha512"])
        bagit_s, bagit_cpu = time.perf_counter() - t0, cpu() - c0
        os.sync()
        t0, c0 = time.perf_counter(), cpu()
        res = publish(store, root / "out", title="Benchmark", license="CC-BY-4.0",
                      creators=[CREATOR], workflow_id=wf)
        publish_s, publish_cpu = time.perf_counter() - t0, cpu() - c0
        store.close()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"jobs": args.jobs, "files": res.files, "payload_mb": round(
            res.payload_bytes / 2**20, 1), "publish_s": round(publish_s, 2),
            "bagit_s": round(bagit_s, 2), "vs_bagit": round(publish_s / bagit_s, 2),
            "goal_vs_bagit": 2, "publish_cpu_s": round(publish_cpu, 2),
            "bagit_cpu_s": round(bagit_cpu, 2), "copy_s": round(copy_s, 2), "peak_rss_mb": round(peak, 1),
            "loadavg": open("/proc/loadavg").read().split()[:3]}))


if __name__ == "__main__":
    main()
