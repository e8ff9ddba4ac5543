"""Fan out four jobs, then join: one job runs when ALL of them complete, another
as soon as ANY of them does; the script itself waits on the futures.

Two of the four are Python functions (``module:function`` jobs, defined below and
imported by the job from this directory), two are shell commands. ``m.on_all`` and
``m.on_any`` take the futures and return the future of the job they will start;
``lwfm.as_completed`` yields each fanned-out future as it ends, like
``concurrent.futures.as_completed``.

Usage: python examples/fan_out_join.py    (uses $LWFM_HOME, default ~/.lwfm)
"""

from __future__ import annotations

import sys
from pathlib import Path

import lwfm
from lwfm import JobDefn, Manager, State

HERE = Path(__file__).resolve().parent


def square(n: str) -> int:
    """A Python job: its return value is printed (as JSON) to the job's log."""
    return int(n) * int(n)


def main() -> int:
    with Manager() as m:
        wf = m.create_workflow("fan-out-join")
        defns = [JobDefn(entry="fan_out_join:square", kind="python", args=[str(i)], cwd=str(HERE),
                         name=f"square {i}") for i in (2, 3)]
        defns += [JobDefn(entry=f"sleep 0.{i}; echo shell {i}", kind="shell", name=f"shell {i}")
                  for i in (1, 2)]
        fan = [m.submit(d, workflow_id=wf.id) for d in defns]
        join = m.on_all(fan, JobDefn(entry=["echo", "all four done"], name="join"))
        first = m.on_any(fan, JobDefn(entry=["echo", "one is done"], name="any"))
        print(f"fanned out {len(fan)} jobs; join fires {join.id}, any fires {first.id}")

        order = [f.result().defn.name for f in lwfm.as_completed(fan, timeout=120)]
        print(f"ended in this order: {', '.join(order)}")
        joined, anyone = lwfm.wait_all([join, first], timeout=120)
        for f in fan:
            j = f.result()
            print(f"  {j.defn.name:<9} {j.state.value:<8} -> {m.log(j.id).strip()}")
        print(f"join: {joined.state.value}, parent={joined.context.parent_id} "
              f"(the last of the four), log: {m.log(joined.id).strip()}")
        print(f"any:  {anyone.state.value}, parent={anyone.context.parent_id} "
              f"(the first to complete), log: {m.log(anyone.id).strip()}")
        ids = [f.id for f in fan]
        logs = sorted(m.log(i).strip() for i in ids)

    ok = (joined.state is State.COMPLETE and anyone.state is State.COMPLETE
          and logs == ["4", "9", "shell 1", "shell 2"] and sorted(order) == sorted(
              d.name for d in defns)
          and joined.context.parent_id in ids and anyone.context.parent_id in ids)
    print("OK" if ok else "FAILED: the fan-out or a join did not end as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
