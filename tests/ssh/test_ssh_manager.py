"""The ssh site through the Manager: tracking, drops, log, data, and no leaked secrets."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lwfm import Manager
from lwfm.model import EntryKind, JobDefn, State
from lwfm.store import t

from ._toml import write_sites

pytestmark = [pytest.mark.slow, pytest.mark.ssh]


@pytest.fixture
def manager(live_sshd, home):
    write_sites(home, {"lab": live_sshd.site_config(reconnect_timeout=30)})
    m = Manager(home)
    yield m
    m.close()


def test_submit_wait_log_history(manager):
    job = manager.submit(JobDefn(entry="echo hello from $(hostname) $LWFM_JOB_ID",
                                 kind=EntryKind.SHELL, site="lab"))
    done = manager.wait(job.id, timeout=30)
    assert done.state is State.COMPLETE and done.exit_code == 0
    assert "hello from" in manager.log(job.id) and job.id in manager.log(job.id)
    states = [s.state for s in manager.history(job.id)]
    assert states[0] is State.PENDING and states[-1] is State.COMPLETE and State.RUNNING in states


def test_cancel_through_manager(manager):
    job = manager.submit(JobDefn(entry=["sleep", "120"], site="lab"))
    assert manager.cancel(job.id) is True
    assert manager.wait(job.id, timeout=10).state is State.CANCELLED
    assert manager.site("lab").run.status(manager.status(job.id).context).state is State.CANCELLED


def test_drop_mid_job_resumes_without_duplicate(manager, live_sshd):
    wf = manager.create_workflow("drop")
    job = manager.submit(JobDefn(entry="sleep 3; echo once", kind=EntryKind.SHELL, site="lab"),
                         workflow_id=wf.id)
    site = manager.site("lab")
    assert site.conn.connects == 1
    live_sshd.stop()
    restart = threading.Timer(1.5, live_sshd.start)
    restart.start()
    try:
        done = manager.wait(job.id, timeout=60)
    finally:
        restart.join()
    assert done.state is State.COMPLETE
    assert site.conn.connects >= 2
    assert manager.log(job.id).count("once") == 1
    with manager.store.read() as c:
        assert c.execute(select(func.count()).select_from(t.jobs)).scalar_one() == 1
    jobs_dir = live_sshd.remote_home / "jobs"
    assert (jobs_dir / job.id).is_dir()


def test_long_outage_polls_info_then_resumes(live_sshd, home):
    write_sites(home, {"lab": live_sshd.site_config(poll_reconnect_timeout=0.5)})
    with Manager(home) as m:
        job = m.submit(JobDefn(entry="sleep 4; echo survived", kind=EntryKind.SHELL, site="lab"))
        live_sshd.stop()
        restart = threading.Timer(14, live_sshd.start)   # longer than the status grace period
        restart.start()
        try:
            done = m.wait(job.id, timeout=90)
        finally:
            restart.join()
        assert done.state is State.COMPLETE and m.log(job.id).strip() == "survived"
        hist = m.history(job.id)
        outage = [h for h in hist if h.native_state == "unreachable"]
        assert outage and all(h.state is State.INFO and "cannot reach" in h.info for h in outage)
        assert hist[-1].state is State.COMPLETE
        progress = [h.state for h in hist if h.state is not State.INFO]
        assert list(dict.fromkeys(progress)) == [State.PENDING, State.RUNNING, State.COMPLETE]


def test_put_get_recorded(manager, tmp_path, live_sshd):
    src = tmp_path / "x.txt"
    src.write_text("data for the lab\n")
    up = manager.put(src, "inbox/x.txt", site="lab", metadata={"kind": "input"})
    assert up.url.startswith("ssh://") and up.site == "lab"
    down = manager.get(up.url, tmp_path / "back.txt", site="lab", metadata={"kind": "copy"})
    assert down.sha256 == up.sha256 and (tmp_path / "back.txt").read_text() == src.read_text()
    found = {d.id for d in manager.find({"kind": "*"})}
    assert found == {up.id, down.id}


def test_secrets_never_in_store_or_logs(live_sshd, home, tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_KEY_PW", live_sshd.passphrase)
    write_sites(home, {"lab": live_sshd.site_config(key_file=str(live_sshd.enc_key),
                                                    passphrase_env="LAB_KEY_PW")})
    with Manager(home) as m:
        job = m.submit(JobDefn(entry="env; echo done", kind=EntryKind.SHELL, site="lab",
                               name="visible-marker-8f2c"))
        assert m.wait(job.id, timeout=30).state is State.COMPLETE
        src = tmp_path / "s.txt"
        src.write_text("x")
        m.put(src, "s.txt", site="lab")
        m.record_log("ran the secret test", job_id=job.id)
        assert "LAB_KEY_PW" not in m.log(job.id)   # the passphrase variable never goes remote
        assert len(m.graph) > 0                     # the graph is built, so it is grepped too
        from lwfm.bundles import export_bundle
        export_bundle(m.store, m.config, home / "exported.zip", all=True)
    secret = live_sshd.passphrase.encode()
    import zipfile
    with zipfile.ZipFile(home / "exported.zip") as z:
        assert all(secret not in z.read(n) for n in z.namelist())
    files = [p for root in (home, live_sshd.remote_home) for p in Path(root).rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files) and any("graph" in p.parts for p in files)
    assert [p for p in files if secret in p.read_bytes()] == []
    # the grep can see what IS stored: a job name shows up in the store and the graph
    seen = [p for p in files if b"visible-marker-8f2c" in p.read_bytes()]
    assert any(p.name.endswith(".db") or ".db-" in p.name for p in seen)
    assert any("graph" in p.parts for p in seen), seen
