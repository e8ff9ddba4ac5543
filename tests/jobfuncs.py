"""Functions run inside real lwfm jobs by the tests (``python -m lwfm._pycall``)."""

from __future__ import annotations

import os
from pathlib import Path


def spawn_child_and_notate(out_dir: str) -> None:
    """Inside a job: submit a child, record an output; both must link to this job."""
    from lwfm import JobDefn, Manager
    with Manager() as m:
        child = m.submit(JobDefn(entry=["echo", "child"], name="child"))
        m.wait(child.id, timeout=60)
        p = Path(out_dir) / f"out-{os.environ['LWFM_JOB_ID']}.txt"
        p.write_text("result\n")
        m.notate(p, metadata={"kind": "result", "n": 1})


def busy_recorder(n: str) -> None:
    """Inside a job: many status reports and data notations while the parent runs."""
    from lwfm import Manager
    with Manager() as m:
        for i in range(int(n)):
            m.report_status("INFO", info=f"step {i}")
            m.notate(f"mem://{os.environ['LWFM_JOB_ID']}/{i}", site="memory",
                     metadata={"i": i, "job": os.environ["LWFM_JOB_ID"]})


def fail() -> None:
    raise SystemExit(7)
