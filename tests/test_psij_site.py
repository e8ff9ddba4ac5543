"""The psij site on a real single-node Slurm (tests/_slurm.py): argv, shell and Python
jobs, exit codes, logs, resources and attributes as Slurm sees them, refusals, Spin,
cancel from another process and scancel from outside. Nothing mocks psij or Slurm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lwfm import Manager
from lwfm.errors import InvalidInput, NotSupported
from lwfm.model import JobDefn, State

from ._psij_util import hpc, no_repeats, slurm_state, wait_for  # noqa: F401 (hpc: a fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_argv_shell_and_python_jobs_with_exit_codes_and_logs(hpc: Path, tmp_path: Path):
    (tmp_path / "slurmfuncs.py").write_text("def double(x):\n    return int(x) * 2\n")
    with Manager() as m:
        argv = m.submit(JobDefn(["/bin/sh", "-c", "echo out; echo err >&2; exit 3"], site="hpc"))
        shell = m.submit(JobDefn("sleep 2; echo id=$LWFM_JOB_ID; pwd; echo $GREETING", kind="shell",
                                 site="hpc", cwd=str(tmp_path), env={"GREETING": "hej"}))
        py = m.submit(JobDefn("slurmfuncs:double", kind="python", args=["21"], site="hpc",
                              cwd=str(tmp_path)))
        jobs = {j.id: m.wait(j.id, 90) for j in (argv, shell, py)}
        a, s, p = jobs[argv.id], jobs[shell.id], jobs[py.id]
        assert (a.state, a.exit_code) == (State.FAILED, 3)
        assert "out\n" in m.log(a.id) and "err\n" in m.log(a.id)
        assert (s.state, s.exit_code) == (State.COMPLETE, 0)
        assert m.log(s.id).splitlines() == [f"id={s.id}", str(tmp_path), "hej"]
        assert (p.state, p.exit_code) == (State.COMPLETE, 0)
        assert m.log(p.id).strip() == "42"
        for j in jobs.values():
            assert j.context.native_id and j.context.native_id.isdigit()  # Slurm's job id
            assert no_repeats(m.history(j.id)), m.history(j.id)
        assert "exit 3 in partition debug" in (m.history(a.id)[-1].info or "")
        running = [h.info for j in jobs for h in m.history(j) if h.state is State.RUNNING]
        assert any(i and i.startswith("running in partition debug on ") for i in running), running


def test_resources_and_attributes_reach_slurm(hpc: Path, slurm):
    res = {"memory_mb": 64, "walltime_s": 150, "queue": "debug", "cpu_cores_per_process": 2,
           "custom_attributes": {"slurm.comment": "from-lwfm"}}
    with Manager() as m:
        job = m.submit(JobDefn(["sleep", "30"], site="hpc", resources=res))
        plain = m.submit(JobDefn(["sleep", "30"], site="hpc"))
        wait_for(lambda: m.status(job.id).state is State.RUNNING, 60, "the job to run")
        shown = slurm.run("scontrol", "show", "job", job.context.native_id)
        shown_plain = slurm.run("scontrol", "show", "job", plain.context.native_id)
        m.cancel(job.id)
        m.cancel(plain.id)
    assert "TimeLimit=00:03:00" in shown  # 150 s, rounded up to Slurm's minutes
    # no walltime_s: the partition's limit (unlimited here), not a default of lwfm's or psij's
    assert "TimeLimit=UNLIMITED" in shown_plain, shown_plain
    assert "MinMemoryNode=64M" in shown and "Partition=debug" in shown
    assert "CPUs/Task=2" in shown and "Comment=from-lwfm" in shown
    assert f"JobName=lwfm-{job.id}" in shown


def test_unknown_resource_key_and_bad_value_are_refused_before_recording(hpc: Path):
    with Manager() as m:
        with pytest.raises(NotSupported, match="cannot honour resource 'gpus'"):
            m.submit(JobDefn(["true"], site="hpc", resources={"gpus": 1}))
        with pytest.raises(InvalidInput, match="'nodes'.*positive whole number"):
            m.submit(JobDefn(["true"], site="hpc", resources={"nodes": 0}))
        with pytest.raises(InvalidInput, match="custom_attributes"):
            m.submit(JobDefn(["true"], site="hpc", resources={"custom_attributes": {"x": 1}}))
        with pytest.raises(NotSupported, match="no compute type 'gpu-big'"):
            m.submit(JobDefn(["true"], site="hpc", compute_type="gpu-big"))
        m.flush()
        assert m.store.find_jobs() == []


def test_spin_lists_partitions_and_cannot_provision(hpc: Path):
    with Manager() as m:
        spin = m.site("hpc").spin
        assert spin.compute_types() == ["debug"]
        with pytest.raises(NotSupported, match="cannot provision"):
            spin.provision("debug")
        job = m.submit(JobDefn(["true"], site="hpc", compute_type="debug"))
        assert m.wait(job.id, 60).state is State.COMPLETE


def test_cancel_from_another_process(hpc: Path):
    with Manager() as m:
        job = m.submit(JobDefn(["sleep", "120"], site="hpc"))
        wait_for(lambda: m.status(job.id).state is State.RUNNING, 60, "the job to run")
        out = subprocess.run([sys.executable, "-m", "lwfm.cli", "cancel", job.id],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        done = m.wait(job.id, 60)
        assert done.state is State.CANCELLED
        wait_for(lambda: slurm_state(job.context.native_id) in ("CANCELLED", ""), 30,
                 "Slurm to cancel it")
        ends = [h for h in m.history(job.id) if h.state.terminal]
        assert [h.state for h in ends] == [State.CANCELLED]  # once, by whoever asked
        assert ends[0].info == "cancelled by user"


def test_scancel_from_outside_is_cancelled_with_a_clear_info(hpc: Path, slurm):
    with Manager() as m:
        job = m.submit(JobDefn(["sleep", "120"], site="hpc"))
        wait_for(lambda: m.status(job.id).state is State.RUNNING, 60, "the job to run")
        slurm.run("scancel", job.context.native_id)
        done = m.wait(job.id, 60)
        assert done.state is State.CANCELLED
        last = m.history(job.id)[-1]
        assert "cancelled outside lwfm" in (last.info or "")
        assert no_repeats(m.history(job.id))


def test_a_queued_job_shows_the_schedulers_reason(hpc: Path):
    """Two jobs that each want every CPU of the node: the second waits, and says why."""
    cores = {"cpu_cores_per_process": 64}
    with Manager() as m:
        first = m.submit(JobDefn(["sleep", "6"], site="hpc", resources=cores))
        wait_for(lambda: m.status(first.id).state is State.RUNNING, 60, "the first to run")
        second = m.submit(JobDefn(["true"], site="hpc", resources=cores))
        assert m.wait(second.id, 90).state is State.COMPLETE
        infos = [h.info or "" for h in m.history(second.id) if h.state is State.PENDING]
        assert any(i.startswith("waiting in the queue: ") and
                   ("Resources" in i or "Priority" in i) for i in infos), infos
        assert no_repeats(m.history(second.id))


def test_cli_runs_a_job_on_slurm_and_shows_its_log(hpc: Path):
    run = subprocess.run([sys.executable, "-m", "lwfm.cli", "run", "--site", "hpc", "--wait",
                          "--json", "--", "sh", "-c", "echo on-slurm"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    job_id = json.loads(run.stdout)["id"]
    log = subprocess.run([sys.executable, "-m", "lwfm.cli", "log", job_id],
                         capture_output=True, text=True, timeout=60)
    assert log.returncode == 0 and "on-slurm" in log.stdout, log.stderr
    with Manager() as m:
        assert m.status(job_id).state is State.COMPLETE


def test_job_env_reaches_the_job_but_not_the_batch_script(hpc: Path):
    """The env goes through sbatch's own environment: no value is written to a file."""
    with Manager() as m:
        job = m.submit(JobDefn("echo token=$API_TOKEN", kind="shell", site="hpc",
                               env={"API_TOKEN": "s3cr3t-value"}))
        assert m.wait(job.id, 60).state is State.COMPLETE
        assert m.log(job.id).strip() == "token=s3cr3t-value"  # the job's own output
    scripts = list((hpc / "psij" / "hpc" / "slurm").glob("*.job"))
    assert scripts and all("s3cr3t-value" not in p.read_text() for p in scripts)
    assert any(f"lwfm-{job.id}" in p.read_text() for p in scripts)
