"""Core benchmark: job throughput on the local site against psij-python and raw Popen,
the trigger hop, and the cost of recording provenance.

Run: ``python tests/bench/bench_core.py [--jobs N] [--hops N]``. Human-readable lines
first, then ONE JSON object on the last line. Goals are reported, never asserted;
correctness (every job COMPLETE in the store) is asserted. lwfm, Popen and psij run
interleaved, one of each per repetition, and ``vs_*`` are medians of per-repetition
ratios: a shared machine's load changes from one minute to the next. Popen and psij
each run in an interpreter of their own (see :func:`in_child`).

* ``jobs_per_s``: N ``/bin/true`` jobs submitted one by one through ``Manager.submit``
  to ``local``, then all waited to COMPLETE (median of 3 runs, each on a fresh home).
* ``jobs_per_s_futures``: the same run through futures: ``m.submit`` (a JobFuture each),
  then ``lwfm.wait_all(futures)``; ``vs_plain`` is the median of its per-repetition ratio
  to ``jobs_per_s`` (each repetition runs both, on fresh homes, one right after the
  other; which goes first alternates).
  The plain run uses ``Manager.submit_job`` (the Job-returning submit) and waits by id.
* ``psij_jobs_per_s``: psij-python's ``local`` executor, submit all then wait all.
* ``popen_jobs_per_s``: ``subprocess.Popen``, start all then wait all.
* ``trigger_hop_ms``: A (``/bin/true``) COMPLETE -> B RUNNING, where B is fired by
  ``m.on(A.id, B)``; both times are the recorded statuses (``m.history``). See
  :func:`bench_hops` for the two ways it is measured.
* ``record_ms_per_job``: after a run, the time to sync the journal of N jobs into the
  provenance graph (``ProvenanceGraph.sync``), per job.
* ``jobs_per_s_with_provenance``: the same N-job run with a thread syncing the graph
  CONCURRENTLY (``m.graph`` every 50 ms) while jobs run; the clock stops when all
  jobs are COMPLETE. ``..._until_graph_synced`` stops it when the graph holds them all.
* ``fs_create_ms_runs``: the time to create an empty file in the bench directory, just
  before each lwfm run (lwfm writes a log per job, the peers none). The bench first
  waits (``fs_settle_s``, at most 90 s) until creating files has stayed quick for 6 s: on
  a disk mounted with ``discard``, an earlier clean-up slows every create ~30x for up to
  a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import lwfm
from lwfm import JobDefn, Manager, State

if TYPE_CHECKING:
    from lwfm.provenance import ProvenanceGraph

TRUE = "/bin/true"
GOALS = {"jobs_per_s": 500, "vs_psij": 6, "vs_popen": 0.5, "trigger_hop_ms": 20, "vs_plain": 0.95}


def fresh_home(root: Path, name: str) -> Path:
    home = root / name
    home.mkdir()
    os.environ["LWFM_HOME"] = str(home)
    return home


def fs_create_ms(root: Path, files: int = 200) -> float:
    """Mean time to create an empty file under ``root``, as a local job's log is made.

    Files are left in place: deleting them is what slows creation down. On a disk
    mounted with ``discard`` (these VMs), for some seconds after many files are deleted
    each create waits on the journal: 0.6 ms instead of 0.02. lwfm makes one log per job
    on the submit path and the peers make none, so this figure is printed with the runs.
    """
    d = Path(tempfile.mkdtemp(prefix="probe-", dir=root))
    t0 = time.perf_counter()
    for i in range(files):
        os.close(os.open(d / str(i), os.O_WRONLY | os.O_CREAT, 0o644))
    return 1000 * (time.perf_counter() - t0) / files


def settle(root: Path, limit_s: float = 90.0, quiet_s: float = 6.0) -> float:
    """Wait (at most ``limit_s``) until creating a file has stayed quick for ``quiet_s``,
    longer than ext4's 5 s journal commit (a deletion slows creates only from the next
    commit on), e.g. after an earlier run's clean-up; returns the seconds waited."""
    t0 = time.perf_counter()
    quick_since = None
    while time.perf_counter() - t0 < limit_s:
        now = time.perf_counter()
        if fs_create_ms(root) > 0.1:
            quick_since = None
        elif quick_since is None:
            quick_since = now
        elif now - quick_since >= quiet_s:
            break
        time.sleep(0.5)
    return time.perf_counter() - t0


def completed(m: Manager) -> int:
    m.flush()
    return len(m.store.find_jobs(state=State.COMPLETE.value))


def lwfm_run(m: Manager, n: int, futures: bool = False) -> float:
    """Submit n jobs one by one, wait for all; returns seconds. ``futures``: hold a
    JobFuture per job and wait on them (lwfm.wait_all), else ids (Manager.wait_all)."""
    defn = JobDefn(entry=[TRUE], name="true")
    t0 = time.perf_counter()
    if futures:
        fs = [m.submit(defn) for _ in range(n)]
        jobs = lwfm.wait_all(fs, timeout=600)
    else:
        ids = [m.submit_job(defn).id for _ in range(n)]
        jobs = m.wait_all(ids, timeout=600)
    dt = time.perf_counter() - t0
    assert all(j.state is State.COMPLETE for j in jobs), "a job did not COMPLETE"
    return dt


def bench_lwfm(root: Path, n: int, rep: int) -> tuple[float, dict[str, float]]:
    """One throughput run on a fresh home; the first run also measures the provenance sync."""
    fs_ms = fs_create_ms(root)
    print(f"file creation before lwfm run {rep + 1}: {fs_ms:.3f} ms per file")
    with Manager(fresh_home(root, f"lwfm-{rep}")) as m:
        dt = lwfm_run(m, n)
        count = completed(m)
        assert count == n, f"{count} of {n} jobs COMPLETE in the store"
        print(f"lwfm run {rep + 1}: {n} jobs in {dt:.2f} s = {n / dt:.0f} jobs/s; "
              f"COMPLETE in the store: {count}")
        return n / dt, {"fs_create_ms": fs_ms, **(provenance_after(m, n) if rep == 0 else {})}


def bench_lwfm_futures(root: Path, n: int, rep: int) -> float:
    """The throughput run of :func:`bench_lwfm`, through futures, on a fresh home."""
    with Manager(fresh_home(root, f"lwfm-futures-{rep}")) as m:
        dt = lwfm_run(m, n, futures=True)
        count = completed(m)
        assert count == n, f"{count} of {n} jobs COMPLETE in the store"
        print(f"lwfm futures run {rep + 1}: {n} jobs in {dt:.2f} s = {n / dt:.0f} jobs/s")
        return n / dt


def provenance_after(m: Manager, n: int) -> dict[str, float]:
    try:
        from lwfm.provenance import ProvenanceGraph
    except ImportError:
        return {}
    t0 = time.perf_counter()
    g = ProvenanceGraph(m.config, m.store)
    t1 = time.perf_counter()
    events = g.sync()
    t2 = time.perf_counter()
    jobs = graph_jobs(g)
    g.close()
    assert jobs == n, f"the graph holds {jobs} jobs, expected {n}"
    print(f"provenance: graph open {1000 * (t1 - t0):.0f} ms, sync of {events} journal events "
          f"({n} jobs) {1000 * (t2 - t1):.0f} ms = {1000 * (t2 - t1) / n:.2f} ms/job; "
          f"jobs in the graph: {jobs}")
    return {"graph_open_ms": 1000 * (t1 - t0), "sync_s": t2 - t1, "events": events,
            "record_ms_per_job": 1000 * (t2 - t1) / n}


def graph_jobs(g: ProvenanceGraph) -> int:
    rows = g.select("SELECT (COUNT(DISTINCT ?j) AS ?n) WHERE { ?j a lwfm:Job }")
    return int(rows[0][0].value)


def bench_lwfm_with_provenance(root: Path, n: int) -> dict[str, float] | None:
    """The same run while another thread keeps the provenance graph synced."""
    try:
        import lwfm.provenance  # noqa: F401
    except ImportError:
        return None
    with Manager(fresh_home(root, "lwfm-prov")) as m:
        _ = m.graph  # open it before the clock starts (opening is a one-off cost)
        stop = threading.Event()
        syncs = [0]

        def syncer() -> None:
            while not stop.is_set():
                _ = m.graph  # the property syncs the journal into the graph
                syncs[0] += 1
                stop.wait(0.05)

        th = threading.Thread(target=syncer, daemon=True)
        th.start()
        t0 = time.perf_counter()
        dt = lwfm_run(m, n)
        stop.set()
        th.join()
        graph = m.graph  # catch up on what the last pass missed
        dt_synced = time.perf_counter() - t0
        jobs = graph_jobs(graph)
        assert completed(m) == n and jobs == n, f"{jobs} jobs in the graph, expected {n}"
    return {"dt": dt, "syncs": syncs[0], "jobs_in_graph": jobs, "dt_synced": dt_synced}


def in_child(peer: str, n: int, rep: int) -> float:
    """Run a peer in its own interpreter (after its own untimed warm-up); its rate.

    Each contender gets a process of its own: psij's local executor installs a SIGCHLD
    handler and keeps a reaper thread for the life of the process, which would tax
    every later child process of a shared interpreter (lwfm's jobs included).
    """
    r = subprocess.run([sys.executable, __file__, "--peer", peer, "--jobs", str(n), "--rep", str(rep)],
                       stdout=subprocess.PIPE, text=True, check=True)
    lines = r.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    return float(lines[-1])


def run_peer(peer: str, n: int, rep: int) -> None:
    """``--peer``: warm up, then time ``n`` jobs; the rate alone on the last line."""
    fn = {"psij": bench_psij, "popen": bench_popen}[peer]
    with contextlib.redirect_stdout(io.StringIO()):
        fn(200, -1)
    print(fn(n, rep))


def bench_psij(n: int, rep: int) -> float:
    import psij
    ex = psij.JobExecutor.get_instance("local")
    jobs = [psij.Job(psij.JobSpec(executable=TRUE)) for _ in range(n)]
    t0 = time.perf_counter()
    for j in jobs:
        ex.submit(j)
    for j in jobs:
        j.wait()
    dt = time.perf_counter() - t0
    done = sum(j.status.state == psij.JobState.COMPLETED for j in jobs)
    assert done == n, f"psij: {done} of {n} COMPLETED"
    print(f"psij run {rep + 1}: {n} jobs in {dt:.2f} s = {n / dt:.0f} jobs/s; COMPLETED: {done}")
    return n / dt


def bench_popen(n: int, rep: int) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen([TRUE]) for _ in range(n)]
    codes = [p.wait() for p in procs]
    dt = time.perf_counter() - t0
    assert codes == [0] * n
    print(f"popen run {rep + 1}: {n} processes in {dt:.2f} s = {n / dt:.0f} /s")
    return n / dt


def hop_ms(m: Manager, a_id: str, b_id: str) -> float:
    """B's RUNNING time minus A's COMPLETE time, as recorded in their histories."""
    a_done = next(s.time for s in m.history(a_id) if s.state is State.COMPLETE)
    b_run = next(s.time for s in m.history(b_id) if s.state is State.RUNNING)
    return 1000 * (b_run - a_done).total_seconds()


def bench_hops(root: Path, hops: int) -> dict[str, object]:
    """A COMPLETE -> B RUNNING, two ways.

    * gated (the headline ``trigger_hop_ms``): the trigger on A is pending before A
      runs: ``t_a = m.on_data(gate, A)``, ``t_b = m.on(t_a.job_id, B)``, then a put of
      gate data starts A. The hop is the event path alone (reaper -> recorder -> trigger).
    * submit-then-on: ``a = m.submit(A)``, ``m.on(a.id, B)``. ``/bin/true`` usually ends
      before ``m.on`` returns, so the trigger fires as it is added and the figure
      includes the caller's own ``m.on`` latency, not only lwfm's.
    """
    a_defn, b_defn = JobDefn(entry=[TRUE], name="A"), JobDefn(entry=[TRUE], name="B")
    gated: list[float] = []
    direct: list[float] = []
    on_add = 0
    with Manager(fresh_home(root, "lwfm-hops")) as m:
        gate_file = m.home / "gate.txt"
        gate_file.write_text("go\n")
        for i in range(hops):
            t_a = m.on_data({"bench": "hop", "n": str(i)}, a_defn)
            t_b = m.on(t_a.job_id, b_defn)
            m.notate(gate_file, metadata={"bench": "hop", "n": str(i)})
            b = m.wait(t_b.job_id, timeout=60)
            assert b.state is State.COMPLETE and b.context.parent_id == t_a.job_id
            gated.append(hop_ms(m, t_a.job_id, b.id))
        for _ in range(hops):
            a = m.submit(a_defn)
            tr = m.on(a.id, b_defn)
            on_add += tr.status.value == "fired"  # A had already ended when the trigger was added
            b = m.wait(tr.job_id, timeout=60)
            assert b.state is State.COMPLETE and b.context.parent_id == a.id
            direct.append(hop_ms(m, a.id, b.id))
        fired = len(m.store.triggers(status="fired"))
        assert fired == 3 * hops, f"{fired} triggers fired, expected {3 * hops}"
    return {"gated": gated, "direct": direct, "fired_on_add": on_add}


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def main() -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--hops", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peer", choices=("psij", "popen"), help=argparse.SUPPRESS)
    ap.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        run_peer(args.peer, args.jobs, args.rep)
        sys.exit(0)
    for var in ("LWFM_JOB_ID", "LWFM_WORKFLOW_ID", "LWFM_PARENT_ID", "LWFM_STORE_URL"):
        os.environ.pop(var, None)
    n = args.jobs
    root = Path(tempfile.mkdtemp(prefix="lwfm-bench-core-"))
    t_start = time.perf_counter()
    lwfm_rates: list[float] = []
    future_rates: list[float] = []
    popen_rates: list[float] = []
    psij_rates: list[float] = []
    prov: dict[str, float] = {}
    fs_ms: list[float] = []
    try:
        waited = settle(root)
        print(f"waited {waited:.1f} s for file creation to be quick")
        # Interleaved, so each repetition compares the three under the same machine load
        # (these machines are shared and noisy); ratios are medians of per-repetition ratios.
        # An untimed warm-up of each (imports, compiled statements, first threads).
        with Manager(fresh_home(root, "warm-up")) as m:
            lwfm_run(m, 200)
        for rep in range(args.reps):
            # plain and futures alternate which goes first: the second run of a pair
            # inherits the first one's leftovers (page cache, a closing Manager's writes)
            if rep % 2:
                future_rates.append(bench_lwfm_futures(root, n, rep))
            rate, p = bench_lwfm(root, n, rep)
            lwfm_rates.append(rate)
            fs_ms.append(p.pop("fs_create_ms"))
            prov = prov or p
            if not rep % 2:
                future_rates.append(bench_lwfm_futures(root, n, rep))
            popen_rates.append(in_child("popen", n, rep))
            psij_rates.append(in_child("psij", n, rep))
        with_prov = bench_lwfm_with_provenance(root, n)
        hop = bench_hops(root, args.hops)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    jobs_per_s = statistics.median(lwfm_rates)
    psij_per_s = statistics.median(psij_rates)
    popen_per_s = statistics.median(popen_rates)
    vs_psij = statistics.median(a / b for a, b in zip(lwfm_rates, psij_rates))
    vs_plain = statistics.median(f / p for f, p in zip(future_rates, lwfm_rates))
    vs_popen = statistics.median(a / b for a, b in zip(lwfm_rates, popen_rates))
    hops, direct = hop["gated"], hop["direct"]
    hop_median = statistics.median(hops)
    print(f"trigger hop A COMPLETE -> B RUNNING (trigger pending before A runs): median "
          f"{hop_median:.2f} ms, p90 {pct(hops, 90):.2f} ms over {len(hops)} hops")
    print(f"trigger hop, submit A then m.on(A): median {statistics.median(direct):.2f} ms, p90 "
          f"{pct(direct, 90):.2f} ms ({hop['fired_on_add']} of {len(direct)} fired as the trigger "
          f"was added: A had already ended)")
    res: dict[str, object] = {
        "jobs": n,
        "jobs_per_s": round(jobs_per_s, 1),
        "jobs_per_s_runs": [round(r, 1) for r in lwfm_rates],
        "jobs_per_s_futures": round(statistics.median(future_rates), 1),
        "jobs_per_s_futures_runs": [round(r, 1) for r in future_rates],
        "vs_plain": round(vs_plain, 3),
        "psij_jobs_per_s": round(psij_per_s, 1),
        "psij_runs": len(psij_rates),
        "popen_jobs_per_s": round(popen_per_s, 1),
        "vs_psij": round(vs_psij, 2),
        "vs_popen": round(vs_popen, 3),
        "vs_popen_runs": [round(a / b, 3) for a, b in zip(lwfm_rates, popen_rates)],
        "fs_create_ms_runs": [round(x, 3) for x in fs_ms],
        "fs_settle_s": round(waited, 1),
        "trigger_hop_ms": round(hop_median, 2),
        "trigger_hop_p90_ms": round(pct(hops, 90), 2),
        "trigger_hops": len(hops),
        "trigger_hop_submit_then_on_ms": round(statistics.median(direct), 2),
        "trigger_hop_submit_then_on_p90_ms": round(pct(direct, 90), 2),
    }
    if prov:
        res["record_ms_per_job"] = round(prov["record_ms_per_job"], 3)
        res["graph_sync_events"] = prov["events"]
    if with_prov:
        res["jobs_per_s_with_provenance"] = round(n / with_prov["dt"], 1)
        res["jobs_per_s_with_provenance_until_graph_synced"] = round(n / with_prov["dt_synced"], 1)
        res["provenance_mode"] = "graph synced concurrently every 50 ms by a second thread"
        print(f"with provenance on (concurrent sync, {with_prov['syncs']} passes): "
              f"{n / with_prov['dt']:.0f} jobs/s; jobs in the graph: {with_prov['jobs_in_graph']}")
    res["goals"] = {
        "jobs_per_s>=500": jobs_per_s >= GOALS["jobs_per_s"],
        "vs_psij>=6": vs_psij >= GOALS["vs_psij"],
        "vs_popen>=0.5": vs_popen >= GOALS["vs_popen"],
        "trigger_hop_ms<=20": hop_median <= GOALS["trigger_hop_ms"],
        "vs_plain>=0.95": vs_plain >= GOALS["vs_plain"],
    }
    if with_prov:
        res["goals"]["jobs_per_s_with_provenance>=500"] = n / with_prov["dt"] >= GOALS["jobs_per_s"]
    res["load_avg_1m"] = round(os.getloadavg()[0], 2)
    res["cpus"] = os.cpu_count()
    res["bench_s"] = round(time.perf_counter() - t_start, 1)
    return res


if __name__ == "__main__":
    result = main()
    sys.stdout.flush()
    print(json.dumps(result))
