"""Triggers: chains, joins, data triggers, dead triggers, exactly-once, restart survival."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lwfm import JobDefn, Manager, State, TriggerStatus
from lwfm.errors import InvalidInput, LwfmError, NotFound
from lwfm.triggers import decide
from lwfm.model import Trigger, TriggerKind


@pytest.fixture
def m(home: Path):
    with Manager(home) as mgr:
        yield mgr


def echo(name: str) -> JobDefn:
    return JobDefn(entry=["echo", name], name=name)


def test_chain_a_b_c_links_parents_and_records_what_fired(m: Manager) -> None:
    wf = m.create_workflow("chain")
    a = m.submit(echo("A"), workflow_id=wf.id)
    tb = m.on(a.id, echo("B"))
    tc = m.on(tb.job_id, echo("C"))
    c = m.wait(tc.job_id, timeout=60)
    b = m.status(tb.job_id)
    assert c.state is State.COMPLETE and b.state is State.COMPLETE
    assert (b.context.parent_id, c.context.parent_id) == (a.id, b.id)
    assert (b.triggered_by, c.triggered_by) == (tb.trigger_id, tc.trigger_id)
    assert b.context.workflow_id == c.context.workflow_id == wf.id
    fired = m.store.get_trigger(tb.trigger_id)
    assert fired.status is TriggerStatus.FIRED and fired.fired_by == a.id


def test_join_all_and_any(m: Manager) -> None:
    jobs = [m.submit(JobDefn(entry=f"sleep 0.{i}", kind="shell")) for i in range(1, 4)]
    t_all = m.on_all([j.id for j in jobs], echo("all"))
    t_any = m.on_any([j.id for j in jobs], echo("any"))
    joined = m.wait(t_all.job_id, timeout=60)
    first = m.wait(t_any.job_id, timeout=60)
    assert joined.state is State.COMPLETE and first.state is State.COMPLETE
    ends = {j.id: m.status(j.id).ended for j in jobs}
    assert joined.started >= max(ends.values())
    assert m.store.get_trigger(t_any.trigger_id).fired_by == jobs[0].id


def test_terminal_state_trigger_fires_on_failure(m: Manager) -> None:
    bad = m.submit(JobDefn(entry="exit 1", kind="shell"))
    tr = m.on(bad.id, echo("cleanup"), states="terminal")
    assert m.wait(tr.job_id, timeout=60).state is State.COMPLETE


def test_trigger_that_cannot_fire_is_dead_and_says_why(m: Manager) -> None:
    bad = m.submit(JobDefn(entry="sleep 0.5; exit 2", kind="shell"))
    tr = m.on(bad.id, echo("never"))
    chained = m.on(tr.job_id, echo("never either"))
    m.wait(bad.id, timeout=60)
    deadline = time.time() + 10
    while m.store.get_trigger(chained.trigger_id).status is TriggerStatus.PENDING and time.time() < deadline:
        time.sleep(0.05)
    dead = m.store.get_trigger(tr.trigger_id)
    assert dead.status is TriggerStatus.DEAD and "FAILED" in (dead.reason or "")
    assert m.store.get_trigger(chained.trigger_id).status is TriggerStatus.DEAD
    with pytest.raises(LwfmError, match="will never run"):
        m.wait(tr.job_id, timeout=5)
    with pytest.raises(NotFound):
        m.store.get_job(tr.job_id)


def test_data_trigger_fires_once_on_matching_put(m: Manager, tmp_path: Path) -> None:
    tr = m.on_data({"kind": "raw", "name": "run-*.dat"}, echo("on data"))
    other = tmp_path / "x.csv"
    other.write_text("x")
    m.notate(other, metadata={"kind": "raw", "name": "x.csv"})
    assert m.store.get_trigger(tr.id).status is TriggerStatus.PENDING
    for i in range(2):
        f = tmp_path / f"run-{i}.dat"
        f.write_text(str(i))
        d = m.notate(f, metadata={"kind": "raw", "name": f.name})
        if i == 0:
            first = d
    assert m.wait(tr.job_id, timeout=60).state is State.COMPLETE
    assert m.store.get_trigger(tr.id).fired_by == first.id
    assert len(m.store.find_jobs()) == 1


def test_data_trigger_fires_on_matching_data_recorded_before_it(m: Manager,
                                                                tmp_path: Path) -> None:
    """A producer may put its data before the workflow script gets to make the trigger."""
    f = tmp_path / "early.dat"
    f.write_text("x")
    early = m.notate(f, metadata={"kind": "early"})
    tr = m.on_data({"kind": "early"}, echo("late trigger"))
    assert m.wait(tr.job_id, timeout=60).state is State.COMPLETE
    assert m.store.get_trigger(tr.id).fired_by == early.id


def test_unknown_watched_job_is_refused(m: Manager) -> None:
    with pytest.raises(NotFound):
        m.on("no-such-job", echo("x"))


def test_decide_table() -> None:
    tr = Trigger(kind=TriggerKind.ALL, watch=["a", "b"], defn=echo("x"))
    assert decide(tr, {"a": State.COMPLETE, "b": State.RUNNING})[0] == "wait"
    assert decide(tr, {"a": State.COMPLETE, "b": State.COMPLETE})[0] == "fire"
    assert decide(tr, {"a": State.COMPLETE, "b": State.CANCELLED})[0] == "dead"
    anyt = Trigger(kind=TriggerKind.ANY, watch=["a", "b"], defn=echo("x"))
    assert decide(anyt, {"a": State.FAILED, "b": State.RUNNING})[0] == "wait"
    assert decide(anyt, {"a": State.FAILED, "b": State.FAILED})[0] == "dead"


def test_trigger_on_a_passing_state_fires_after_the_job_moved_on(m: Manager) -> None:
    """RUNNING counts once reached, even if the job has ended before anyone looked."""
    a = m.submit(echo("A"))
    assert m.wait(a.id, timeout=60).state is State.COMPLETE
    tr = m.on(a.id, echo("B"), states="running")
    assert m.wait(tr.job_id, timeout=60).state is State.COMPLETE
    assert m.store.get_trigger(tr.trigger_id).fired_by == a.id


def test_decide_counts_states_seen_in_history() -> None:
    tr = Trigger(kind=TriggerKind.JOB, watch=["a"], defn=echo("x"), states=[State.RUNNING])
    assert decide(tr, {"a": State.COMPLETE})[0] == "dead"
    assert decide(tr, {"a": State.COMPLETE}, {"a": {State.PENDING, State.RUNNING}})[0] == "fire"
    assert decide(tr, {"a": State.FAILED}, {"a": {State.PENDING}})[0] == "dead"


@pytest.mark.parametrize("states, msg", [([], "at least one state"),
                                         ("info", "cannot wait for INFO"),
                                         (["COMPLETE", "unknown"], "cannot wait for UNKNOWN"),
                                         ("done", "unknown state 'done'.*RUNNING")])
def test_trigger_states_that_can_never_be_reached_are_refused(m: Manager, states, msg) -> None:
    a = m.submit(echo("A"))
    with pytest.raises(InvalidInput, match=msg):
        m.on(a.id, echo("B"), states=states)
    assert m.store.triggers() == []


def test_cancelling_a_job_its_trigger_has_not_started(m: Manager) -> None:
    """The future job's trigger is retired; a trigger chained on that job sees it end."""
    a = m.submit(JobDefn(entry="sleep 30", kind="shell"))
    tb = m.on(a.id, echo("B"))
    cleanup = m.on(tb.job_id, echo("cleanup"), states="terminal")
    after = m.on(tb.job_id, echo("after B"))
    assert m.cancel(tb.job_id) is True
    assert m.cancel(tb.job_id) is False  # already retired
    dead = m.store.get_trigger(tb.trigger_id)
    assert dead.status is TriggerStatus.DEAD and dead.reason == "cancelled by user"
    assert m.store.get_trigger(after.trigger_id).status is TriggerStatus.DEAD
    assert m.wait(cleanup.job_id, timeout=60).state is State.COMPLETE
    m.cancel(a.id)
    assert m.wait(a.id, timeout=60).state is State.CANCELLED
    assert m.store.get_trigger(tb.trigger_id).status is TriggerStatus.DEAD  # A's end does not revive it
    with pytest.raises(NotFound):
        m.cancel("no-such-job")


def test_a_fired_job_that_cannot_even_be_submitted_ends_failed(home: Path) -> None:
    """Its site was removed from lwfm.toml after the trigger was made: waiters on the
    fired job still see it end (FAILED, saying why) instead of waiting forever."""
    (home / "lwfm.toml").write_text('[sites.other]\ndriver = "local"\n')
    with Manager(home) as m:
        with pytest.raises(NotFound, match="no site named 'gone'"):
            m.on_data({"k": "v"}, JobDefn(entry=["true"], site="gone"))
        tr = m.on_data({"k": "v"}, JobDefn(entry=["true"], site="other"))
    (home / "lwfm.toml").write_text("")
    with Manager(home) as m:
        f = home / "x.txt"
        f.write_text("x")
        m.notate(f, metadata={"k": "v"})
        job = m.wait(tr.job_id, timeout=30)
        assert job.state is State.FAILED and job.triggered_by == tr.id
        assert "could not start" in (m.history(job.id)[-1].info or "")
        assert m.store.get_trigger(tr.id).status is TriggerStatus.FIRED


def _serve(home: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lwfm.cli", "serve", "--interval", "0.02"],
                            env={**os.environ, "LWFM_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_pending_trigger_survives_restart_and_fires_exactly_once(home: Path) -> None:
    env = {**os.environ, "LWFM_HOME": str(home)}
    # Process 1: a detached job and a trigger on it; then it exits.
    script = ("from lwfm import Manager, JobDefn\n"
              "with Manager() as m:\n"
              "    s = m.site('local'); s.detach = True\n"
              "    a = m.submit(JobDefn(entry='sleep 1.5', kind='shell'))\n"
              "    t = m.on(a.id, JobDefn(entry=['echo', 'B'], name='B'))\n"
              "    print(a.id, t.trigger_id, t.job_id)\n")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    a_id, tr_id, b_id = out.stdout.split()
    # Two competing manager loops pick the pending trigger up; only one may fire it.
    servers = [_serve(home), _serve(home)]
    try:
        with Manager(home) as m:
            b = m.wait(b_id, timeout=60)
            assert b.state is State.COMPLETE
            time.sleep(1.0)  # give the loser time to (wrongly) fire too
            assert len(m.store.find_jobs()) == 2
            assert m.status(a_id).state is State.COMPLETE
            assert m.store.get_trigger(tr_id).status is TriggerStatus.FIRED
    finally:
        for s in servers:
            s.send_signal(signal.SIGINT)
            s.wait(timeout=30)
