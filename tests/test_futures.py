"""Job and data futures, deadlines and conditional joins, with real local jobs (real
processes) and real second processes where a future crosses one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import lwfm
from lwfm import JobDefn, JobFailed, Manager, State, TriggerStatus
from lwfm.errors import InvalidInput, LwfmError
from lwfm.futures import FIRST_COMPLETED, JobFuture
from lwfm.provenance.vocab import node_iri

PY = sys.executable


@pytest.fixture
def m(home: Path):
    with Manager(home) as mgr:
        yield mgr


def sh(cmd: str, name: str = "") -> JobDefn:
    return JobDefn(entry=cmd, kind="shell", name=name or cmd)


def _in_child(home: Path, code: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWFM_")}
    env["LWFM_HOME"] = str(home)
    return subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True,
                          timeout=timeout)


# -- job futures ---------------------------------------------------------------------------
def test_submit_returns_a_future_with_the_old_job_attributes(m: Manager) -> None:
    f = m.submit(sh("echo hi", "hi"))
    assert isinstance(f, JobFuture) and f.job_id == f.id
    assert f.defn.name == "hi" and f.context.job_id == f.id and f.context.site == "local"
    job = f.result(timeout=30)
    assert job.state is State.COMPLETE and f.state is State.COMPLETE and f.done()
    assert f.exit_code == 0 and m.log(f) == "hi\n"
    assert f.exception() is None


def test_result_of_a_failed_job_raises_jobfailed_with_its_log_tail(m: Manager) -> None:
    f = m.submit(sh("for i in $(seq 1 30); do echo line $i; done; exit 4", "noisy"))
    with pytest.raises(JobFailed) as err:
        f.result(timeout=30)
    e = err.value
    assert e.job.state is State.FAILED and e.job.exit_code == 4
    assert e.log_tail.splitlines() == [f"line {i}" for i in range(11, 31)]
    assert "ended FAILED (exit code 4)" in str(e) and "line 30" in str(e)
    assert f.wait(5).state is State.FAILED  # wait does not raise: it returns the end


def test_then_chains_and_on_takes_futures(m: Manager) -> None:
    a = m.submit(sh("echo A", "A"))
    b = a.then(sh("echo B", "B"))
    c = m.on(b, sh("echo C", "C"), states="terminal")
    assert b.trigger_id is not None and b.trigger_id != b.id
    jc = c.result(timeout=60)
    jb = b.result()
    assert (jb.context.parent_id, jc.context.parent_id) == (a.id, b.id)
    assert (jb.triggered_by, jc.triggered_by) == (b.trigger_id, c.trigger_id)
    assert b.status is TriggerStatus.FIRED and b.fired_by == a.id


def test_wait_all_as_completed_and_first_completed(m: Manager) -> None:
    slow = m.submit(sh("sleep 1.5", "slow"))
    fast = [m.submit(sh(f"sleep 0.{i}", f"fast {i}")) for i in (1, 2)]
    done, not_done = lwfm.wait([slow, *fast], timeout=30, return_when=FIRST_COMPLETED)
    assert done and slow in not_done
    order = list(lwfm.as_completed([slow, *fast], timeout=60))
    assert order[-1] is slow and set(order) == {slow, *fast}
    jobs = lwfm.wait_all([slow, *fast], timeout=60)
    assert [j.id for j in jobs] == [slow.id, *(f.id for f in fast)]
    assert {j.state for j in jobs} == {State.COMPLETE}
    with pytest.raises(TimeoutError):
        list(lwfm.as_completed([m.submit(sh("sleep 5"))], timeout=0.3))


def test_done_callbacks_run_once_each_on_the_manager_thread(m: Manager) -> None:
    f = m.submit(sh("sleep 0.3"))
    got: list[tuple[str, str]] = []
    ran = threading.Event()

    def cb(fut: JobFuture) -> None:
        got.append((fut.id, threading.current_thread().name))
        ran.set()

    f.add_done_callback(cb)
    assert ran.wait(30)
    f.add_done_callback(cb)  # already done: at once, in this thread
    time.sleep(0.3)
    assert got == [(f.id, "lwfm-callbacks"), (f.id, threading.current_thread().name)]


def test_cancel_through_the_future(m: Manager) -> None:
    f = m.submit(sh("sleep 30"))
    g = f.then(sh("echo never"))
    assert f.cancel() is True
    assert f.wait(30).state is State.CANCELLED and f.state is State.CANCELLED
    with pytest.raises(JobFailed, match="will never run"):
        g.result(timeout=30)
    assert f.cancel() is False


def test_a_future_is_a_view_of_the_store_across_processes(home: Path) -> None:
    """Process 1 submits and exits; a future made from the id in another process (this
    one) waits for the end; a third process waits on the same id while this one runs."""
    out = _in_child(home, "from lwfm import Manager, JobDefn\n"
                          "with Manager() as m:\n"
                          "    f = m.submit(JobDefn(entry='sleep 1; echo done', kind='shell'))\n"
                          "    print(f.id)\n")
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    with Manager(home) as m:
        f = m.future(job_id)
        assert not f.done()
        waiter = subprocess.Popen(
            [PY, "-c", "import sys\nfrom lwfm import Manager\nwith Manager() as m:\n"
                       f"    print(m.future({job_id!r}).result(timeout=60).state.value)\n"],
            env={**os.environ, "LWFM_HOME": str(home)}, stdout=subprocess.PIPE, text=True)
        assert f.result(timeout=60).state is State.COMPLETE and m.log(f) == "done\n"
        assert waiter.communicate(timeout=60)[0].strip() == "COMPLETE"
        with pytest.raises(lwfm.NotFound):
            m.future("no-such-job")


# -- deadlines -----------------------------------------------------------------------------
def test_a_trigger_past_its_deadline_is_dead_with_reason_timeout(m: Manager) -> None:
    slow = m.submit(sh("sleep 3"))
    late = slow.then(sh("echo late"), timeout=0.5)
    chained = late.then(sh("echo after late"), states="terminal")
    in_time = slow.then(sh("echo in time"), timeout=60)
    with pytest.raises(JobFailed, match="will never run: timeout"):
        late.result(timeout=30)
    assert late.status is TriggerStatus.DEAD and late.reason == "timeout"
    # a trigger on the job the dead one would have started sees it end (cancelled)
    assert chained.result(timeout=30).state is State.COMPLETE
    assert in_time.result(timeout=30).state is State.COMPLETE
    with pytest.raises(InvalidInput, match="timeout"):
        slow.then(sh("true"), timeout=-1)


def test_a_deadline_passes_while_no_process_runs(home: Path) -> None:
    """The trigger is made by a process that exits; the next Manager that waits finds the
    deadline passed and settles it (once), and `lwfm triggers` shows the deadline."""
    out = _in_child(home, "from lwfm import Manager, JobDefn\n"
                          "with Manager() as m:\n"
                          "    a = m.submit(JobDefn(entry='sleep 30', kind='shell'))\n"
                          "    t = a.then(JobDefn(entry=['true']), timeout=1)\n"
                          "    print(a.id, t.id, t.trigger_id)\n")
    assert out.returncode == 0, out.stderr
    a_id, b_id, tr_id = out.stdout.split()
    listed = subprocess.run([PY, "-m", "lwfm.cli", "triggers"], capture_output=True, text=True,
                            env={**os.environ, "LWFM_HOME": str(home)}, timeout=60)
    assert listed.returncode == 0 and tr_id[:8] in listed.stdout
    with Manager(home) as m:
        deadline = m.store.get_trigger(tr_id).deadline
        assert deadline is not None and deadline.strftime("%Y-%m-%d %H:%M:%S") in listed.stdout
        with pytest.raises(JobFailed, match="timeout"):
            m.future(b_id).wait(timeout=30)
        assert m.store.get_trigger(tr_id).reason == "timeout"
        m.cancel(a_id)


# -- conditional joins ---------------------------------------------------------------------
READ_JOIN = f"{PY} -c \"import os; print(os.environ['LWFM_JOIN_STATES'])\""


def test_k_of_n_join_fires_once_k_complete_and_tells_which(m: Manager) -> None:
    fs = [m.submit(sh("exit 0", "ok 1")), m.submit(sh("exit 1", "bad")),
          m.submit(sh("sleep 0.5", "ok 2")), m.submit(sh("sleep 30", "hung"))]
    two = m.on_all(fs, sh(READ_JOIN, "two of four"), at_least=2)
    job = two.result(timeout=60)
    got = json.loads(m.log(job))
    assert got == m.join_states(job)
    assert {j for j, s in got.items() if s == "COMPLETE"} == {fs[0].id, fs[2].id}
    assert got[fs[1].id] == "FAILED" and got[fs[3].id] in ("RUNNING", "PENDING")
    assert two.at_least == 2 and two.fired_by == fs[2].id  # the second to complete
    fs[3].cancel()


def test_k_of_n_join_dies_when_k_can_no_longer_complete(m: Manager) -> None:
    fs = [m.submit(sh("exit 1")), m.submit(sh("exit 2")), m.submit(sh("true"))]
    join = m.on_all(fs, sh("echo never"), at_least=2)
    with pytest.raises(JobFailed, match="waited for 2 of 3 jobs"):
        join.result(timeout=60)
    with pytest.raises(InvalidInput, match="at_least"):
        m.on_all(fs, sh("true"), at_least=4)


def test_on_ended_runs_when_all_ended_whatever_their_state(m: Manager) -> None:
    fs = [m.submit(sh("true")), m.submit(sh("sleep 0.3; exit 3")), m.submit(sh("sleep 30"))]
    report = m.on_ended(fs, sh(READ_JOIN, "report"))
    time.sleep(1.0)
    assert not report.done()   # the third still runs
    fs[2].cancel()
    got = m.join_states(report.result(timeout=60))
    assert [got[f.id] for f in fs] == ["COMPLETE", "FAILED", "CANCELLED"]


# -- data futures --------------------------------------------------------------------------
def _producer(out: Path, kind: str, delay: float = 0.5) -> JobDefn:
    code = ("import os, time; from pathlib import Path; from lwfm import Manager; "
            f"time.sleep({delay}); p = Path({str(out)!r}); p.write_text('mesh'); "
            f"m = Manager(); m.notate(p, metadata={{'kind': {kind!r}}}); m.close()")
    return JobDefn(entry=[PY, "-c", code], name=f"produce {kind}", outputs=[{"kind": kind}])


def test_b_waits_for_a_s_data_not_its_state_and_the_thread_says_what_fed_it(
        m: Manager, tmp_path: Path) -> None:
    a = m.submit(_producer(tmp_path / "mesh.dat", "mesh"))
    [mesh] = a.outputs
    # the same kind of data from another job is not A's output: it must not feed B
    other = tmp_path / "other.dat"
    other.write_text("x")
    m.notate(other, metadata={"kind": "mesh"})
    b = m.submit(sh("echo consuming", "B"), inputs=[mesh])
    job_b = b.result(timeout=60)
    d = mesh.result(timeout=5)
    assert d.job_id == a.id and d.url.endswith("mesh.dat")
    assert b.fired_by == d.id and b.trigger.producer == a.id
    assert job_b.started >= d.time
    g = m.graph
    q = ("PREFIX prov: <http://www.w3.org/ns/prov#> SELECT ?d WHERE { "
         f"<{node_iri(job_b.id)}> prov:used ?d }}")
    used = [str(r[0]) for r in g.query(q)]
    assert used == [node_iri(d.id)]
    with pytest.raises(InvalidInput, match="exactly one data future"):
        m.submit(sh("true"), inputs=[mesh, mesh])


def test_a_data_future_whose_producer_ends_without_it_fails(m: Manager) -> None:
    a = m.submit(JobDefn(entry=["true"], outputs=[{"kind": "never"}]))
    with pytest.raises(JobFailed, match="without putting data"):
        a.outputs[0].result(timeout=30)
    with pytest.raises(InvalidInput, match="outputs"):
        JobDefn(entry=["true"], outputs=[{}])


def test_closed_manager_refuses_future_verbs(home: Path) -> None:
    m = Manager(home)
    f = m.submit(JobDefn(entry=["true"]))
    f.result(timeout=30)
    m.close()
    with pytest.raises(LwfmError, match="closed"):
        f.then(JobDefn(entry=["true"]))


# -- wall time -----------------------------------------------------------------------------
def test_the_local_site_enforces_a_job_s_wall_time(m: Manager) -> None:
    """``resources={"walltime_s": 1}``: stopped after ~1 s (coreutils timeout around the
    job), FAILED with exit code 124; its output so far is kept; a bad value is refused."""
    t0 = time.monotonic()
    f = m.submit(JobDefn(entry="echo started; sleep 20; echo never", kind="shell",
                         resources={"walltime_s": 1}))
    job = f.wait(timeout=30)
    assert job.state is State.FAILED and job.exit_code == 124
    assert time.monotonic() - t0 < 10 and m.log(f) == "started\n"
    quick = m.submit(JobDefn(entry=["true"], resources={"walltime_s": 30}))
    assert quick.result(timeout=30).exit_code == 0
    before = len(m.store.find_jobs())
    with pytest.raises(InvalidInput, match="'walltime_s' must be a number of seconds"):
        m.submit(JobDefn(entry=["true"], resources={"walltime_s": "soon"}))
    assert len(m.store.find_jobs()) == before  # refused before anything was recorded
