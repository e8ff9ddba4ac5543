"""A -> B -> C with futures: each job starts when the previous one COMPLETEs.

``m.submit`` returns a JobFuture; ``a.then(defn_b)`` chains B on it (a persisted
trigger) and returns B's future before B exists, so C is chained on B the same way.
``c.result()`` waits for C and returns its final Job (or raises JobFailed with its log
tail). Each fired job's parent is the job that fired it; ``triggered_by`` names the
trigger (``b.trigger_id``).

Usage: python examples/chain.py    (uses $LWFM_HOME, default ~/.lwfm)
"""

from __future__ import annotations

import sys

from lwfm import JobDefn, Manager, State


def main() -> int:
    with Manager() as m:
        wf = m.create_workflow("chain", "A -> B -> C with futures")
        a = m.submit(JobDefn(entry=["echo", "A"], name="A"), workflow_id=wf.id)
        b = a.then(JobDefn(entry="echo B", kind="shell", name="B"))
        c = b.then(JobDefn(entry=["echo", "C"], name="C"))
        print(f"workflow {wf.id}: A={a.id} B={b.id} (future) C={c.id} (future)")

        final_c = c.result(timeout=60)
        jobs = {"A": a.result(), "B": b.result(), "C": final_c}
        names = {j.id: name for name, j in jobs.items()}
        for name, j in jobs.items():
            parent = names.get(j.context.parent_id, j.context.parent_id)
            print(f"{name}: {j.state.value:<8} parent={parent} triggered_by={j.triggered_by} "
                  f"workflow={j.context.workflow_id == wf.id}")

    ok = (all(j.state is State.COMPLETE for j in jobs.values())
          and jobs["B"].context.parent_id == a.id
          and jobs["C"].context.parent_id == b.id
          and jobs["B"].triggered_by == b.trigger_id
          and jobs["C"].triggered_by == c.trigger_id
          and final_c.context.originator_id == a.id)
    print("OK: C's parent is B, B's parent is A" if ok else "FAILED: the chain is not linked as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
