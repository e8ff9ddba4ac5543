"""A data trigger: run a job when data whose metadata matches a pattern is put.

The trigger waits for ``{"kind": "raw", "name": "run-*.dat"}`` (exact match per field,
globs allowed, AND across fields). A job writes ``run-001.dat``; the workflow then puts
it into a data directory with that metadata, linked to the job that produced it, and
the put fires the "analyse" job. (Inside a job, ``Manager().notate(path, metadata=...)``
records a file the job wrote itself in the same way.)

Usage: python examples/data_trigger.py    (uses $LWFM_HOME, default ~/.lwfm)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from lwfm import JobDefn, Manager, State


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="lwfm-data-trigger-"))
    raw, stored = work / "scratch" / "run-001.dat", work / "data" / "run-001.dat"
    raw.parent.mkdir()
    with Manager() as m:
        trigger = m.on_data({"kind": "raw", "name": "run-*.dat"},
                            JobDefn(entry=f"wc -l < {stored}", kind="shell", name="analyse"))
        print(f"data trigger {trigger.id} waits for kind=raw, name=run-*.dat")

        producer = m.wait(m.submit(JobDefn(entry=f"seq 1 100 > {raw}", kind="shell",
                                           name="produce")).id, timeout=60)
        print(f"producer {producer.id}: {producer.state.value}")
        d = m.put(raw, str(stored), metadata={"kind": "raw", "name": raw.name}, job_id=producer.id)
        print(f"put {d.url} size={d.size} sha256={d.sha256[:12]}... metadata={d.metadata}")

        analysed = m.wait(trigger.job_id, timeout=60)
        counted = m.log(analysed.id).strip()
        fired = m.store.get_trigger(trigger.id)
        found = m.find({"kind": "raw", "name": "run-*.dat"})
        print(f"trigger {fired.status.value}, fired by data {fired.fired_by}")
        print(f"analyse {analysed.id}: {analysed.state.value}, triggered_by={analysed.triggered_by}, "
              f"lines counted: {counted}")
        print(f"found by metadata: {[x.url for x in found]}, produced by job {found[0].job_id}")

    ok = (producer.state is State.COMPLETE and analysed.state is State.COMPLETE
          and fired.status.value == "fired" and fired.fired_by == d.id
          and analysed.triggered_by == trigger.id and counted == "100"
          and [x.id for x in found] == [d.id] and found[0].job_id == producer.id)
    print("OK" if ok else "FAILED: the data trigger did not fire as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
