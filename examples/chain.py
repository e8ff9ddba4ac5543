"""A -> B -> C by triggers: each job starts when the previous one COMPLETEs.

``m.on(a.id, defn_b)`` returns a Trigger whose ``job_id`` is the id B *will* carry,
so C can be chained on B before B exists. Each fired job's parent is the job that
fired it, and ``triggered_by`` names the trigger.

Usage: python examples/chain.py    (uses $LWFM_HOME, default ~/.lwfm)
"""

from __future__ import annotations

import sys

from lwfm import JobDefn, Manager, State


def main() -> int:
    with Manager() as m:
        wf = m.create_workflow("chain", "A -> B -> C by triggers")
        a = m.submit(JobDefn(entry=["echo", "A"], name="A"), workflow_id=wf.id)
        trigger_b = m.on(a.id, JobDefn(entry="echo B", kind="shell", name="B"))
        trigger_c = m.on(trigger_b.job_id, JobDefn(entry=["echo", "C"], name="C"))
        print(f"workflow {wf.id}: A={a.id} B={trigger_b.job_id} (future) C={trigger_c.job_id} (future)")

        c = m.wait(trigger_c.job_id, timeout=60)
        jobs = {name: m.status(job_id) for name, job_id in
                (("A", a.id), ("B", trigger_b.job_id), ("C", trigger_c.job_id))}
        names = {j.id: name for name, j in jobs.items()}
        for name, j in jobs.items():
            parent = names.get(j.context.parent_id, j.context.parent_id)
            print(f"{name}: {j.state.value:<8} parent={parent} triggered_by={j.triggered_by} "
                  f"workflow={j.context.workflow_id == wf.id}")

    ok = (all(j.state is State.COMPLETE for j in jobs.values())
          and jobs["B"].context.parent_id == a.id
          and jobs["C"].context.parent_id == trigger_b.job_id
          and jobs["B"].triggered_by == trigger_b.id
          and jobs["C"].triggered_by == trigger_c.id
          and c.context.originator_id == a.id)
    print("OK: C's parent is B, B's parent is A" if ok else "FAILED: the chain is not linked as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
