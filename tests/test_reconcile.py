"""Listings reconcile on read: a job that ended while no lwfm process watched it is not
shown as running by `lwfm jobs`, nor by SPARQL over the thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from lwfm import JobDefn, Manager, State

CLI = [sys.executable, "-m", "lwfm.cli"]


def _cli(home: Path, *args: str) -> str:
    r = subprocess.run([*CLI, *args], env={**os.environ, "LWFM_HOME": str(home)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _ended_unwatched(home: Path) -> str:
    """`lwfm run` starts a detached job and exits; the job ends while nobody watches."""
    job_id = _cli(home, "run", "--name", "unwatched", "--", "sleep", "1").strip()
    # The job's end is known once its exit file is written: as soon as the orphaned job is
    # reaped (here PID 1 reaps orphans about 2 s late). Nothing has recorded it since.
    deadline = time.monotonic() + 30
    while not list(home.glob(f"logs/*/{job_id}.exit")):
        assert time.monotonic() < deadline, "the job's end was never written"
        time.sleep(0.05)
    return job_id


def test_jobs_state_running_does_not_list_a_finished_job(home: Path) -> None:
    job_id = _ended_unwatched(home)
    assert json.loads(_cli(home, "jobs", "--state", "running", "--json")) == []
    (job,) = json.loads(_cli(home, "jobs", "--json"))
    assert (job["id"], job["state"], job["exit_code"]) == (job_id, "COMPLETE", 0)


def test_sparql_does_not_say_running_for_a_finished_job(home: Path) -> None:
    _ended_unwatched(home)
    out = _cli(home, "query", "--format", "json",
               'SELECT ?s WHERE { ?j schema:name "unwatched" ; lwfm:state ?s }')
    assert "COMPLETE" in out and "RUNNING" not in out, out


def test_reconcile_leaves_jobs_this_process_supervises_alone(home: Path) -> None:
    with Manager(home) as m:
        j = m.submit(JobDefn(entry=["sleep", "0.5"]))
        assert m.reconcile() == 0  # its reaper reports it; nothing to ask
        assert m.wait(j.id, timeout=30).state is State.COMPLETE


def test_a_damaged_exit_file_does_not_break_the_listing(home: Path) -> None:
    """A job's exit file that is not a number (a disk fault, a hand edit) is that job's
    problem, said once: the listing still works, and shows the job as last recorded."""
    job_id = _ended_unwatched(home)
    (exit_file,) = home.glob(f"logs/*/{job_id}.exit")
    exit_file.write_text("garbage\n")
    r = subprocess.run([*CLI, "jobs", "--json"], env={**os.environ, "LWFM_HOME": str(home)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert [j["state"] for j in json.loads(r.stdout)] == ["RUNNING"]
    st = subprocess.run([*CLI, "status", job_id], env={**os.environ, "LWFM_HOME": str(home)},
                        capture_output=True, text=True, timeout=60)  # the job itself says why
    assert st.returncode == 1 and "Traceback" not in st.stderr, st.stderr
    assert "exit file" in st.stderr and "damaged" in st.stderr, st.stderr
