"""CLI start-up benchmark: what a user feels on every command, as whole processes.

Run: ``python tests/bench/bench_cli.py [--jobs N] [--runs N]``. Human-readable lines
first, then ONE JSON object on the last line. Goals are reported, never asserted;
correctness (each command exits 0 and lists what the home holds) is asserted.

A home with N (default 2,000) ended jobs is built through the store in one transaction
(each job with a PENDING, RUNNING, COMPLETE history). Then, in rounds, one run of each:

* ``python_pass_ms``: ``python -c pass``, the floor every command stands on;
* ``cli_help_ms``: ``lwfm --help``;
* ``cli_jobs_ms``: ``lwfm jobs --limit 20`` (a table of 20 jobs);
* ``cli_status_ms``: ``lwfm status <id prefix>`` of an ended job.

Each figure is the median over the rounds, interleaved so that a shared machine's load
drifts alike for all four, after warm-up rounds that are not counted. Children run with
byte-code caching on (in a private cache directory), as an installed lwfm runs.
``cli_vs_python`` = ``cli_jobs_ms / python_pass_ms``; goal: at most 5.
``cli_vs_python_paired`` is the median of the per-round ratios (steadier when the load
changes between rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"cli_vs_python": 5.0}


def build_home(home: Path, n: int) -> str:
    """N ended jobs, written in one transaction; returns one job's id."""
    from datetime import timedelta

    from lwfm import Job, JobContext, JobDefn, JobStatus, State
    from lwfm.config import load
    from lwfm.model import utcnow
    from lwfm.store import Store
    store = Store(load(home).store_url)
    ops: list = []
    t0 = utcnow() - timedelta(hours=1)
    for i in range(n):
        t = t0 + timedelta(milliseconds=i)
        job = Job(defn=JobDefn(entry=["echo", str(i)], name=f"job-{i}"),
                  context=JobContext(site="local", native_id=str(10_000 + i)), created=t)
        ops.append(("job", (job, JobStatus(job.id, State.PENDING, time=t))))
        ops.append(("status", (JobStatus(job.id, State.RUNNING, time=t), None)))
        ops.append(("status", (JobStatus(job.id, State.COMPLETE, exit_code=0, time=t), None)))
    store.write_batch(ops)
    store.close()
    return ops[len(ops) // 2][1][0].id


def lwfm_argv() -> list[str]:
    """The ``lwfm`` script beside this interpreter (what users run), else ``-m lwfm.cli``."""
    script = Path(sys.executable).parent / "lwfm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lwfm.cli"]


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=15, help="counted rounds")
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    t_start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="lwfm-bench-cli-"))
    try:
        home = work / "home"
        env = {k: v for k, v in os.environ.items()
               if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("LWFM_")}
        env.update(LWFM_HOME=str(home), PYTHONPYCACHEPREFIX=str(work / "pycache"))
        os.environ["LWFM_HOME"] = str(home)
        t0 = time.perf_counter()
        some_id = build_home(home, args.jobs)
        print(f"home with {args.jobs} ended jobs built in {time.perf_counter() - t0:.2f} s")
        lw = lwfm_argv()
        cmds = {"python_pass_ms": [sys.executable, "-c", "pass"],
                "cli_help_ms": [*lw, "--help"],
                "cli_jobs_ms": [*lw, "jobs", "--limit", "20"],
                "cli_status_ms": [*lw, "status", some_id[:8]]}
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for rnd in range(args.warmup + args.runs):
            for key, argv in cmds.items():
                t = time.perf_counter()
                r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
                dt = (time.perf_counter() - t) * 1000
                assert r.returncode == 0, (argv, r.stderr)
                if key == "cli_jobs_ms":
                    assert r.stdout.count("COMPLETE") == 20, r.stdout
                if key == "cli_status_ms":
                    assert r.stdout.startswith(some_id) and "COMPLETE" in r.stdout, r.stdout
                if rnd >= args.warmup:
                    times[key].append(dt)
        res: dict = {k: round(statistics.median(v), 1) for k, v in times.items()}
        for k, v in times.items():
            print(f"{k:15s} median {statistics.median(v):7.1f}  min {min(v):7.1f}  "
                  f"max {max(v):7.1f}  ({len(v)} runs)")
        res["cli_vs_python"] = round(res["cli_jobs_ms"] / res["python_pass_ms"], 2)
        res["cli_vs_python_paired"] = round(statistics.median(
            j / p for j, p in zip(times["cli_jobs_ms"], times["python_pass_ms"])), 2)
        res["jobs"] = args.jobs
        res["runs"] = args.runs
        res["goals"] = {"cli_jobs_ms<=5*python_pass_ms":
                        res["cli_vs_python"] <= GOALS["cli_vs_python"]}
        res["load_avg_1m"] = round(os.getloadavg()[0], 2)
        res["cpus"] = os.cpu_count()
        res["bench_s"] = round(time.perf_counter() - t_start, 1)
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    result = main()
    sys.stdout.flush()
    print(json.dumps(result))
