"""A recorded thread with every kind of fact, written straight through the Store API:
completions, a failure, a cancel, a late INFO, job/data/dead triggers, puts, gets,
derived copies and metadata. Shared by the provenance tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from lwfm.model import (DataObject, Job, JobContext, JobDefn, JobStatus, State, Trigger,
                        TriggerKind, TriggerStatus, Workflow, utcnow)
from lwfm.store import Store


@dataclass
class Thread:
    wf: Workflow
    jobs: dict[str, Job] = field(default_factory=dict)
    data: dict[str, DataObject] = field(default_factory=dict)
    triggers: dict[str, Trigger] = field(default_factory=dict)


def _job(st: Store, t: Thread, key: str, *, parent: Job | None = None, site: str = "local",
         triggered_by: str | None = None, job_id: str | None = None, entry=None) -> Job:
    ctx = parent.context.child(site) if parent else JobContext(workflow_id=t.wf.id, site=site)
    if job_id:
        ctx.job_id = job_id
        if parent is None:
            ctx.originator_id = job_id
    j = Job(defn=JobDefn(entry=entry or ["python", "-c", f"print('{key}')"], name=key,
                         args=["--n", "1"] if key == "root" else []),
            context=ctx, triggered_by=triggered_by)
    st.add_job(j, JobStatus(j.id, State.READY))
    t.jobs[key] = j
    return j


def _states(st: Store, j: Job, *states: State, exit_code: int | None = None, t0=None) -> None:
    now = t0 or utcnow()
    for i, s in enumerate(states):
        last = i == len(states) - 1
        st.record_status(JobStatus(j.id, s, native_state=s.value.lower(), info=f"step {i}",
                                   time=now + timedelta(milliseconds=i + 1),
                                   exit_code=exit_code if last and s.terminal else None))


def part_one(st: Store) -> Thread:
    """Workflow, root, a completed child with output, a failure, a running job."""
    t = Thread(wf=st.add_workflow(Workflow(name="thread-test", description="all the facts",
                                           props={"owner": "tests"})))
    root = _job(st, t, "root")
    _states(st, root, State.PENDING, State.RUNNING)
    a = _job(st, t, "a", parent=root)
    _states(st, a, State.PENDING, State.RUNNING)
    st.set_native_id(a.id, "4242")
    t.data["a_out"] = st.add_data(DataObject(
        url="/work/out/a.csv", job_id=a.id, workflow_id=t.wf.id, size=120, sha256="a" * 64,
        media_type="text/csv", metadata={"kind": "table", "step": 1, "tags": ["x", "y"]}))
    _states(st, a, State.COMPLETE, exit_code=0)
    b = _job(st, t, "b", parent=root, site="venv")
    _states(st, b, State.PENDING, State.RUNNING, State.FAILED, exit_code=3)
    c = _job(st, t, "c", parent=root, entry="sleep 100")
    _states(st, c, State.PENDING, State.RUNNING)
    return t


def part_two(st: Store, t: Thread) -> Thread:
    """A cancel, a late INFO after a terminal state, triggers (fired, dead, data)."""
    a, b, c, root = t.jobs["a"], t.jobs["b"], t.jobs["c"], t.jobs["root"]
    _states(st, c, State.CANCELLED, exit_code=-15)
    st.record_status(JobStatus(a.id, State.INFO, info="late note after COMPLETE"))
    # job trigger on a COMPLETE -> fires e, which gets a's output and puts its own
    tr = Trigger(kind=TriggerKind.JOB, defn=JobDefn(entry=["consume"], name="e"),
                 watch=[a.id], parent_id=root.id, workflow_id=t.wf.id)
    st.add_trigger(tr)
    t.triggers["on_a"] = tr
    st.settle_trigger(tr.id, TriggerStatus.FIRED, fired_by=a.id)
    e = _job(st, t, "e", parent=root, triggered_by=tr.id, job_id=tr.job_id, entry=["consume"])
    _states(st, e, State.PENDING, State.RUNNING)
    t.data["e_in"] = st.add_data(DataObject(
        url="/scratch/a.csv", direction="get", job_id=e.id, workflow_id=t.wf.id,
        derived_from=t.data["a_out"].id, sha256="a" * 64, size=120))
    t.data["e_out"] = st.add_data(DataObject(
        url="/work/out/e.json", job_id=e.id, workflow_id=t.wf.id, size=7, sha256="e" * 64,
        media_type="application/json", metadata={"kind": "result", "quality": "good"}))
    _states(st, e, State.COMPLETE, exit_code=0)
    # trigger that can never fire: waits for b's COMPLETE, b FAILED
    dead = Trigger(kind=TriggerKind.ALL, defn=JobDefn(entry=["never"]), watch=[b.id, a.id],
                   workflow_id=t.wf.id)
    st.add_trigger(dead)
    st.settle_trigger(dead.id, TriggerStatus.DEAD, reason="b FAILED; needs COMPLETE")
    t.triggers["dead"] = dead
    # data trigger fired by e's output -> f (still running), and a pending one
    dt = Trigger(kind=TriggerKind.DATA, defn=JobDefn(entry=["report"], name="f"),
                 pattern={"kind": "result"}, workflow_id=t.wf.id)
    st.add_trigger(dt)
    st.settle_trigger(dt.id, TriggerStatus.FIRED, fired_by=t.data["e_out"].id)
    t.triggers["on_data"] = dt
    f = _job(st, t, "f", triggered_by=dt.id, job_id=dt.job_id, entry=["report"])
    _states(st, f, State.PENDING, State.RUNNING)
    pend = Trigger(kind=TriggerKind.ANY, defn=JobDefn(entry=["later"]), watch=[f.id],
                   workflow_id=t.wf.id)
    st.add_trigger(pend)
    t.triggers["pending"] = pend
    _states(st, root, State.COMPLETE, exit_code=0)
    return t
