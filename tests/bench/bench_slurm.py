"""Slurm benchmark: N ``sleep 1`` jobs through lwfm's psij site and through psij-python
with its default Slurm executor configuration, in the same run, on a real single-node
Slurm (started as tests/_slurm.py does, if none of its clusters runs; needs root).

Run: ``python tests/bench/bench_slurm.py [--jobs N]`` from the repository root.
Human-readable lines first, then ONE JSON object on the last line. Goals are reported,
never asserted; correctness (every job COMPLETE) is asserted.

* ``submit_to_running_s``: median, from the ``submit`` call to the RUNNING status lwfm
  recorded for the job.
* ``end_to_recorded_s``: median, from the job's own end (the time its command printed
  after ``sleep 1``) to the final status lwfm recorded.
* ``vs_psij_default``: median submit->final under psij's default configuration over
  lwfm's (psij's poll thread asks the queue every 30 s, after a 2 s initial delay).
* ``queue_queries_per_poll``: squeue calls per poll of lwfm's queue thread while jobs
  were in flight (``max_jobs_per_query``: the most jobs one call asked about).
* ``slurm_run_s_lwfm`` / ``slurm_run_s_psij``: median time each job was RUNNING in
  Slurm (a watcher samples squeue every 0.25 s): what the batch script itself costs
  around the command. psij's script runs the command under its launcher (a second bash
  that sources a library and timestamps each log line with ``date`` through a process
  substitution) after building a node file with two ``scontrol`` calls; lwfm's runs the
  command directly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psij  # noqa: E402
from psij.executors.batch.slurm import SlurmExecutorConfig  # noqa: E402

from lwfm import JobDefn, Manager, State  # noqa: E402
from tests import _slurm  # noqa: E402

GOALS = {"submit_to_running_s": 1.5, "end_to_recorded_s": 2.0, "vs_psij_default": 5.0,
         "queue_queries_per_poll": 1.0}
JOB = "sleep 1; date +%s.%N"


class Watcher(threading.Thread):
    """Samples squeue: when each job was first seen RUNNING and first seen past it."""

    def __init__(self, env: dict[str, str]):
        super().__init__(daemon=True)
        self.env, self.stop = env, threading.Event()
        self.running: dict[str, float] = {}
        self.ended: dict[str, float] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            out = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i %T"],
                                 capture_output=True, text=True, env=self.env).stdout
            now = time.time()
            for line in out.splitlines():
                jid, _, state = line.partition(" ")
                if state == "RUNNING":
                    self.running.setdefault(jid, now)
                elif jid in self.running and state not in ("PENDING", "CONFIGURING"):
                    self.ended.setdefault(jid, now)
            self.stop.wait(0.25)

    def run_s(self, ids: list[str]) -> float | None:
        spans = [self.ended[i] - self.running[i] for i in ids if i in self.ended and i in self.running]
        return round(statistics.median(spans), 3) if spans else None


def bench_lwfm(root: Path, n: int) -> dict:
    home = root / "lwfm-home"
    home.mkdir()
    (home / "lwfm.toml").write_text('[sites.hpc]\ndriver = "psij"\nexecutor = "slurm"\n')
    os.environ["LWFM_HOME"] = str(home)
    with Manager(home) as m:
        starts, jobs = {}, []
        for _ in range(n):
            t0 = time.time()
            job = m.submit(JobDefn(JOB, kind="shell", site="hpc"))
            starts[job.id] = t0
            jobs.append(job)
        done = m.wait_all([j.id for j in jobs], timeout=300)
        assert all(j.state is State.COMPLETE for j in done), [j.state for j in done]
        to_run, to_rec, total = [], [], []
        for j in jobs:
            hist = m.history(j.id)
            run = next(h.time.timestamp() for h in hist if h.state is State.RUNNING)
            end = hist[-1].time.timestamp()
            own_end = float(m.log(j.id).split()[-1])
            to_run.append(run - starts[j.id])
            to_rec.append(end - own_end)
            total.append(end - starts[j.id])
        ex = m.site("hpc").run.executor  # type: ignore[attr-defined]
        queries, polls, widest = ex.queries, ex.polls, ex.widest
    return {"submit_to_running_s": statistics.median(to_run),
            "end_to_recorded_s": statistics.median(to_rec),
            "submit_to_final_s": statistics.median(total),
            "queue_queries_per_poll": queries / max(polls, 1), "max_jobs_per_query": widest,
            "native_ids": [j.context.native_id for j in jobs]}


def bench_psij_default(root: Path, n: int) -> dict:
    ex = psij.JobExecutor.get_instance("slurm", config=SlurmExecutorConfig(
        work_directory=root / "psij-work"))
    lock = threading.Lock()
    active: dict[str, float] = {}
    final: dict[str, float] = {}

    def cb(job: psij.Job, st: psij.JobStatus) -> None:
        with lock:
            if st.state is psij.JobState.ACTIVE:
                active.setdefault(job.id, time.time())
            elif st.state.final:
                final.setdefault(job.id, time.time())

    ex.set_job_status_callback(cb)
    starts, jobs = {}, []
    for _ in range(n):
        job = psij.Job(psij.JobSpec(executable="/bin/sleep", arguments=["1"]))
        starts[job.id] = time.time()
        ex.submit(job)
        jobs.append(job)
    for job in jobs:
        st = job.wait(timeout=None)
        assert st is not None and st.state is psij.JobState.COMPLETED, st
    to_active = [active[j.id] - starts[j.id] for j in jobs if j.id in active]
    return {"submit_to_active_s": statistics.median(to_active) if to_active else None,
            "seen_active": len(to_active),
            "submit_to_final_s": statistics.median(final[j.id] - starts[j.id] for j in jobs),
            "native_ids": [str(j.native_id) for j in jobs]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=50)
    args = ap.parse_args()
    with _slurm.running_cluster() as cluster:
        cluster.idle()
        watcher = Watcher(cluster.env())
        watcher.start()
        with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
            lw = bench_lwfm(Path(tmp), args.jobs)
            cluster.idle()
            ps = bench_psij_default(Path(tmp), args.jobs)
        watcher.stop.set()
        watcher.join()
    out = {
        "jobs": args.jobs,
        "submit_to_running_s": round(lw["submit_to_running_s"], 3),
        "end_to_recorded_s": round(lw["end_to_recorded_s"], 3),
        "lwfm_submit_to_final_s": round(lw["submit_to_final_s"], 3),
        "psij_default_submit_to_final_s": round(ps["submit_to_final_s"], 3),
        "psij_default_submit_to_active_s": ps["submit_to_active_s"] and round(ps["submit_to_active_s"], 3),
        "psij_default_seen_active": ps["seen_active"],
        "vs_psij_default": round(ps["submit_to_final_s"] / lw["submit_to_final_s"], 2),
        "queue_queries_per_poll": round(lw["queue_queries_per_poll"], 3),
        "max_jobs_per_query": lw["max_jobs_per_query"],
        "slurm_run_s_lwfm": watcher.run_s(lw["native_ids"]),
        "slurm_run_s_psij": watcher.run_s(ps["native_ids"]),
        "goals": GOALS,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
    for k, v in out.items():
        print(f"{k}: {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
