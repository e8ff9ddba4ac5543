"""Retries with real local jobs: each attempt its own job, triggers on the logical job
firing once on the final outcome, backoff, exit-code rules, cancel, kill -9 of the
process holding a pending retry (and a pending deadline), the CLI, the thread."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lwfm import JobDefn, JobFailed, Manager, Retries, State, TriggerStatus
from lwfm.errors import InvalidInput
from lwfm.provenance.vocab import node_iri

PY = sys.executable


@pytest.fixture
def m(home: Path):
    with Manager(home) as mgr:
        yield mgr


def flaky(counter: Path, passes_on: int, retries: Retries | int | None, name: str = "flaky",
          code: int = 1) -> JobDefn:
    """A shell job that counts its runs in ``counter`` and exits ``code`` until run
    number ``passes_on``."""
    return JobDefn(entry=(f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); "
                          f"echo $n > {counter}; echo run $n; [ $n -ge {passes_on} ] || exit {code}"),
                   kind="shell", name=name, retries=retries)


def _named(m: Manager, name: str) -> list:
    return [j for j in m.store.find_jobs() if j.defn.name == name]


def test_flaky_job_fails_twice_then_passes(m: Manager, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    f = m.submit(flaky(counter, 3, Retries(count=3, backoff_s=0.3)))
    after = f.then(JobDefn(entry=["echo", "after"], name="after"))
    cleanup = m.on(f, JobDefn(entry=["true"], name="cleanup"), states="terminal")
    final = f.result(timeout=60)
    assert final.state is State.COMPLETE and counter.read_text().strip() == "3"
    assert len(f.attempts) == 3 and final.id == f.attempts[-1] != f.id
    jobs = [m.status(a) for a in f.attempts]
    assert [j.state for j in jobs] == [State.FAILED, State.FAILED, State.COMPLETE]
    assert [j.defn.name for j in jobs] == ["flaky", "flaky (attempt 2)", "flaky (attempt 3)"]
    assert all(j.context.parent_id is None for j in jobs)  # attempts sit where the first did
    for prev, nxt in zip(jobs, jobs[1:]):  # each retry waited for its backoff
        assert (nxt.created - prev.ended).total_seconds() >= 0.3
    for tr in (after, cleanup):  # triggers on the logical job: once, on the final outcome
        job = tr.result(timeout=60)
        assert job.started >= final.ended
    assert len(_named(m, "after")) == len(_named(m, "cleanup")) == 1
    assert f.state is State.COMPLETE and f.done()
    g = m.graph
    q = ("PREFIX prov: <http://www.w3.org/ns/prov#> SELECT ?p WHERE { "
         f"<{node_iri(jobs[2].id)}> prov:wasInformedBy ?p }}")
    assert [str(r[0]) for r in g.query(q)] == [node_iri(jobs[1].id)]


def test_retries_used_up_fail_once_for_the_triggers(m: Manager, tmp_path: Path) -> None:
    f = m.submit(flaky(tmp_path / "n", 99, 2))
    ok = f.then(JobDefn(entry=["true"], name="on success"))
    report = m.on(f, JobDefn(entry=["true"], name="report"), states="terminal")
    with pytest.raises(JobFailed, match=r"\(attempt 3\)\) ended FAILED \(exit code 1\)") as e:
        f.result(timeout=60)
    assert "run 3" in e.value.log_tail and len(f.attempts) == 3
    assert report.result(timeout=60).state is State.COMPLETE
    with pytest.raises(JobFailed, match="will never run"):
        ok.result(timeout=30)
    assert ok.status is TriggerStatus.DEAD and "FAILED" in ok.reason
    assert len(_named(m, "report")) == 1


def test_only_the_exit_codes_given_are_retried(m: Manager, tmp_path: Path) -> None:
    rule = Retries(count=3, exit_codes=[75])
    transient = m.submit(flaky(tmp_path / "a", 2, rule, "transient", code=75))
    broken = m.submit(flaky(tmp_path / "b", 2, rule, "broken", code=1))
    assert transient.result(timeout=60).state is State.COMPLETE and len(transient.attempts) == 2
    assert broken.wait(timeout=60).state is State.FAILED and broken.attempts == [broken.id]
    [tr] = [t for t in m.store.triggers(watching=broken.id) if t.retry_of]
    assert tr.status is TriggerStatus.DEAD and "exit code 1, not one of [75]" in tr.reason


def test_cancel_during_the_backoff_stops_the_retries(m: Manager, tmp_path: Path) -> None:
    f = m.submit(flaky(tmp_path / "n", 3, Retries(count=2, backoff_s=30)))
    deadline = time.time() + 30
    while m.status(f.id).state is not State.FAILED and time.time() < deadline:
        time.sleep(0.05)
    assert f.state is State.PENDING and not f.done()  # a retry is due
    assert f.cancel() is True
    assert f.wait(timeout=10).state is State.FAILED and f.attempts == [f.id]
    assert (tmp_path / "n").read_text().strip() == "1"


def test_cli_wait_and_cancel_follow_a_job_s_retries(home: Path, tmp_path: Path) -> None:
    """`lwfm wait ID` / `lwfm cancel ID` with the id `lwfm run` printed (the first
    attempt): wait reports the last attempt, cancel stops the retries still due."""
    env = {**os.environ, "LWFM_HOME": str(home)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "lwfm.cli", *args], env=env, capture_output=True,
                              text=True, timeout=90)

    ok = flaky(tmp_path / "a", 2, None).entry
    first = cli("run", "--retries", "2", "--shell", "--", ok).stdout.strip()
    waited = cli("wait", first)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    [line] = waited.stdout.splitlines()
    assert line.endswith("COMPLETE") and not line.startswith(first)  # attempt 2's id
    bad = flaky(tmp_path / "b", 9, None).entry
    first = cli("run", "--retries", "3", "--backoff", "30", "--shell", "--", bad).stdout.strip()
    deadline = time.time() + 30
    while "FAILED" not in cli("status", first).stdout and time.time() < deadline:
        time.sleep(0.1)
    cancel = cli("cancel", first)
    assert cancel.returncode == 0 and "cancelled" in cancel.stdout, cancel.stdout + cancel.stderr
    waited = cli("wait", "--timeout", "20", first)
    assert waited.returncode == 1 and waited.stdout.strip() == f"{first} FAILED", waited.stderr
    assert (tmp_path / "b").read_text().strip() == "1"  # no retry ran


@pytest.mark.parametrize("bad, msg", [(-1, "whole number"), ({"count": 1, "states": ["RUNNING"]},
                                                             "end states"),
                                      ({"count": 1, "backoff_s": -2}, "backoff_s")])
def test_bad_retries_are_refused(bad, msg) -> None:
    with pytest.raises(InvalidInput, match=msg):
        JobDefn(entry=["true"], retries=bad)


def test_pending_retry_and_deadline_survive_kill_9(home: Path, tmp_path: Path) -> None:
    """The process holding a retry in its backoff (and a trigger with a deadline) is
    killed -9; the next Manager starts the retry exactly once and times the trigger out."""
    counter = tmp_path / "n"
    defn = flaky(counter, 2, Retries(count=2, backoff_s=2.0))
    code = ("import sys, time\nfrom lwfm import Manager, JobDefn, Retries, State\n"
            f"defn = JobDefn.from_dict({defn.to_dict()!r})\n"
            "m = Manager()\n"
            "f = m.submit(defn)\n"
            "t = m.submit(JobDefn(entry='sleep 30', kind='shell')).then(JobDefn(entry=['true']),"
            " timeout=2.5)\n"
            "while m.status(f.id).state is not State.FAILED: time.sleep(0.02)\n"
            "print(f.id, t.id, t.trigger_id, flush=True)\n"
            "time.sleep(60)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWFM_")}
    env["LWFM_HOME"] = str(home)
    p = subprocess.Popen([PY, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        f_id, b_id, tr_id = p.stdout.readline().split()  # type: ignore[union-attr]
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    with Manager(home) as m:
        f = m.future(f_id)
        assert not f.done() and f.attempts == [f_id]
        final = f.result(timeout=60)
        assert final.state is State.COMPLETE and len(f.attempts) == 2
        assert counter.read_text().strip() == "2"  # attempt 2 ran once
        assert len([j for j in m.store.find_jobs() if j.defn.name.startswith("flaky")]) == 2
        with pytest.raises(JobFailed, match="timeout"):
            m.future(b_id).wait(timeout=30)
        assert m.store.get_trigger(tr_id).reason == "timeout"
        for j in m.store.find_jobs(state="RUNNING"):
            m.cancel(j.id)


def test_cli_run_retries_waits_for_the_last_attempt(home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    env = {**os.environ, "LWFM_HOME": str(home)}
    cmd = (f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
           "[ $n -ge 2 ]")
    run = subprocess.run([PY, "-m", "lwfm.cli", "run", "--retries", "2", "--wait", "--shell",
                          "--name", "cli flaky", "--", cmd], env=env, capture_output=True,
                         text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("COMPLETE")
    jobs = subprocess.run([PY, "-m", "lwfm.cli", "jobs"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert "cli flaky (attempt 2)" in jobs.stdout and "FAILED" in jobs.stdout
    trs = subprocess.run([PY, "-m", "lwfm.cli", "triggers"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert "retry 2" in trs.stdout and "retry 3" in trs.stdout
    bad = subprocess.run([PY, "-m", "lwfm.cli", "run", "--retries", "-1", "--", "true"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


def test_retry_deadline_and_k_of_n_on_each_backend(store_url: str, home: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on SQLite and on a real PostgreSQL server (the deadline lookup reads the
    trigger's JSON body as text, which each backend must do)."""
    monkeypatch.setenv("LWFM_STORE_URL", store_url)
    with Manager(home) as m:
        f = m.submit(flaky(tmp_path / "n", 2, Retries(count=1, backoff_s=0.2)))
        slow = m.submit(JobDefn(entry=["sleep", "20"]))
        late = slow.then(JobDefn(entry=["true"]), timeout=0.5)
        join = m.on_all([f, slow], JobDefn(entry=["true"], name="1 of 2"), at_least=1)
        assert f.result(timeout=60).state is State.COMPLETE and len(f.attempts) == 2
        assert join.result(timeout=60).state is State.COMPLETE
        assert m.join_states(join)[f.id] == "COMPLETE"
        with pytest.raises(JobFailed, match="timeout"):
            late.result(timeout=30)
        slow.cancel()


def test_the_thread_draws_each_attempt_under_the_one_it_retries(m: Manager,
                                                                tmp_path: Path) -> None:
    from lwfm.provenance.render import to_dot
    from lwfm.provenance.thread import thread
    wf = m.create_workflow("flaky thread")
    f = m.submit(flaky(tmp_path / "n", 3, 2), workflow_id=wf.id)
    f.result(timeout=60)
    root = thread(m.graph, wf.id)
    [first] = root.children
    [second] = first.children
    [third] = second.children
    assert [n.id for n in (first, second, third)] == f.attempts
    assert (second.relation, third.relation) == ("retry", "retry")
    assert 'label="retry"' in to_dot(root)


def test_a_triggered_job_with_retries_is_retried_too(m: Manager, tmp_path: Path) -> None:
    a = m.submit(JobDefn(entry=["true"]))
    b = a.then(flaky(tmp_path / "n", 2, 1, "fired flaky"))
    assert b.result(timeout=60).state is State.COMPLETE
    assert len(b.attempts) == 2 and m.status(b.attempts[1]).defn.name == "fired flaky (attempt 2)"


def test_a_job_with_retries_cannot_carry_a_secret(m: Manager) -> None:
    """Its retry trigger stores the job until it runs again, and lwfm stores no secret:
    refused before anything is recorded (the secret is not in the store)."""
    with pytest.raises(InvalidInput, match="looks like a secret"):
        m.submit(JobDefn(entry=["true"], env={"API_TOKEN": "s3cr3t-value"}, retries=2))
    assert m.store.find_jobs() == [] and m.store.triggers() == []
    plain = m.submit(JobDefn(entry=["true"], env={"API_TOKEN": "s3cr3t-value"}))
    assert plain.result(timeout=30).state is State.COMPLETE  # without retries it runs


def test_retries_deadlines_and_joins_in_the_graph_meet_the_shapes(m: Manager,
                                                                  tmp_path: Path) -> None:
    import pyshacl
    from rdflib import Graph

    from lwfm.ontology import path as ontology_path
    f = m.submit(flaky(tmp_path / "n", 2, 1))
    slow = m.submit(JobDefn(entry=["sleep", "20"]))
    late = slow.then(JobDefn(entry=["true"]), timeout=0.3)
    join = m.on_all([f, slow], JobDefn(entry=["true"]), at_least=1)
    f.result(timeout=60)
    join.result(timeout=60)
    with pytest.raises(JobFailed):
        late.result(timeout=30)
    slow.cancel()
    g = m.graph
    q = ("SELECT ?p ?o WHERE { ?t a lwfm:Trigger ; ?p ?o . "
         "FILTER(?p IN (lwfm:retryOf, lwfm:attempt, lwfm:deadline, lwfm:atLeast)) }")
    got = {str(p).rsplit("#", 1)[1] for p, _ in g.query(q)}
    assert got == {"retryOf", "attempt", "deadline", "atLeast"}
    data = g.query("CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }").graph
    ok, _, text = pyshacl.validate(data, shacl_graph=Graph().parse(ontology_path("shapes.ttl")))
    assert ok, text
