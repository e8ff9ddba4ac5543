"""Large synthetic threads for the web panel's tests and benchmark: real rows in a real
store, written in batches (submitting 10,000 real processes would measure the site)."""

from __future__ import annotations

from datetime import timedelta

from lwfm.model import Job, JobContext, JobDefn, JobStatus, State, Workflow, new_id, utcnow
from lwfm.store import Store


def big_workflow(store: Store, n: int, name: str = "big", fanout: int = 3,
                 foreign_every: int = 0, batch: int = 2000) -> str:
    """A workflow of ``n`` ended jobs in a tree (each job the child of job ``(i-1)//fanout``);
    with ``foreign_every`` k, every k-th job comes from one other instance. Its id."""
    wf = store.add_workflow(Workflow(name=name))
    other = new_id()
    ids = [new_id() for _ in range(n)]
    t0 = utcnow() - timedelta(hours=1)
    ops = []
    for i, jid in enumerate(ids):
        parent = ids[(i - 1) // fanout] if i else None
        state = State.FAILED if i % 97 == 5 else State.COMPLETE
        at = t0 + timedelta(milliseconds=i)
        job = Job(defn=JobDefn(entry=["true"], name=f"step {i}"),
                  context=JobContext(job_id=jid, parent_id=parent, workflow_id=wf.id),
                  state=state, exit_code=0 if state is State.COMPLETE else 1, created=at,
                  started=at, ended=at,
                  instance_id=other if foreign_every and i and i % foreign_every == 0 else None)
        ops.append(("job", (job, JobStatus(jid, state, time=at))))
        if len(ops) >= batch:
            store.write_batch(ops)
            ops = []
    if ops:
        store.write_batch(ops)
    return wf.id
