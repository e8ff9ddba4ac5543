"""How psij-site jobs end on a real Slurm (tests/_slurm.py), each with the right state and
a clear info, never COMPLETE by default: over the time limit, out of memory, purged from
the queue before lwfm looked, and tracked to their end by the next process after the
tracking one was killed -9, with the triggers chained on them firing exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lwfm import Manager
from lwfm.model import JobDefn, State

from ._psij_util import hpc, in_queue, no_repeats, wait_for  # noqa: F401 (hpc: a fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_out_of_memory_is_failed_as_out_of_memory(hpc: Path):
    grab = ("import time; b = bytearray(300 * 1024 * 1024); "
            "b[::4096] = b'x' * len(b[::4096]); time.sleep(30)")
    with Manager() as m:
        job = m.submit(JobDefn([sys.executable, "-c", grab], site="hpc",
                               resources={"memory_mb": 50}))
        done = m.wait(job.id, 90)
        last = m.history(job.id)[-1]
    assert done.state is State.FAILED
    assert "out of memory" in (last.info or "") and last.native_state == "OUT_OF_MEMORY"


def test_over_time_limit_is_failed_with_timeout(hpc: Path):
    """Slurm keeps time limits in whole minutes and checks them every 30 s: ~60-90 s."""
    with Manager() as m:
        job = m.submit(JobDefn(["sleep", "600"], site="hpc", resources={"walltime_s": 1}))
        done = m.wait(job.id, 150)
        hist = m.history(job.id)
    assert done.state is State.FAILED
    assert hist[-1].native_state == "TIMEOUT" and "over its time limit" in (hist[-1].info or "")
    assert no_repeats(hist)


def test_node_failure_is_failed_with_node_fail(hpc: Path, slurm):
    with Manager() as m:
        job = m.submit(JobDefn(["sleep", "120"], site="hpc"))
        wait_for(lambda: m.status(job.id).state is State.RUNNING, 60, "the job to run")
        done = slurm.node_down_and_back(lambda: m.wait(job.id, 60))
        hist = m.history(job.id)
    assert done.state is State.FAILED  # type: ignore[attr-defined]
    assert hist[-1].native_state == "NODE_FAIL" and "its node failed" in (hist[-1].info or "")


def test_a_controller_outage_fails_no_job(hpc: Path, slurm):
    """psij alone fails every job after two failed polls; lwfm keeps their states until
    squeue answers again, and records the true end."""
    with Manager() as m:
        job = m.submit(JobDefn(["sleep", "8"], site="hpc"))
        wait_for(lambda: m.status(job.id).state is State.RUNNING, 60, "the job to run")
        slurm.controller_down_for(3)
        done = m.wait(job.id, 90)
        assert (done.state, done.exit_code) == (State.COMPLETE, 0), m.history(job.id)


def _submit_and_leave(home: Path, defns: str) -> list[str]:
    """In another process: submit ``defns`` (Python JobDefn expressions), print the job ids
    and native ids, and exit, so no lwfm process tracks them."""
    code = textwrap.dedent(f"""
        from lwfm import Manager, JobDefn
        with Manager() as m:
            for d in [{defns}]:
                j = m.submit(d)
                print(j.id, j.context.native_id, flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "LWFM_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_jobs_purged_before_lwfm_looked_end_as_they_did(hpc: Path, slurm):
    ids = _submit_and_leave(hpc, 'JobDefn(["sh", "-c", "echo bye; exit 5"], site="hpc"), '
                                 'JobDefn(["sleep", "300"], site="hpc"), '
                                 'JobDefn(["true"], site="hpc")')
    (failed, failed_n, killed, killed_n, ok, ok_n) = ids
    wait_for(lambda: slurm.run("squeue", "-h", "-j", killed_n, "-o", "%T").strip() == "RUNNING",
             60, "the sleep to run")
    slurm.run("scancel", killed_n)  # from outside, while no lwfm process tracks it
    for n in (failed_n, killed_n, ok_n):  # MinJobAge, then slurmctld's purge pass
        wait_for(lambda: not in_queue(n), 150, f"Slurm to purge job {n}", step=1.0)
    with Manager() as m:
        f, k, o = (m.status(i) for i in (failed, killed, ok))
        assert (f.state, f.exit_code) == (State.FAILED, 5)
        assert k.state is State.CANCELLED
        assert "cancelled outside lwfm" in (m.history(killed)[-1].info or "")
        assert (o.state, o.exit_code) == (State.COMPLETE, 0)


def test_a_purged_job_without_an_exit_code_is_failed_not_complete(hpc: Path, slurm):
    """The job's files are gone too (a scratch wipe): nothing says it succeeded."""
    (job, native) = _submit_and_leave(hpc, 'JobDefn(["true"], site="hpc")')
    wait_for(lambda: not in_queue(native), 150, f"Slurm to purge job {native}", step=1.0)
    for f in (hpc / "psij" / "hpc" / "slurm").glob(f"{native}.*"):
        f.unlink()
    with Manager() as m:
        st = m.status(job)
        assert st.state is State.FAILED
        assert "left the scheduler's queue before lwfm saw how it ended" in \
            (m.history(job)[-1].info or "")


def test_reattach_after_kill_9_and_a_trigger_chain_across_slurm_and_local(hpc: Path,
                                                                         tmp_path: Path):
    """local -> Slurm -> local: the tracking process is killed -9 while the Slurm job runs;
    the next process attaches by its Slurm id, records its end once, and the trigger on it
    fires once."""
    mark = tmp_path / "fired"
    code = textwrap.dedent(f"""
        import time
        from lwfm import Manager, JobDefn, State
        with Manager() as m:
            first = m.submit(JobDefn(["true"], site="local"))
            mid = m.on(first.id, JobDefn(["sleep", "8"], site="hpc"))
            last = m.on(mid.job_id, JobDefn(["sh", "-c", "echo fired >> {mark}"], site="local"))
            print(first.id, mid.job_id, last.job_id, flush=True)
            while m.status(mid.job_id).state is not State.RUNNING:
                time.sleep(0.1)
            print("running", flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "LWFM_HOME": str(hpc)})
    try:
        assert proc.stdout is not None
        first, mid, last = proc.stdout.readline().split()
        assert proc.stdout.readline().strip() == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    with Manager() as m:
        assert m.status(mid).state is State.RUNNING  # still going: nobody recorded an end
        done = m.wait(mid, 90)
        assert done.state is State.COMPLETE and done.context.native_id.isdigit()
        assert m.wait(last, 60).state is State.COMPLETE
        hist = m.history(mid)
        assert [h.state for h in hist if h.state.terminal] == [State.COMPLETE]
        assert no_repeats(hist)
        assert m.status(first).state is State.COMPLETE
    assert mark.read_text() == "fired\n"  # exactly once
