"""The Manager with the local site: real child processes, a real SQLite store."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lwfm import JobDefn, Manager, State
from lwfm.errors import InvalidInput, NotFound, SiteError

from ._keepers import keepers as _keepers

REPO = Path(__file__).resolve().parents[1]
PYENV = {"PYTHONPATH": str(REPO)}


@pytest.fixture
def m(home: Path):
    with Manager(home) as mgr:
        yield mgr


def test_argv_shell_and_python_jobs_complete_with_logs(m: Manager) -> None:
    a = m.wait(m.submit(JobDefn(entry=["echo", "hello"])).id, timeout=30)
    b = m.wait(m.submit(JobDefn(entry="echo out; echo err >&2", kind="shell")).id, timeout=30)
    c = m.wait(m.submit(JobDefn(entry="json:dumps", kind="python", args=["x"])).id, timeout=60)
    assert (a.state, a.exit_code) == (State.COMPLETE, 0)
    assert m.log(a.id) == "hello\n"
    assert "out\n" in m.log(b.id) and "err\n" in m.log(b.id)
    assert c.state is State.COMPLETE and '"\\"x\\""' in m.log(c.id)
    assert [s.state for s in m.history(a.id)] == [State.PENDING, State.RUNNING, State.COMPLETE]


def test_exit_code_maps_to_failed(m: Manager) -> None:
    j = m.wait(m.submit(JobDefn(entry="exit 3", kind="shell")).id, timeout=30)
    assert (j.state, j.exit_code) == (State.FAILED, 3)
    p = m.wait(m.submit(JobDefn(entry="tests.jobfuncs:fail", kind="python", env=PYENV)).id, 60)
    assert (p.state, p.exit_code) == (State.FAILED, 7)


def test_unstartable_job_is_recorded_failed_and_raises(m: Manager) -> None:
    with pytest.raises(SiteError, match="no-such-program"):
        m.submit(JobDefn(entry=["no-such-program-xyz"], name="bad"))
    bad = m.store.find_jobs(state=State.FAILED)
    assert [j.defn.name for j in bad] == ["bad"]
    assert "could not start" in (m.history(bad[0].id)[-1].info or "")


def test_unknown_ids_and_sites_are_clear_errors(m: Manager) -> None:
    with pytest.raises(NotFound, match="no job with id"):
        m.status("nope")
    with pytest.raises(NotFound):
        m.cancel("nope")
    with pytest.raises(Exception, match="unknown site 'mars'"):
        m.submit(JobDefn(entry=["true"], site="mars"))
    with pytest.raises(NotFound):
        m.submit(JobDefn(entry=["true"]), workflow_id="no-such-workflow")


def test_state_never_goes_backwards(m: Manager) -> None:
    j = m.wait(m.submit(JobDefn(entry=["true"])).id, timeout=30)
    m.report_status(State.INFO, info="late note", job_id=j.id)
    m.report_status(State.RUNNING, info="late running", job_id=j.id)
    assert m.status(j.id).state is State.COMPLETE
    hist = [s.state for s in m.history(j.id)]
    assert hist[-2:] == [State.INFO, State.RUNNING] and State.COMPLETE in hist


def test_job_finds_its_context_and_links_children_and_data(m: Manager, tmp_path: Path) -> None:
    wf = m.create_workflow("ctx")
    parent = m.submit(JobDefn(entry="tests.jobfuncs:spawn_child_and_notate", kind="python",
                              args=[str(tmp_path)], env=PYENV), workflow_id=wf.id)
    assert m.wait(parent.id, timeout=120).state is State.COMPLETE, m.log(parent.id)
    kids = m.store.find_jobs(parent_id=parent.id)
    assert [k.defn.name for k in kids] == ["child"]
    assert kids[0].context.workflow_id == wf.id
    assert kids[0].context.originator_id == parent.id
    assert m.wait(kids[0].id, timeout=30).state is State.COMPLETE
    (d,) = m.find({"kind": "result"})
    assert d.job_id == parent.id and d.workflow_id == wf.id and d.sha256 and d.size == 7


def test_job_processes_record_concurrently_nothing_lost(m: Manager) -> None:
    n, per = 6, 25
    jobs = [m.submit(JobDefn(entry="tests.jobfuncs:busy_recorder", kind="python",
                             args=[str(per)], env=PYENV)) for _ in range(n)]
    for j in jobs:
        assert m.wait(j.id, timeout=180).state is State.COMPLETE, m.log(j.id)
    for j in jobs:
        assert len(m.find({"job": j.id})) == per
        infos = [s for s in m.history(j.id) if s.state is State.INFO]
        assert len(infos) == per
    assert len(m.find({"i": 3})) == n  # non-string values match as JSON


def test_find_exact_glob_and_fields_anded(m: Manager, tmp_path: Path) -> None:
    for name, kind in (("run-1.dat", "raw"), ("run-2.dat", "raw"), ("run-3.csv", "table")):
        f = tmp_path / name
        f.write_text(name)
        m.notate(f, metadata={"name": name, "kind": kind})
    assert len(m.find({"kind": "raw"})) == 2
    assert {d.metadata["name"] for d in m.find({"name": "run-*"})} == {"run-1.dat", "run-2.dat",
                                                                       "run-3.csv"}
    assert len(m.find({"name": "run-*", "kind": "table"})) == 1
    assert m.find({"name": "*raw*"}) == []  # fields, not a regex over serialized text
    assert m.find({"kind": "raw", "missing": "x"}) == []


def test_put_and_get_copy_and_checksum(m: Manager, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("data\n")
    d = m.put(src, str(tmp_path / "store" / "a.txt"), metadata={"k": "v"})
    assert (tmp_path / "store" / "a.txt").read_text() == "data\n"
    g = m.get(d.url, tmp_path / "back.txt")
    assert g.sha256 == d.sha256 and g.direction.value == "get"
    with pytest.raises(NotFound):
        m.put(tmp_path / "missing", str(tmp_path / "x"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def test_cancel_from_another_process(m: Manager, home: Path) -> None:
    j = m.submit(JobDefn(entry="sleep 300 & sleep 300; wait", kind="shell"))
    pid = int(m.status(j.id).context.native_id.split(":")[0])
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "cancel", j.id], capture_output=True,
                       text=True, env={**os.environ, "LWFM_HOME": str(home)}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert m.wait(j.id, timeout=30).state is State.CANCELLED
    deadline = time.time() + 10
    def group() -> bool:
        return subprocess.run(["pgrep", "-g", str(pid)], capture_output=True).returncode == 0
    while (_alive(pid) or group()) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert not group(), "processes of the cancelled job's group survived"


def test_detached_job_end_is_learned_by_a_later_process(home: Path) -> None:
    env = {**os.environ, "LWFM_HOME": str(home)}
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "run", "--shell", "sleep 0.5; exit 4"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    with Manager(home) as m2:  # the submitting process is gone
        j = m2.wait(job_id, timeout=30)
    assert (j.state, j.exit_code) == (State.FAILED, 4)


def test_manager_on_postgresql(store_url: str, monkeypatch: pytest.MonkeyPatch,
                               home: Path) -> None:
    monkeypatch.setenv("LWFM_STORE_URL", store_url)
    with Manager(home) as m:
        ids = [m.submit(JobDefn(entry="exit $1", kind="shell", args=[str(i % 2)])).id
               for i in range(10)]
        states = [m.wait(i, timeout=60).state for i in ids]
        assert states.count(State.COMPLETE) == 5 and states.count(State.FAILED) == 5
        assert m.store.url == store_url


def test_native_id_guards_against_pid_reuse(m: Manager) -> None:
    from lwfm.sites.local import _alive
    j = m.submit(JobDefn(entry=["sleep", "30"]))
    native = m.status(j.id).context.native_id
    pid, stamp = native.split(":")[:2]
    assert _alive(native)
    assert not _alive(f"{pid}:{int(stamp) - 60_000}")  # same pid, a process started earlier
    m.cancel(j.id)
    assert not _alive(native)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"at": object()}])
def test_values_json_cannot_hold_are_refused_before_anything_happens(m: Manager, tmp_path: Path,
                                                                     bad: object) -> None:
    src = tmp_path / "in.txt"
    src.write_text("x\n")
    dest = tmp_path / "copy.txt"
    with pytest.raises(InvalidInput, match="plain JSON"):
        m.put(src, str(dest), metadata={"score": bad})
    assert not dest.exists()  # refused before the copy, not after
    with pytest.raises(InvalidInput, match="plain JSON"):
        m.notate(src, metadata={"score": bad})
    with pytest.raises(InvalidInput, match="plain JSON"):
        m.find({"score": bad})
    with pytest.raises(InvalidInput, match="plain JSON"):
        m.submit(JobDefn(entry=["/bin/true"], resources={"mem": bad}))
    with pytest.raises(InvalidInput, match="plain JSON"):
        m.on_data({"score": bad}, JobDefn(entry=["/bin/true"]))
    with pytest.raises(InvalidInput, match="plain JSON"):
        m.create_workflow("w", props={"p": bad})
    assert m.find() == [] and m.store.find_jobs() == [] and m.workflows() == []
    assert m.store.triggers() == []


@pytest.mark.parametrize("detach", [False, True])
def test_a_job_killed_from_outside_failed_it_was_not_cancelled(m: Manager, detach: bool) -> None:
    m.site("local").detach = detach  # type: ignore[attr-defined]
    j = m.wait(m.submit(JobDefn(entry="kill -KILL $$", kind="shell")).id, timeout=30)
    assert j.state is State.FAILED
    assert j.exit_code in (-9, 137)  # the signal itself, or sh's 128+9 via the exit file


def _lost_job(home: Path) -> str:
    """A job whose end nobody can learn: `lwfm run` starts it and exits, then the local
    site's keeper and the job are killed (no exit file is written). Its id."""
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "run", "--", "sleep", "100"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "LWFM_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    with Manager(home) as mgr:
        pid = int(mgr.store.get_job(job_id).context.native_id.split(":")[0])
    for keeper in _keepers(home):  # the keeper first, then the job
        os.kill(keeper, 9)
    os.killpg(pid, 9)
    return job_id


def test_a_detached_job_that_vanished_is_failed_after_the_grace(home: Path, monkeypatch) -> None:
    """Nobody supervises it (its submitter exited) and it left no exit code: once the grace
    is over, a waiter records FAILED instead of waiting forever."""
    import lwfm.runner
    monkeypatch.setattr(lwfm.runner, "_GRACE_S", 1.0)
    job_id = _lost_job(home)
    with Manager(home) as mgr:
        j = mgr.wait(job_id, timeout=30)
        assert j.state is State.FAILED and "not recorded" in (mgr.history(job_id)[-1].info or "")


def test_a_long_job_is_not_failed_on_its_first_unknown_look(home: Path, monkeypatch) -> None:
    """UNKNOWN from the site (no exit file yet, no live process) means "lost" only once it
    has lasted the whole grace as this process saw it, not because the job started long
    ago: another process's report of its end may still be on its way."""
    import lwfm.runner
    from sqlalchemy import update

    from lwfm.store import t
    monkeypatch.setattr(lwfm.runner, "_GRACE_S", 2.0)
    job_id = _lost_job(home)
    with Manager(home) as mgr:
        pid = int(mgr.store.get_job(job_id).context.native_id.split(":")[0])
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{pid}"):  # until the orphan is reaped: then UNKNOWN
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with mgr.store.write() as c:  # as recorded, it started an hour ago
            c.execute(update(t.jobs).where(t.jobs.c.id == job_id)
                      .values(started="2026-01-01T00:00:00+00:00"))
        assert mgr.status(job_id).state is State.RUNNING  # the first look fails nothing
        j = mgr.wait(job_id, timeout=30)  # the answer stays UNKNOWN for the grace: lost
        assert j.state is State.FAILED and "not recorded" in (mgr.history(job_id)[-1].info or "")


def test_secrets_in_a_job_env_are_used_but_never_recorded(m: Manager, home: Path,
                                                          tmp_path: Path) -> None:
    secret = "s3cret-value-4711"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    check = f'test "$(printf %s "$API_TOKEN" | sha256sum | cut -d" " -f1)" = {digest}'
    j = m.wait(m.submit(JobDefn(entry=check, kind="shell",
                                env={"API_TOKEN": secret, "PLAIN": "ok"})).id, timeout=30)
    assert j.state is State.COMPLETE  # the job saw the real value
    assert j.defn.env == {"API_TOKEN": "<redacted>", "PLAIN": "ok"}
    m.flush()
    _ = m.graph  # the projection, too
    from lwfm.bundles import export_bundle
    export_bundle(m.store, m.config, tmp_path / "b.zip", job_id=j.id)
    import zipfile
    with zipfile.ZipFile(tmp_path / "b.zip") as z:
        assert not any(secret.encode() in z.read(n) for n in z.namelist())
    m.store.close()
    for f in home.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f
    with pytest.raises(InvalidInput, match="looks like a secret"):
        m.on_data({"k": "v"}, JobDefn(entry=["/bin/true"], env={"DB_PASSWORD": secret}))
