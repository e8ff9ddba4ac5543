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
def _producer(out: Path, kind: str, delay: float = 0.5, gate: Path | None = None) -> JobDefn:
    """A real job that puts ``out`` (metadata kind) after ``delay`` s, or once ``gate``
    exists; it then writes ``out``.done, so a test knows the put is in the store."""
    wait = (f"while not Path({str(gate)!r}).exists(): time.sleep(0.05)\n" if gate else "")
    code = ("import time\nfrom pathlib import Path\nfrom lwfm import Manager\n" + wait +
            f"time.sleep({delay}); p = Path({str(out)!r}); p.write_text('mesh')\n"
            f"m = Manager(); m.notate(p, metadata={{'kind': {kind!r}}}); m.close()\n"
            f"Path({str(out) + '.done'!r}).touch()\n")
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
    with pytest.raises(InvalidInput, match="at least one data future"):
        m.after_data([], sh("true"))
    with pytest.raises(InvalidInput, match="must be data futures.*JobFuture"):
        m.submit(sh("true"), inputs=[mesh, a])


def test_a_data_future_whose_producer_ends_without_it_fails(m: Manager) -> None:
    a = m.submit(JobDefn(entry=["true"], outputs=[{"kind": "never"}]))
    with pytest.raises(JobFailed, match="without putting data"):
        a.outputs[0].result(timeout=30)
    with pytest.raises(InvalidInput, match="outputs"):
        JobDefn(entry=["true"], outputs=[{}])


READ_INPUTS = [PY, "-c", "import os; print(os.environ['LWFM_INPUTS'])"]
PREFIXES = "PREFIX prov: <http://www.w3.org/ns/prov#> "


def _used(m: Manager, job_id: str) -> set[str]:
    q = PREFIXES + f"SELECT ?d WHERE {{ <{node_iri(job_id)}> prov:used ?d }}"
    return {str(r[0]) for r in m.graph.query(q)}


def test_a_job_waits_for_all_its_data_futures_and_is_fed_each(m: Manager, tmp_path: Path) -> None:
    """B waits for A's mesh AND C's params: not started after only the mesh is put,
    started once both are; it reads both in LWFM_INPUTS (input order), and the thread,
    the web graph and the rendered thread say it used each."""
    from lwfm.provenance.render import to_dot
    from lwfm.web.graph import thread_graph
    wf = m.create_workflow("two inputs")
    gate = tmp_path / "gate"
    a = m.submit(_producer(tmp_path / "mesh.dat", "mesh", delay=0.1), workflow_id=wf.id)
    c = m.submit(_producer(tmp_path / "params.json", "params", delay=0, gate=gate),
                 workflow_id=wf.id)
    b = m.submit(JobDefn(entry=READ_INPUTS, name="B"), inputs=[a.outputs[0], c.outputs[0]],
                 workflow_id=wf.id)
    mesh = a.outputs[0].result(timeout=60)
    assert a.result(timeout=60).state is State.COMPLETE
    time.sleep(1.0)   # had the mesh alone fired B, it would be recorded by now
    assert b.status is TriggerStatus.PENDING and not b.done()
    assert m.store.get_trigger(b.trigger_id).inputs == [
        {"pattern": {"kind": "mesh"}, "producer": a.id},
        {"pattern": {"kind": "params"}, "producer": c.id}]
    gate.touch()
    job_b = b.result(timeout=60)
    params = c.outputs[0].result(timeout=5)
    assert b.fired_by == params.id and b.trigger.used == [mesh.id, params.id]
    assert job_b.started >= params.time and params.time > mesh.time
    fed = [{"id": mesh.id, "url": mesh.url}, {"id": params.id, "url": params.url}]
    assert json.loads(m.log(b)) == fed and m.inputs_of(b) == fed
    assert _used(m, job_b.id) == {node_iri(mesh.id), node_iri(params.id)}
    assert m.graph.check() == []
    import pyshacl
    from rdflib import Graph

    from lwfm.ontology import path as ontology_path
    from tests.test_provenance import union_graph
    ok, _, text = pyshacl.validate(union_graph(m.graph),
                                   shacl_graph=Graph().parse(ontology_path("shapes.ttl")))
    assert ok, text
    g = thread_graph(m.store, wf.id)
    assert {(e.source, e.kind) for e in g.edges if e.target == job_b.id} >= {
        (mesh.id, "triggered"), (params.id, "triggered")}
    root = m.graph.thread(wf.id)
    [node_b] = [n for n in root.walk() if n.id == job_b.id]
    assert {(ch.id, ch.relation) for ch in node_b.children} == {(mesh.id, "used"),
                                                              (params.id, "used")}
    dot = to_dot(root)
    for d in (mesh, params):
        assert f'"{d.id}" -> "{job_b.id}" [color=blue, label="used"]' in dot
    # a job in another workflow fed the same data: its thread draws without them
    other = m.create_workflow("elsewhere")
    e = m.submit(sh("true", "E"), inputs=[a.outputs[0], c.outputs[0]], workflow_id=other.id)
    assert e.result(timeout=60).state is State.COMPLETE
    assert thread_graph(m.store, other.id).to_dict()["nodes"]["id"] == [e.id]


def test_a_producer_that_ends_without_its_data_kills_the_trigger(m: Manager,
                                                                 tmp_path: Path) -> None:
    """A ends without putting its mesh: B (which also waits for C's params) is dead with
    the reason, its future raises, and the job chained on B sees it end; one data feeding
    two jobs leaves the graph consistent."""
    a = m.submit(JobDefn(entry="sleep 1", kind="shell", name="forgets",
                         outputs=[{"kind": "mesh", "n": 1}]))
    c = m.submit(_producer(tmp_path / "params.json", "params", delay=0))
    b = m.submit(sh("echo never", "B"), inputs=[c.outputs[0], a.outputs[0]])
    after = b.then(sh("echo after B"), states="terminal")
    with pytest.raises(JobFailed, match=f"will never run: job {a.id} ended COMPLETE without "
                                        "putting data matching {'kind': 'mesh', 'n': 1}"):
        b.result(timeout=60)
    assert b.status is TriggerStatus.DEAD
    assert after.result(timeout=60).state is State.COMPLETE
    listed = subprocess.run([PY, "-m", "lwfm.cli", "triggers", "--status", "dead"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "LWFM_HOME": str(m.home)})
    assert listed.returncode == 0 and "data (2 futures)" in listed.stdout
    assert '{"kind": "params"} + {"kind": "mesh", "n": 1}' in listed.stdout
    d = c.outputs[0].result(timeout=60)
    # the same data feeds two jobs (each a single-input future): both used it
    feeds = [m.submit(sh(f"echo {n}", n), inputs=[c.outputs[0]]) for n in ("D", "E")]
    for f in feeds:
        assert f.result(timeout=60).state is State.COMPLETE and f.trigger.used == [d.id]
        assert _used(m, f.id) == {node_iri(d.id)}
    assert m.graph.check() == []


def test_a_data_future_waits_through_its_producer_s_retries(m: Manager, tmp_path: Path) -> None:
    """A's first attempt fails without its data; its retry puts it: B fires then, fed
    the retry's data (a producer has ended only once no retry is due)."""
    mark = tmp_path / "tried"
    producer = _producer(tmp_path / "mesh.dat", "mesh", delay=0)
    flaky = (f"from pathlib import Path\nimport sys\nif not Path({str(mark)!r}).exists():\n"
             f"    Path({str(mark)!r}).touch(); sys.exit(3)\n" + producer.entry[2])
    a = m.submit(JobDefn(entry=[PY, "-c", flaky], name="flaky producer",
                         outputs=[{"kind": "mesh"}], retries=lwfm.Retries(count=1)))
    c = m.submit(_producer(tmp_path / "params.json", "params", delay=0))
    b = m.submit(JobDefn(entry=READ_INPUTS, name="B"), inputs=[a.outputs[0], c.outputs[0]])
    job_b = b.result(timeout=90)
    mesh = a.outputs[0].result(timeout=5)
    assert mesh.job_id != a.id   # put by the second attempt
    assert [x["id"] for x in json.loads(m.log(job_b))] == [mesh.id,
                                                          c.outputs[0].result(timeout=5).id]


def test_bad_data_inputs_are_refused_and_nothing_is_recorded(m: Manager) -> None:
    from lwfm.futures import DataFuture
    from lwfm.model import Trigger
    one = {"pattern": {"kind": "mesh"}, "producer": None}
    with pytest.raises(InvalidInput, match="data input 2 must be"):
        Trigger(kind="data", defn=sh("true"), inputs=[one, {"pattern": {}, "producer": None}])
    with pytest.raises(InvalidInput, match="two or more"):
        Trigger(kind="data", defn=sh("true"), inputs=[one])
    with pytest.raises(InvalidInput, match="list of data ids"):
        Trigger(kind="data", defn=sh("true"), pattern={"k": 1}, used=[3])
    nan = DataFuture(m, {"score": float("nan")}, None)
    with pytest.raises(InvalidInput, match="plain JSON"):
        m.submit(sh("true"), inputs=[DataFuture(m, {"kind": "mesh"}, None), nan])
    with pytest.raises(lwfm.NotFound):
        m.submit(sh("true"), inputs=[DataFuture(m, {"kind": "mesh"}, None),
                                     DataFuture(m, {"kind": "mesh"}, "no-such-job")])
    assert m.store.triggers() == []


def test_a_put_made_just_before_its_producer_ended_is_not_missed(m: Manager) -> None:
    """The verdict reads the puts, then the producers' states: C putting its params and
    ending in between must not make the trigger dead (its put is committed before its end)."""
    from lwfm.data_triggers import decide_data
    from lwfm.model import DataObject, Trigger
    a, c = m.submit(sh("true", "A")), m.submit(sh("true", "C"))
    assert a.result(timeout=30) and c.result(timeout=30)
    m.store.add_data(DataObject(url="file:///mesh", job_id=a.id, metadata={"kind": "mesh"}))
    tr = Trigger(kind="data", defn=sh("true"), inputs=[
        {"pattern": {"kind": "mesh"}, "producer": a.id},
        {"pattern": {"kind": "params"}, "producer": c.id}])

    def late(ids):
        if not m.store.find_data({"kind": "params"}):
            m.store.add_data(DataObject(url="file:///params", job_id=c.id,
                                        metadata={"kind": "params"}))
        return {j: State.COMPLETE for j in ids}
    v = decide_data(tr, m.store, late)
    assert v.verdict == "fire" and [d.url for d in v.used] == ["file:///mesh", "file:///params"]
    tr.inputs[1]["pattern"] = {"kind": "never"}  # type: ignore[index]
    v = decide_data(tr, m.store, late)
    assert v.verdict == "dead" and f"job {c.id} ended COMPLETE without putting" in v.reason


@pytest.mark.slow
def test_a_multi_data_trigger_survives_restarts_and_fires_once(home: Path, tmp_path: Path) -> None:
    """Process 1 adds B (waiting on A's and C's data) and exits; A puts its data from its
    own process, and nothing fires; C, from its own process, puts the other while two
    manager loops also look: B runs exactly once, fed both."""
    ga, gc = tmp_path / "gate-a", tmp_path / "gate-c"
    mesh_p, params_p = tmp_path / "mesh.dat", tmp_path / "params.json"
    out = _in_child(home, "from pathlib import Path\nfrom lwfm import Manager, JobDefn\n"
                          "import tests.test_futures as t\n"
                          "with Manager() as m:\n"
                          f"    a = m.submit(t._producer(Path({str(mesh_p)!r}), 'mesh', 0, "
                          f"Path({str(ga)!r})))\n"
                          f"    c = m.submit(t._producer(Path({str(params_p)!r}), 'params', 0, "
                          f"Path({str(gc)!r})))\n"
                          "    b = m.submit(JobDefn(entry=t.READ_INPUTS, name='B'), "
                          "inputs=[a.outputs[0], c.outputs[0]])\n"
                          "    print(a.id, c.id, b.id, b.trigger_id)\n")
    assert out.returncode == 0, out.stderr
    a_id, c_id, b_id, tr_id = out.stdout.split()
    ga.touch()
    _wait_for(Path(str(mesh_p) + ".done"))
    with Manager(home) as m:   # a restart: it catches up on the journal, and must wait
        assert m.future(a_id).result(timeout=60).state is State.COMPLETE
        time.sleep(0.5)
        assert m.store.get_trigger(tr_id).status is TriggerStatus.PENDING
    servers = [subprocess.Popen([PY, "-m", "lwfm.cli", "serve", "--interval", "0.02"],
                                env={**os.environ, "LWFM_HOME": str(home)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for _ in range(2)]
    try:
        time.sleep(1.0)
        gc.touch()
        with Manager(home) as m:
            job_b = m.future(b_id).result(timeout=60)
            time.sleep(1.0)   # time for a loser to (wrongly) fire too
            [mesh] = m.find({"kind": "mesh"})
            [params] = m.find({"kind": "params"})
            tr = m.store.get_trigger(tr_id)
            assert tr.status is TriggerStatus.FIRED and tr.used == [mesh.id, params.id]
            assert [x["id"] for x in json.loads(m.log(job_b))] == [mesh.id, params.id]
            assert len(m.store.find_jobs()) == 3
            fired = [s for s in m.store.history(b_id) if s.state is State.PENDING]
            assert len(fired) == 1
    finally:
        for s in servers:
            s.send_signal(2)
            s.wait(timeout=30)


def _wait_for(p: Path, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not p.exists():
        assert time.monotonic() < end, f"{p} never appeared"
        time.sleep(0.05)


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
