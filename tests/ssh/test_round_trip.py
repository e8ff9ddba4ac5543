"""The remote-lab round trip: home job -> lab workflow -> pull -> one SPARQL query."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lwfm import Manager
from lwfm.model import State

from ._toml import write_sites

pytestmark = [pytest.mark.slow, pytest.mark.ssh]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "remote_lab"
LWFM = str(Path(sys.executable).with_name("lwfm"))


@pytest.fixture
def lab_home(live_sshd, home):
    write_sites(home, {"lab": live_sshd.site_config(reconnect_timeout=30)})
    return home


def _round_trip():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import round_trip
        return round_trip.main("lab")
    finally:
        sys.path.remove(str(EXAMPLE))


def test_round_trip_spans_both_instances(lab_home, live_sshd):
    res = _round_trip()
    assert "lab workflow done" in res["lab_log"]
    with Manager(lab_home) as m:
        local_instance = m.instance_id
        root = m.status(res["root_job"])
        assert root.state is State.COMPLETE and root.instance_id == local_instance
        kids = [j for j in m.store.find_jobs(workflow_id=res["workflow"])
                if j.context.parent_id == root.id] if hasattr(m.store, "find_jobs") else []
    with Manager(live_sshd.remote_home) as lab:
        lab_instance = lab.instance_id
        remote_root = lab.store.get_job(res["root_job"])          # same id at the lab
        lab_kids = {j.defn.name: j for j in lab.store.find_jobs(workflow_id=res["workflow"])
                    if j.context.parent_id == res["root_job"]}
        lab_root_states = [s.state for s in lab.history(res["root_job"])]
    # the lab recorded the end of the job it adopted, the same end home saw
    assert remote_root.state is State.COMPLETE and remote_root.exit_code == 0, lab_root_states
    assert lab_instance != local_instance and remote_root.context.workflow_id == res["workflow"]
    assert set(lab_kids) == {"simulate", "analyse"}
    assert sum(res["first_pull_added"].values()) >= 3          # 2 jobs + data at least
    assert res["second_pull_changed"] is False                  # re-pull: nothing new
    if kids:
        assert {k.defn.name for k in kids} == {"simulate", "analyse"}
    rows = res["lineage"]
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["name"] == "simulate" and row["child"] == f"urn:uuid:{lab_kids['simulate'].id}"
    assert row["home_graph"] == f"urn:lwfm:graph:{local_instance}"
    assert row["lab_graph"] == f"urn:lwfm:graph:{lab_instance}"
    assert row["url"].endswith(".txt") and "result-" in row["url"]


def _cli(env, *args, timeout=600):
    return subprocess.run([LWFM, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_example_script(lab_home):
    env = {**os.environ, "LWFM_HOME": str(lab_home)}
    out = subprocess.run([sys.executable, str(EXAMPLE / "round_trip.py")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["lineage"] and res["second_pull_changed"] is False
    assert "home job" in out.stdout and "-> lab job" in out.stdout


def test_by_hand_with_the_cli(lab_home, live_sshd):
    """The README's manual steps: put, run --wait, log, pull, pull again."""
    env = {**os.environ, "LWFM_HOME": str(lab_home)}
    work = live_sshd.remote_home / "work"
    put = _cli(env, "put", str(EXAMPLE / "lab_flow.py"), "flows/cli_flow.py", "--site", "lab")
    assert put.returncode == 0, put.stderr
    run = _cli(env, "run", "--site", "lab", "--wait", "--json", "--", sys.executable,
               str(work / "flows" / "cli_flow.py"), str(work / "cli-out"))
    assert run.returncode == 0, run.stdout + run.stderr
    job = json.loads(run.stdout)
    job_id = job["id"]
    assert job["state"] == "COMPLETE" and job["site"] == "lab"
    log = _cli(env, "log", job_id)
    assert "lab workflow done" in log.stdout
    first = _cli(env, "pull", "lab", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    rep = json.loads(first.stdout)
    assert rep["site"] == "lab" and rep["import"]["changed"] is True
    again = _cli(env, "pull", "lab")
    assert again.returncode == 0 and "nothing new" in again.stdout, again.stdout + again.stderr
    data = _cli(env, "pull", "lab", "--with-data", "--json")
    assert data.returncode == 0, data.stderr[-3000:]
    assert json.loads(data.stdout)["import"]["payload_files"] >= 1
    fetched = [p for p in lab_home.rglob("result-*.txt") if p.read_text() == "simulated at the lab\n"]
    assert fetched, "the lab's output file should land under the home with --with-data"
    with Manager(lab_home) as m:
        lab_kids = m.graph.select(f"SELECT ?k WHERE {{ ?k lwfm:parentJob <urn:uuid:{job_id}> }}")
    assert len(lab_kids) == 2
    bad = _cli(env, "pull", "nosuch", timeout=120)
    assert bad.returncode == 1 and "nosuch" in bad.stderr
    local = _cli(env, "pull", "local", timeout=120)
    assert local.returncode == 1 and "runs no lwfm instance" in local.stderr


def test_lab_records_the_end_of_adopted_jobs(lab_home, live_sshd):
    """Failed and cancelled jobs end the same way in both stores, so pull has no conflict."""
    import time
    from lwfm.model import JobDefn
    # Using the job's context (here: just reading it) is what adopts it at the lab.
    adopt = "from lwfm import Manager; import sys, time; m = Manager(); m.context; m.close(); time.sleep(float(sys.argv[1])); sys.exit(int(sys.argv[2]))"
    with Manager(lab_home) as m:
        wf = m.create_workflow("ends")
        failed = m.submit(JobDefn(entry=[sys.executable, "-c", adopt, "0", "3"], site="lab"),
                          workflow_id=wf.id)
        long = m.submit(JobDefn(entry=[sys.executable, "-c", adopt, "120", "0"], site="lab"),
                        workflow_id=wf.id)
        assert m.wait(failed.id, timeout=60).state is State.FAILED
        with Manager(live_sshd.remote_home) as lab:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:      # the lab adopts it once python is up
                try:
                    lab.store.get_job(long.id)
                    break
                except Exception:
                    time.sleep(0.2)
        assert m.cancel(long.id) is True
        assert m.wait(long.id, timeout=30).state is State.CANCELLED
        from lwfm.pull import pull
        rep = pull(m, "lab", workflow_id=wf.id).report
        assert rep.conflicts == []
    with Manager(live_sshd.remote_home) as lab:
        f, c = lab.store.get_job(failed.id), lab.store.get_job(long.id)
    assert (f.state, f.exit_code) == (State.FAILED, 3)
    assert c.state is State.CANCELLED
