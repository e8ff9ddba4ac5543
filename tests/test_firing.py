"""Firing a trigger records its job in the same transaction; the job starts off the writer
thread; fired jobs a killed process left are started by the next one, exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from lwfm import JobDefn, Manager, State, TriggerStatus
from lwfm.errors import LwfmError
from lwfm.model import Job, JobContext, JobStatus, Trigger, TriggerKind
from lwfm.store import Store

SLOW_SITE = textwrap.dedent('''
    """The local site, whose submit takes SLOW_SITE_S seconds after starting the job (an SSH
    connect, a venv build)."""
    import os, time
    from lwfm.sites.local import LocalRun, LocalSite

    class SlowRun(LocalRun):
        def submit(self, defn, ctx):
            st = super().submit(defn, ctx)
            time.sleep(float(os.environ.get("SLOW_SITE_S", "0")))
            return st

    class SlowSite(LocalSite):
        def __init__(self, host):
            super().__init__(host)
            self.run.__class__ = SlowRun
''')


def _slow_site(home: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Install the slow driver as pip would (a module and a dist-info with its entry point),
    configure it as site "slow", and return the environment that finds it."""
    root = tmp / "plugin"
    dist = root / "slow_site-0.1.dist-info"
    dist.mkdir(parents=True)
    (root / "slow_site.py").write_text(SLOW_SITE)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-site\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lwfm.sites]\nslow = slow_site:SlowSite\n")
    (home / "lwfm.toml").write_text('[sites.local]\ndetach = true\n\n'
                                    '[sites.slow]\ndriver = "slow"\ndetach = true\n')
    monkeypatch.syspath_prepend(str(root))  # undone after the test: no other test sees it
    return {**os.environ, "LWFM_HOME": str(home),
            "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def _marking(marks: Path, name: str, site: str = "local", sleep: float = 0.0) -> JobDefn:
    """A job that appends its own id to ``marks``: how many times it really started."""
    return JobDefn(entry=f'echo "$LWFM_JOB_ID" >> {marks}; sleep {sleep}', kind="shell",
                   name=name, site=site)


def _starts(marks: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in marks.read_text().split() if marks.exists() else []:
        out[line] = out.get(line, 0) + 1
    return out


def _serve(env: dict[str, str], **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lwfm.cli", "serve", "--interval", "0.02"],
                            env={**env, **extra}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()


def _setup(env: dict[str, str], marks: Path, n: int, site: str) -> dict[str, object]:
    """In a process of its own that then exits: n detached jobs A_i, a trigger B_i on each
    and a join on all of them (every fired job marks its starts)."""
    script = textwrap.dedent(f'''
        import json, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        from test_firing import _marking
        from pathlib import Path
        from lwfm import Manager, JobDefn
        marks = Path({str(marks)!r})
        with Manager() as m:
            a = [m.submit(JobDefn(entry="sleep 1.5", kind="shell", name=f"A{{i}}")).id
                 for i in range({n})]
            b = [m.on(j, _marking(marks, f"B{{i}}", {site!r})).trigger_id for i, j in enumerate(a)]
            join = m.on_all(a, _marking(marks, "join"))
            print(json.dumps({{"a": a, "b": b, "join": join.trigger_id}}))
    ''')
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _check_each_fired_job_started_once(home: Path, ids: dict, marks: Path,
                                       timeout: float = 120) -> Manager:
    """After the restart: every trigger fired once, its job is recorded and ended, and it
    started exactly once (or, killed in the one spawn of its start, is recorded FAILED
    saying so, and started at most once)."""
    m = Manager(home)
    trs = [m.store.get_trigger(t) for t in [*ids["b"], ids["join"]]]  # type: ignore[misc]
    jobs = m.wait_all([tr.job_id for tr in trs], timeout=timeout)
    starts = _starts(marks)
    for tr, job in zip(trs, jobs):
        assert m.store.get_trigger(tr.id).status is TriggerStatus.FIRED
        assert job.triggered_by == tr.id
        unknown = "it may have run" in (m.history(job.id)[-1].info or "")
        if unknown:
            assert job.state is State.FAILED and starts.get(job.id, 0) <= 1
        else:
            assert job.state is State.COMPLETE, m.history(job.id)
            assert starts.get(job.id) == 1, (job.defn.name, starts.get(job.id))
    fired = [j for j in m.store.find_jobs() if j.triggered_by]
    assert len(fired) == len(trs)  # the join fired once; nothing fired twice
    return m


@pytest.mark.slow
def test_kill_9_of_serve_while_30_triggers_and_a_join_fire(home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    env = _slow_site(home, tmp_path, monkeypatch)
    marks = tmp_path / "marks"
    ids = _setup(env, marks, 30, "local")
    serve = _serve(env)
    store = Store(f"sqlite:///{home / 'lwfm.db'}")
    try:
        deadline = time.monotonic() + 60
        while not store.triggers(status=TriggerStatus.FIRED, limit=1):
            assert time.monotonic() < deadline, "nothing fired"
            time.sleep(0.002)
        os.kill(serve.pid, signal.SIGKILL)  # in the middle of the burst
        serve.wait(timeout=30)
        fired = store.triggers(status=TriggerStatus.FIRED)
        assert 0 < len(fired)
        store.get_jobs([tr.job_id for tr in fired])  # a fired trigger's job is recorded with it
    finally:
        store.close()
    serve = _serve(env)
    try:
        _check_each_fired_job_started_once(home, ids, marks).close()
    finally:
        _stop(serve)


@pytest.mark.slow
def test_kill_9_while_a_start_is_in_progress(home: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A site whose submit takes long: the process is killed while it starts the first
    fired job. The next process records that one as possibly run (never starting it
    twice) and starts each of the others exactly once; the join fires once."""
    env = _slow_site(home, tmp_path, monkeypatch)
    marks = tmp_path / "marks"
    ids = _setup(env, marks, 4, "slow")
    serve = _serve(env, SLOW_SITE_S="60")
    store = Store(f"sqlite:///{home / 'lwfm.db'}")
    try:
        deadline = time.monotonic() + 60
        while not any(r[2] == "starting" for r in store.unstarted()):
            assert time.monotonic() < deadline and serve.poll() is None, "no start began"
            time.sleep(0.01)
        while not (marks.exists() and marks.read_text().strip()):  # the job's process ran,
            assert time.monotonic() < deadline, "the job did not start"  # its site call has
            time.sleep(0.01)                                            # not returned
        os.kill(serve.pid, signal.SIGKILL)
        serve.wait(timeout=30)
    finally:
        store.close()
    serve = _serve(env, SLOW_SITE_S="0")
    try:
        m = _check_each_fired_job_started_once(home, ids, marks)
        with m:
            unknown = [j for j in m.store.find_jobs(state=State.FAILED)
                       if "it may have run" in (m.history(j.id)[-1].info or "")]
            assert len(unknown) == 1 and _starts(marks).get(unknown[0].id) == 1
    finally:
        _stop(serve)


def test_site_io_of_a_start_does_not_stall_recording(home: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    """The fired job's site takes 3 s to start it; meanwhile this process records as usual."""
    _slow_site(home, tmp_path, monkeypatch)
    monkeypatch.setenv("SLOW_SITE_S", "3")
    with Manager(home) as m:
        a = m.submit(JobDefn(entry=["sleep", "0.5"]))  # it ends after the trigger is made
        tr = m.on(a.id, JobDefn(entry=["true"], site="slow"))
        m.wait(a.id, timeout=30)
        deadline = time.monotonic() + 10
        while m.store.get_trigger(tr.trigger_id).status is TriggerStatus.PENDING:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)  # the slow start is under way
        t0 = time.monotonic()
        other = m.submit(JobDefn(entry=["true"]))
        assert m.wait(other.id, timeout=30).state is State.COMPLETE
        assert time.monotonic() - t0 < 1.5, "recording waited for the slow site"
        assert m.wait(tr.job_id, timeout=30).state is State.COMPLETE


def test_a_manager_closed_right_after_the_watched_job_ends(home: Path) -> None:
    """Whether this process starts the fired job before it closes or leaves it to the
    next one, the fired job is recorded, starts, and a later wait returns. (Detached: a
    job this process started must be able to record its end after the process is gone.)"""
    (home / "lwfm.toml").write_text("[sites.local]\ndetach = true\n")
    for _ in range(5):
        with Manager(home) as m:
            a = m.submit(JobDefn(entry=["true"]))
            tr = m.on(a.id, JobDefn(entry=["echo", "B"]))
            m.wait(a.id, timeout=30)
        with Manager(home) as m2:
            assert m2.store.get_trigger(tr.trigger_id).status is TriggerStatus.FIRED
            assert m2.wait(tr.job_id, timeout=30).state is State.COMPLETE


def _fired_unstarted(home: Path, marks: Path) -> tuple[str, str]:
    """A trigger fired by a process that then died: its claim names a pid that is gone.
    Fired from a Manager with no loop: a running loop's periodic recovery would start it."""
    with Manager(home) as m:
        a = m.wait(m.submit(JobDefn(entry=["true"])).id, timeout=30)
    with Manager(home) as m:
        tr = Trigger(kind=TriggerKind.JOB, watch=[a.id], defn=_marking(marks, "B"))
        m.store.add_trigger(tr)
        job = Job(defn=tr.defn, context=JobContext(job_id=tr.job_id, parent_id=a.id),
                  triggered_by=tr.id)
        claim = f"{os.uname().nodename}:{2**22 + 17}:0:deadbeef"  # no such pid
        assert m.store.fire_trigger(tr.id, a.id, job, JobStatus(job.id, State.PENDING,
                                    info="fired; not started yet"), claim)
    return tr.id, tr.job_id


def test_status_log_cancel_tell_the_truth_about_a_fired_job_not_started(home: Path,
                                                                         tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    tr_id, job_id = _fired_unstarted(home, marks)
    env = {**os.environ, "LWFM_HOME": str(home)}
    cli = [sys.executable, "-m", "lwfm.cli"]
    st = subprocess.run([*cli, "status", job_id], env=env, capture_output=True, text=True,
                        timeout=60)
    assert st.returncode == 0, st.stderr
    assert "PENDING" in st.stdout and f"fired by trigger {tr_id}, not started yet" in st.stdout
    lg = subprocess.run([*cli, "log", job_id], env=env, capture_output=True, text=True, timeout=60)
    assert lg.returncode == 1 and "not started yet" in lg.stderr
    with Manager(home) as m:  # (no wait here: its loop would start the job)
        assert "not started yet" in (m.start_note(job_id) or "")
    cn = subprocess.run([*cli, "cancel", job_id], env=env, capture_output=True, text=True,
                        timeout=60)
    assert cn.returncode == 0 and "cancelled" in cn.stdout, cn.stderr
    with Manager(home) as m:
        assert m.wait(job_id, timeout=10).state is State.CANCELLED
        time.sleep(0.5)  # its loop ran recovery: a cancelled job is not started
    assert not marks.exists()


def test_a_wait_starts_a_fired_job_a_dead_process_left(home: Path, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    _, job_id = _fired_unstarted(home, marks)
    r = subprocess.run([sys.executable, "-m", "lwfm.cli", "wait", job_id, "--timeout", "60"],
                       env={**os.environ, "LWFM_HOME": str(home)}, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "COMPLETE" in r.stdout, r.stderr
    assert _starts(marks) == {job_id: 1}


def test_two_processes_recovering_start_the_job_once(home: Path, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    _, job_id = _fired_unstarted(home, marks)
    env = {**os.environ, "LWFM_HOME": str(home)}
    servers = [_serve(env) for _ in range(3)]
    try:
        with Manager(home) as m:
            assert m.wait(job_id, timeout=60).state is State.COMPLETE
            time.sleep(1.0)
    finally:
        for s in servers:
            _stop(s)
    assert _starts(marks) == {job_id: 1}


def test_no_lwfm_thread_outlives_close_and_nothing_reopens(home: Path) -> None:
    m = Manager(home)
    a = m.submit(JobDefn(entry=["true"]))
    tr = m.on(a.id, JobDefn(entry=["true"]))
    assert m.wait(tr.job_id, timeout=30).state is State.COMPLETE
    mine = {"lwfm-manager-loop", "lwfm-recorder", "lwfm-starter"}
    assert {"lwfm-manager-loop", "lwfm-recorder"} <= {t.name for t in threading.enumerate()}
    m.close()
    assert not mine & {t.name for t in threading.enumerate() if t.is_alive()}
    for call in (lambda: m.site("local"), m.open_graph, lambda: m.submit(JobDefn(["true"])),
                 lambda: m.wait(a.id), lambda: m.status(a.id), lambda: m.reconcile(),
                 lambda: m.on(a.id, JobDefn(["true"]))):
        with pytest.raises(LwfmError, match="Manager is closed"):
            call()
    m.close()  # twice is fine


def test_firing_and_recovery_on_each_backend(store_url: str, home: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LWFM_STORE_URL", store_url)
    marks = tmp_path / "marks"
    _, left = _fired_unstarted(home, marks)
    with Manager(home) as m:
        a = m.submit(JobDefn(entry=["true"]))
        tr = m.on(a.id, _marking(marks, "B2"))
        assert m.wait(tr.job_id, timeout=60).state is State.COMPLETE
        assert m.wait(left, timeout=60).state is State.COMPLETE
        assert m.store.unstarted() == []
    assert _starts(marks) == {left: 1, tr.job_id: 1}


def test_a_cancel_while_its_site_starts_the_job_stops_what_then_runs(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """submit records the job, then its site takes 2 s to start it. A cancel in between
    waits for the start and stops the job, instead of recording CANCELLED over a job that
    then runs to its end."""
    _slow_site(home, tmp_path, monkeypatch)
    monkeypatch.setenv("SLOW_SITE_S", "2")
    marker = tmp_path / "ran-to-the-end"
    with Manager(home) as m:
        t = threading.Thread(target=m.submit, args=(JobDefn(
            entry=f"sleep 3; touch {marker}", kind="shell", site="slow"),))
        t.start()
        deadline = time.monotonic() + 10
        while not m.store.find_jobs():
            assert time.monotonic() < deadline, "the job was never recorded"
            time.sleep(0.01)
        job_id = m.store.find_jobs()[0].id
        assert not m.store.get_job(job_id).context.native_id  # recorded, being started
        assert m.cancel(job_id) is True
        t.join(30)
        assert m.wait(job_id, timeout=30).state is State.CANCELLED
        time.sleep(4)
        assert not marker.exists(), "the cancelled job ran to its end"
