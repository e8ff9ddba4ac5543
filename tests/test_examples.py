"""Run each example as a user would (a real process on a fresh LWFM_HOME), then open
that home and check what lwfm recorded, not only what the script printed.

``examples/venv_job`` is run by tests/test_venv_site.py (it builds a venv) and
``examples/remote_lab`` by tests/ssh/test_round_trip.py (it needs a real sshd).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lwfm import JobDefn, Manager, State, TriggerKind, TriggerStatus

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def run_example(name: str, home: Path, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWFM_")}
    env["LWFM_HOME"] = str(home)
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                          env=env, cwd=home, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.splitlines()[-1].startswith("OK"), proc.stdout
    return proc.stdout


def by_name(m: Manager) -> dict:
    jobs = m.store.find_jobs()
    names = [j.defn.name for j in jobs]
    assert len(names) == len(set(names)), names
    return {j.defn.name: j for j in jobs}


def test_hello(home: Path):
    out = run_example("hello.py", home)
    assert "state: COMPLETE exit=0" in out and "log: hello" in out
    job_id = re.search(rf"submitted job ({UUID})", out).group(1)
    with Manager(home) as m:
        job = m.status(job_id)
        assert job.state is State.COMPLETE and job.exit_code == 0
        assert [s.state for s in m.history(job_id)] == [State.PENDING, State.RUNNING, State.COMPLETE]
        assert m.log(job_id) == "hello\n"
        assert len(m.store.find_jobs()) == 1


def test_chain(home: Path):
    out = run_example("chain.py", home)
    assert re.search(r"^B: COMPLETE +parent=A triggered_by=", out, re.MULTILINE), out
    assert re.search(r"^C: COMPLETE +parent=B triggered_by=", out, re.MULTILINE), out
    with Manager(home) as m:
        jobs = by_name(m)
        a, b, c = jobs["A"], jobs["B"], jobs["C"]
        assert {j.state for j in (a, b, c)} == {State.COMPLETE}
        assert (a.context.parent_id, b.context.parent_id, c.context.parent_id) == (None, a.id, b.id)
        assert a.triggered_by is None
        assert {j.context.originator_id for j in (a, b, c)} == {a.id}
        assert len({j.context.workflow_id for j in (a, b, c)}) == 1 and a.context.workflow_id
        for job, watched in ((b, a), (c, b)):
            tr = m.store.get_trigger(job.triggered_by)
            assert tr.status is TriggerStatus.FIRED and tr.kind is TriggerKind.JOB
            assert tr.watch == [watched.id] and tr.fired_by == watched.id and tr.job_id == job.id
        # B cannot start before A completed, nor C before B.
        assert b.started >= a.ended and c.started >= b.ended


def test_fan_out_join(home: Path):
    out = run_example("fan_out_join.py", home)
    assert "square 2  COMPLETE -> 4" in out and "square 3  COMPLETE -> 9" in out
    with Manager(home) as m:
        jobs = by_name(m)
        fan = [jobs[n] for n in ("square 2", "square 3", "shell 1", "shell 2")]
        fan_ids = {j.id for j in fan}
        assert all(j.state is State.COMPLETE for j in fan)
        join, first = jobs["join"], jobs["any"]
        assert join.state is State.COMPLETE and first.state is State.COMPLETE
        assert m.log(join.id) == "all four done\n"
        t_join, t_any = m.store.get_trigger(join.triggered_by), m.store.get_trigger(first.triggered_by)
        assert (t_join.kind, t_any.kind) == (TriggerKind.ALL, TriggerKind.ANY)
        assert set(t_join.watch) == set(t_any.watch) == fan_ids
        assert {t_join.status, t_any.status} == {TriggerStatus.FIRED}
        # The join fires on the last of the four, after all of them ended.
        assert t_join.fired_by == join.context.parent_id and join.context.parent_id in fan_ids
        assert join.started >= max(j.ended for j in fan)
        assert t_any.fired_by in fan_ids and first.context.parent_id == t_any.fired_by
        assert len(m.store.find_jobs()) == 6  # each trigger fired exactly once


def test_data_trigger(home: Path):
    out = run_example("data_trigger.py", home)
    assert "lines counted: 100" in out and "trigger fired" in out
    with Manager(home) as m:
        jobs = by_name(m)
        producer, analyse = jobs["produce"], jobs["analyse"]
        assert producer.state is State.COMPLETE and analyse.state is State.COMPLETE
        (d,) = m.find({"kind": "raw", "name": "run-*.dat"})
        assert d.job_id == producer.id and d.direction.value == "put" and d.size and d.sha256
        tr = m.store.get_trigger(analyse.triggered_by)
        assert tr.kind is TriggerKind.DATA and tr.status is TriggerStatus.FIRED
        assert tr.fired_by == d.id and tr.job_id == analyse.id
        assert tr.pattern == {"kind": "raw", "name": "run-*.dat"}
        assert m.find({"kind": "raw", "name": "other-*.dat"}) == []


def test_data_futures(home: Path):
    out = run_example("data_futures.py", home)
    assert "said 'mesh data + params data'" in out
    with Manager(home) as m:
        jobs = by_name(m)
        mesh, params, solve = jobs["mesh"], jobs["params"], jobs["solve"]
        assert {j.state for j in (mesh, params, solve)} == {State.COMPLETE}
        (dm,) = m.find({"kind": "mesh"})
        (dp,) = m.find({"kind": "params"})
        assert (dm.job_id, dp.job_id) == (mesh.id, params.id)
        tr = m.store.get_trigger(solve.triggered_by)
        assert tr.kind is TriggerKind.DATA and tr.status is TriggerStatus.FIRED
        assert [i["producer"] for i in tr.inputs] == [mesh.id, params.id]
        assert tr.used == [dm.id, dp.id]
        assert solve.started >= max(dm.time, dp.time)  # it waited for both puts
        assert [d["id"] for d in m.inputs_of(solve.id)] == [dm.id, dp.id]


def test_cancel_long_job(home: Path):
    out = run_example("cancel_long_job.py", home)
    assert re.search(r"`lwfm cancel` .*cancelled \(exit 0\)", out), out
    assert "job ended CANCELLED" in out and re.search(r"process group \d+ gone: True", out)
    with Manager(home) as m:
        (job,) = m.store.find_jobs()
        assert job.state is State.CANCELLED and job.ended is not None
        states = [s.state for s in m.history(job.id)]
        assert states[:2] == [State.PENDING, State.RUNNING] and State.CANCELLED in states
        assert State.COMPLETE not in states
        pid = int(job.context.native_id.split(":")[0])
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


@pytest.mark.slow
def test_data_trigger_fired_inside_a_job_outlives_it(home: Path, tmp_path: Path):
    """The variant of data_trigger.py where the producing job notates its own output."""
    with Manager(home) as m:
        tr = m.on_data({"kind": "input"}, JobDefn(entry="sleep 1; echo analysed", kind="shell",
                                                   name="analyse"))
        producer = m.submit(JobDefn(entry="lwfm.demo:make_input", kind="python",
                                    args=[str(tmp_path / "run-001.dat"), "a b c"], name="produce"))
        assert m.wait(producer.id, timeout=60).state is State.COMPLETE
        assert m.store.get_trigger(tr.id).status is TriggerStatus.FIRED
        job = m.wait(tr.job_id, timeout=20)  # the bug: TimeoutError, the job stays RUNNING
        assert job.state is State.COMPLETE and m.log(job.id) == "analysed\n"


def test_retry_flaky(home: Path):
    """The flaky job fails twice and passes on its third attempt; each attempt is its own
    job, started by a retry trigger on the one before; the report fired once, on the
    last attempt's success."""
    out = run_example("retry_flaky.py", home)
    assert "flaky (attempt 3)      COMPLETE" in out, out
    with Manager(home) as m:
        jobs = by_name(m)
        first, second, third = jobs["flaky"], jobs["flaky (attempt 2)"], jobs["flaky (attempt 3)"]
        assert [j.state for j in (first, second, third)] == [State.FAILED, State.FAILED,
                                                              State.COMPLETE]
        t2, t3 = m.store.get_trigger(second.triggered_by), m.store.get_trigger(third.triggered_by)
        assert (t2.retry_of, t2.fired_by, t2.attempt) == (first.id, first.id, 2)
        assert (t3.retry_of, t3.fired_by, t3.attempt) == (first.id, second.id, 3)
        assert second.started >= first.ended and third.started >= second.ended
        assert m.future(first.id).attempts == [first.id, second.id, third.id]
        report = jobs["report"]
        assert report.state is State.COMPLETE and report.started >= third.ended
        # The 4th attempt's trigger (made when the 3rd started) is dead: no retry needed.
        left = [t for t in m.store.triggers(watching=third.id) if t.retry_of]
        assert len(left) == 1 and left[0].status is TriggerStatus.DEAD
        assert left[0].reason.startswith("no retry needed")
